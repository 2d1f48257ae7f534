# The toy world: generated datasets in the real formats and tiny base models in the real HF formats.
# Only active when the config has a toy_world section (config/demo.yaml, config/smoke.yaml).
if TOY is not None:

    rule toy_world:
        output:
            manifest=f"{TOY}/world.json",
            files=toy_world_files(),
            text=multiext(f"{TOY}/pretrain/text_", "train.jsonl", "val.jsonl"),
            clip=multiext(f"{TOY}/pretrain/clip_", "train.jsonl", "test.jsonl"),
        params:
            spec=toy_world_spec(),
        conda:
            "../envs/study.yaml"
        log:
            f"{RESULTS}/logs/toy_world/toy_world.log",
        benchmark:
            f"{RESULTS}/benchmarks/toy_world.tsv"
        shell:
            "python -m workflow_scripts.toyworld.world --spec {params.spec:q} --manifest {output.manifest} > {log} 2>&1"

    rule toy_llm:
        input:
            train=f"{TOY}/pretrain/text_train.jsonl",
            val=f"{TOY}/pretrain/text_val.jsonl",
        output:
            config=f"{TOY}/models/llm/config.json",
            weights=f"{TOY}/models/llm/model.safetensors",
            tokenizer=f"{TOY}/models/llm/tokenizer.json",
            metrics=f"{RESULTS}/toy_models/llm_metrics.json",
        params:
            spec=canonical_json(config["toy_world"]["llm"]),
            seed=config["toy_world"]["seed"],
            # Not used by the command: a change of the trainer's code is a change of the model (code_version.py).
            code=code_version.sources_sha256("workflow_scripts.toyworld.toy_llm"),
            out=lambda w, output: os.path.dirname(output.config),
        threads: 2
        conda:
            "../envs/study.yaml"
        log:
            f"{RESULTS}/logs/toy_llm/toy_llm.log",
        benchmark:
            f"{RESULTS}/benchmarks/toy_llm.tsv"
        shell:
            "python -m workflow_scripts.toyworld.toy_llm --train {input.train} --val {input.val}"
            " --spec {params.spec:q} --seed {params.seed} --threads {threads} --out {params.out}"
            " --metrics {output.metrics} > {log} 2>&1"

    rule toy_vision:
        input:
            train=f"{TOY}/pretrain/clip_train.jsonl",
            test=f"{TOY}/pretrain/clip_test.jsonl",
        output:
            config=f"{TOY}/models/vision/config.json",
            weights=f"{TOY}/models/vision/model.safetensors",
            processor=f"{TOY}/models/vision/preprocessor_config.json",
            metrics=f"{RESULTS}/toy_models/vision_metrics.json",
        params:
            spec=canonical_json(config["toy_world"]["vision"]),
            seed=config["toy_world"]["seed"],
            size=config["toy_world"]["image_size"],
            code=code_version.sources_sha256("workflow_scripts.toyworld.toy_vision"),
            images=lambda w, input: os.path.dirname(input.train),
            out=lambda w, output: os.path.dirname(output.config),
        threads: 2
        conda:
            "../envs/study.yaml"
        log:
            f"{RESULTS}/logs/toy_vision/toy_vision.log",
        benchmark:
            f"{RESULTS}/benchmarks/toy_vision.tsv"
        shell:
            "python -m workflow_scripts.toyworld.toy_vision --train {input.train} --test {input.test}"
            " --images {params.images} --image-size {params.size} --spec {params.spec:q} --seed {params.seed}"
            " --threads {threads} --out {params.out} --metrics {output.metrics} > {log} 2>&1"
