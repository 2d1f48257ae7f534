# Evaluation: one job per model x benchmark. Control rows: the stage-1 model (connector only) and a blind run
# (every image replaced by a blank one) that measures what text alone achieves.


# {evalset}: one of paths.EVALSETS — "eval" (the model as trained), "eval_blind" (the same model, blank images),
# "eval_text_priors" (the cell trained on blank images, tested on blank images).
# The model is rebuilt in memory from what defines it — base LLM + CLIP, the stage-1 connector, the cell's delta —
# so an evaluation is outdated exactly when one of those changes (never by a temporary folder's timestamp).
rule evaluate:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        delta=lambda w: paths.delta(RESULTS, w.llm, w.strategy, w.lr, paths.EVALSETS[w.evalset][0]),
        connector=f"{RESULTS}/pretrain/{{llm}}/connector.safetensors",
        llm=lambda w: model_input(config["models"][w.llm]),
        vision=model_input(config["vision"]),
        data=data_inputs(),
    output:
        predictions=f"{RESULTS}/{{evalset}}/{{llm}}/{{strategy}}/{{lr}}/{{bench}}/predictions.jsonl",
        metrics=f"{RESULTS}/{{evalset}}/{{llm}}/{{strategy}}/{{lr}}/{{bench}}/metrics.json",
    wildcard_constraints:
        evalset="|".join(paths.EVALSETS),
    params:
        llm=lambda w: study.model_dir(config, config["models"][w.llm]),
        vision=lambda w: study.model_dir(config, config["vision"]),
        strategy=lambda w: w.strategy,
        template=lambda w: config["models"][w.llm]["template"],
        config=lambda w: evaluation_config_json(w.bench, w.strategy),
        out_dir=lambda w, output: os.path.dirname(output.metrics),
        blind=lambda w: "--blind" if paths.EVALSETS[w.evalset][1] else "",
    threads: 2
    resources:
        gpu=config["gpus"].get("evaluate", 0),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/{{evalset}}/{{llm}}/{{strategy}}/{{lr}}/{{bench}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{evalset}}/{{llm}}/{{strategy}}/{{lr}}/{{bench}}.tsv"
    shell:
        "python -m workflow_scripts.gpu_lease --gpus {resources.gpu} --launch --"
        " -m workflow_scripts.evaluate.run --bench {wildcards.bench} --config-json {params.config:q}"
        " --template {params.template} --llm {params.llm} --vision {params.vision} --connector {input.connector}"
        " --strategy {params.strategy} --delta {input.delta} --out-dir {params.out_dir} {params.blind}"
        " --threads {threads} > {log} 2>&1"


rule evaluate_stage1:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        connector=f"{RESULTS}/pretrain/{{llm}}/connector.safetensors",
        llm=lambda w: model_input(config["models"][w.llm]),
        vision=model_input(config["vision"]),
        data=data_inputs(),
    output:
        predictions=f"{RESULTS}/eval_stage1/{{llm}}/{{bench}}/predictions.jsonl",
        metrics=f"{RESULTS}/eval_stage1/{{llm}}/{{bench}}/metrics.json",
    params:
        llm=lambda w: study.model_dir(config, config["models"][w.llm]),
        vision=lambda w: study.model_dir(config, config["vision"]),
        template=lambda w: config["models"][w.llm]["template"],
        config=lambda w: evaluation_config_json(w.bench),
        out_dir=lambda w, output: os.path.dirname(output.metrics),
    threads: 2
    resources:
        gpu=config["gpus"].get("evaluate", 0),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/evaluate_stage1/{{llm}}/{{bench}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_stage1/{{llm}}/{{bench}}.tsv"
    shell:
        "python -m workflow_scripts.gpu_lease --gpus {resources.gpu} --launch --"
        " -m workflow_scripts.evaluate.run --bench {wildcards.bench} --config-json {params.config:q}"
        " --template {params.template} --llm {params.llm} --vision {params.vision} --connector {input.connector}"
        " --out-dir {params.out_dir} --threads {threads} > {log} 2>&1"


# Calibration: a released checkpoint (standard HF Llava folder, fetched like the base models) or, at toy scale,
# the study's own export of a cell, scored by the same evaluation with the protocol it was published with.
rule evaluate_reference:
    input:
        # only this benchmark's inputs (no preflight of the training data): calibration can run before they exist
        model=lambda w: reference_input(w.ref),
        data=lambda w: bench_data_inputs(w.bench),
    output:
        predictions=f"{RESULTS}/eval_reference/{{ref}}/{{bench}}/predictions.jsonl",
        metrics=f"{RESULTS}/eval_reference/{{ref}}/{{bench}}/metrics.json",
    wildcard_constraints:
        ref="|".join(re.escape(r) for r in REFERENCES) or "(?!)",
    params:
        model=lambda w: reference_dir(w.ref),
        template=lambda w: REFERENCES[w.ref]["template"],
        config=lambda w: reference_config_json(w.ref, w.bench),
        out_dir=lambda w, output: os.path.dirname(output.metrics),
    threads: 2
    resources:
        gpu=config["gpus"].get("evaluate", 0),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/evaluate_reference/{{ref}}/{{bench}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_reference/{{ref}}/{{bench}}.tsv"
    shell:
        "python -m workflow_scripts.gpu_lease --gpus {resources.gpu} --launch --"
        " -m workflow_scripts.evaluate.run --bench {wildcards.bench} --config-json {params.config:q}"
        " --template {params.template} --model {params.model} --out-dir {params.out_dir}"
        " --threads {threads} > {log} 2>&1"
