# Training: stage 1 (connector) per LLM, stage 2 (one job per LLM x strategy x LR). Checkpoints live outside the
# outputs (Snakemake deletes outputs before a rerun), so an interrupted job resumes from its last complete one.


rule pretrain_connector:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        shards=CC3M_SUMMARY,
        llm=lambda w: model_input(config["models"][w.llm]["path"]),
        vision=model_input(config["vision"]["path"]),
    output:
        connector=protected(f"{RESULTS}/pretrain/{{llm}}/connector.safetensors"),
        metrics=f"{RESULTS}/pretrain/{{llm}}/metrics.json",
    params:
        llm=lambda w: config["models"][w.llm]["path"],
        vision=lambda w: config["vision"]["path"],
        shards=lambda w, input: study.shards_of_summary(input.shards),
        config=training_config_json(),
        checkpoints=lambda w: f"{RESULTS}/checkpoints/pretrain/{w.llm}",
        launch=launcher(config["gpus"].get("pretrain", 0)),
    threads: 2
    resources:
        gpu=config["gpus"].get("pretrain", 0),
    conda:
        "../envs/study.yaml"
    log:
        "logs/pretrain_connector/{llm}.log",
    benchmark:
        "benchmarks/rules/pretrain_connector/{llm}.tsv"
    shell:
        "{params.launch} -m workflow_scripts.train.pretrain_connector --llm {params.llm} --vision {params.vision}"
        " --shards {params.shards} --config-json {params.config:q} --checkpoints {params.checkpoints}"
        " --connector-out {output.connector} --metrics {output.metrics} --threads {threads} > {log} 2>&1"


rule finetune:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        connector=f"{RESULTS}/pretrain/{{llm}}/connector.safetensors",
        instruct=data_inputs("instruct_json"),
        llm=lambda w: model_input(config["models"][w.llm]["path"]),
        vision=model_input(config["vision"]["path"]),
    output:
        delta=protected(f"{RESULTS}/finetune/{{llm}}/{{strategy}}/{{lr}}/trainable_delta.safetensors"),
        efficiency=f"{RESULTS}/finetune/{{llm}}/{{strategy}}/{{lr}}/efficiency.json",
    params:
        llm=lambda w: config["models"][w.llm]["path"],
        vision=lambda w: config["vision"]["path"],
        template=lambda w: config["models"][w.llm]["template"],
        instruct=lambda w: study.data_path(config, "instruct_json"),
        images=lambda w: study.data_path(config, "instruct_images"),
        config=training_config_json(),
        strategy=lambda w: w.strategy,
        subset="",
        checkpoints=lambda w: f"{RESULTS}/checkpoints/finetune/{w.llm}/{w.strategy}/{w.lr}",
        launch=lambda w: launcher(study.finetune_gpus(config, w.llm, w.strategy)),
    threads: 2
    resources:
        gpu=lambda w: study.finetune_gpus(config, w.llm, w.strategy),
    conda:
        "../envs/study.yaml"
    log:
        "logs/finetune/{llm}/{strategy}/{lr}.log",
    benchmark:
        "benchmarks/rules/finetune/{llm}/{strategy}/{lr}.tsv"
    shell:
        "{params.launch} -m workflow_scripts.train.finetune --llm {params.llm} --vision {params.vision}"
        " --connector {input.connector} --instruct-json {params.instruct} --images {params.images}"
        " --template {params.template} --strategy {params.strategy} --lr {wildcards.lr} {params.subset}"
        " --config-json {params.config:q} --checkpoints {params.checkpoints}"
        " --delta {output.delta} --efficiency {output.efficiency} --threads {threads} > {log} 2>&1"


# The merged model an evaluation loads, rebuilt from base weights + connector + delta. temp(): at 7B a merged
# folder is ~14 GB and the sweep has 66 cells per LLM; it is deleted once the evaluations that need it are done
# and rebuilt (in about a minute, no GPU) if the chosen LR's evaluations need it again. --notemp keeps them.
rule export_model:
    input:
        delta=f"{RESULTS}/finetune/{{llm}}/{{strategy}}/{{lr}}/trainable_delta.safetensors",
        connector=f"{RESULTS}/pretrain/{{llm}}/connector.safetensors",
        llm=lambda w: model_input(config["models"][w.llm]["path"]),
        vision=model_input(config["vision"]["path"]),
    output:
        temp(directory(f"{RESULTS}/finetune/{{llm}}/{{strategy}}/{{lr}}/export")),
    params:
        llm=lambda w: config["models"][w.llm]["path"],
        vision=lambda w: config["vision"]["path"],
        strategy=lambda w: w.strategy,
        config=training_config_json(),
    threads: 2
    conda:
        "../envs/study.yaml"
    log:
        "logs/export_model/{llm}/{strategy}/{lr}.log",
    benchmark:
        "benchmarks/rules/export_model/{llm}/{strategy}/{lr}.tsv"
    shell:
        "python -m workflow_scripts.train.merge --llm {params.llm} --vision {params.vision}"
        " --connector {input.connector} --strategy {params.strategy} --delta {input.delta}"
        " --config-json {params.config:q} --export {output} --threads {threads} > {log} 2>&1"
