# Training: stage 1 (connector) per LLM, stage 2 (one job per LLM x strategy x LR). Checkpoints live outside the
# outputs (Snakemake deletes outputs before a rerun), so an interrupted job resumes from its last complete one.
# How a job starts (here and in evaluate.smk): workflow_scripts.gpu_lease leases {resources.gpu} free GPU ids (a
# no-op under SLURM), then runs the module under torchrun, one worker per GPU (plain python without GPUs). The count
# is a resource, not a param: a node with another GPU count reruns nothing (N workers train one worker's model).


rule pretrain_connector:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        shards=CC3M_SUMMARY,
        llm=lambda w: model_input(config["models"][w.llm]),
        vision=model_input(config["vision"]),
    output:
        connector=protected(f"{RESULTS}/pretrain/{{llm}}/connector.safetensors"),
        metrics=f"{RESULTS}/pretrain/{{llm}}/metrics.json",
    params:
        llm=lambda w: study.model_dir(config, config["models"][w.llm]),
        vision=lambda w: study.model_dir(config, config["vision"]),
        shards=lambda w, input: study.shards_of_summary(input.shards),
        config=stage1_config_json(),
        checkpoints=lambda w: f"{RESULTS}/checkpoints/pretrain/{w.llm}",
        tensorboard=lambda w: f"{RESULTS}/tensorboard/pretrain/{w.llm}",
    threads: 2
    resources:
        gpu=config["gpus"].get("pretrain", 0),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/pretrain_connector/{{llm}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pretrain_connector/{{llm}}.tsv"
    shell:
        "python -m workflow_scripts.gpu_lease --gpus {resources.gpu} --launch --"
        " -m workflow_scripts.train.pretrain_connector --llm {params.llm} --vision {params.vision}"
        " --shards {params.shards} --config-json {params.config:q} --checkpoints {params.checkpoints}"
        " --connector-out {output.connector} --metrics {output.metrics} --tensorboard {params.tensorboard}"
        " --threads {threads} > {log} 2>&1"


# {trainset}: "finetune" (the study's cells), "finetune_text_priors" (the same cell trained on blank images,
# a control row of Table 1; see controls.text_priors) or "finetune_rung" (the first selection.halving.fraction of
# the cell's run, in the cell's own checkpoint folder; selection.mode: halving).
rule finetune:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        connector=f"{RESULTS}/pretrain/{{llm}}/connector.safetensors",
        instruct=data_inputs("instruct_json"),
        llm=lambda w: model_input(config["models"][w.llm]),
        vision=model_input(config["vision"]),
    output:
        delta=protected(f"{RESULTS}/{{trainset}}/{{llm}}/{{strategy}}/{{lr}}/trainable_delta.safetensors"),
        efficiency=f"{RESULTS}/{{trainset}}/{{llm}}/{{strategy}}/{{lr}}/efficiency.json",
    wildcard_constraints:
        trainset="|".join(paths.TRAINSETS),
    params:
        llm=lambda w: study.model_dir(config, config["models"][w.llm]),
        vision=lambda w: study.model_dir(config, config["vision"]),
        template=lambda w: config["models"][w.llm]["template"],
        instruct=lambda w: study.data_path(config, "instruct_json"),
        images=lambda w: study.data_path(config, "instruct_images"),
        config=lambda w: finetune_config_json(w.llm, w.strategy),
        strategy=lambda w: w.strategy,
        lr=lambda w: lr_value(w.lr),
        subset="",
        blank=lambda w: "--blank-images" if paths.TRAINSETS[w.trainset] else "",
        stop=lambda w: f"--stop-at-fraction {config['selection']['halving']['fraction']}"
        if w.trainset == paths.RUNG else "",
        checkpoints=lambda w: f"{RESULTS}/checkpoints/{paths.checkpoint_trainset(w.trainset)}/{w.llm}/{w.strategy}/{w.lr}",
        tensorboard=lambda w: f"{RESULTS}/tensorboard/{w.trainset}/{w.llm}/{w.strategy}/{w.lr}",
    threads: 2
    resources:
        gpu=lambda w: study.finetune_gpus(config, w.llm, w.strategy),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/{{trainset}}/{{llm}}/{{strategy}}/{{lr}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{trainset}}/{{llm}}/{{strategy}}/{{lr}}.tsv"
    shell:
        "python -m workflow_scripts.gpu_lease --gpus {resources.gpu} --launch --"
        " -m workflow_scripts.train.finetune --llm {params.llm} --vision {params.vision}"
        " --connector {input.connector} --instruct-json {params.instruct} --images {params.images}"
        " --template {params.template} --strategy {params.strategy} --lr {params.lr} {params.subset}"
        " {params.blank} {params.stop} --config-json {params.config:q} --checkpoints {params.checkpoints}"
        " --delta {output.delta} --efficiency {output.efficiency} --tensorboard {params.tensorboard}"
        " --threads {threads} > {log} 2>&1"


# A merged model folder that stock LlavaForConditionalGeneration.from_pretrained loads (base weights + connector
# + delta), for users and other tools: `snakemake results/finetune/<llm>/<strategy>/<lr>/export`. Evaluations do
# not need it: they rebuild the same model in memory from what defines it (base, connector, delta).
rule export_model:
    input:
        delta=f"{RESULTS}/finetune/{{llm}}/{{strategy}}/{{lr}}/trainable_delta.safetensors",
        connector=f"{RESULTS}/pretrain/{{llm}}/connector.safetensors",
        llm=lambda w: model_input(config["models"][w.llm]),
        vision=model_input(config["vision"]),
    output:
        directory(f"{RESULTS}/finetune/{{llm}}/{{strategy}}/{{lr}}/export"),
    params:
        llm=lambda w: study.model_dir(config, config["models"][w.llm]),
        vision=lambda w: study.model_dir(config, config["vision"]),
        strategy=lambda w: w.strategy,
        template=lambda w: config["models"][w.llm]["template"],
        config=lambda w: export_config_json(w.strategy),
    threads: 2
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/export_model/{{llm}}/{{strategy}}/{{lr}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/export_model/{{llm}}/{{strategy}}/{{lr}}.tsv"
    shell:
        "python -m workflow_scripts.train.merge --llm {params.llm} --vision {params.vision}"
        " --connector {input.connector} --strategy {params.strategy} --delta {input.delta}"
        " --template {params.template} --config-json {params.config:q} --export {output} --threads {threads}"
        " > {log} 2>&1"
