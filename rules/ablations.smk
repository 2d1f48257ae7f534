# Ablations, extra targets driven by config["ablations"] (`snakemake ablations`). The connector ablation needs
# no rules of its own: its strategies are rows of the strategy table, trained and evaluated by finetune and
# evaluate at the LR chosen for its base strategy. The data-type ablation trains the same strategy on one subset
# of the instruct data; the `full` subset is the main run itself. `use rule ... with:` replaces inputs and
# outputs whole but merges params, so each variant names only the params it changes.


# LLaVA's per-type files joined into one tagged pool (the 80K file has no type tags and no detail records).
rule instruct_by_type:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        files=instruct_type_inputs(),
    output:
        f"{RESULTS}/ablations/data_type/instruct_by_type.json",
    params:
        types=" ".join(f"--type {name}={path}" for name, path in instruct_type_files().items()),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/instruct_by_type/instruct_by_type.log",
    benchmark:
        f"{RESULTS}/benchmarks/instruct_by_type.tsv"
    shell:
        "python -m workflow_scripts.data.instruct_types {params.types} --out {output} > {log} 2>&1"


use rule finetune as finetune_data_subset with:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        connector=f"{RESULTS}/pretrain/{{llm}}/connector.safetensors",
        instruct=data_subset_pool(),
        llm=lambda w: model_input(config["models"][w.llm]),
        vision=model_input(config["vision"]),
    output:
        delta=protected(f"{RESULTS}/ablations/data_type/{{llm}}/{{subset}}/{{lr}}/trainable_delta.safetensors"),
        efficiency=f"{RESULTS}/ablations/data_type/{{llm}}/{{subset}}/{{lr}}/efficiency.json",
    params:  # merged into finetune's: only what differs
        strategy=ABLATIONS.get("data_type", {}).get("strategy"),
        instruct=lambda w, input: input.instruct,
        config=lambda w: finetune_config_json(w.llm, ABLATIONS["data_type"]["strategy"]),
        subset=lambda w: subset_args(w.subset),
        blank="",  # finetune's reads {trainset}, which this rule has not
        stop="",  # (likewise: an ablation run always trains to the end)
        checkpoints=lambda w: f"{RESULTS}/checkpoints/ablations/data_type/{w.llm}/{w.subset}/{w.lr}",
        tensorboard=lambda w: f"{RESULTS}/tensorboard/ablations/data_type/{w.llm}/{w.subset}/{w.lr}",
    wildcard_constraints:
        subset="[A-Za-z0-9_]+",
    resources:
        gpu=lambda w: study.finetune_gpus(config, w.llm, ABLATIONS["data_type"]["strategy"]),
    log:
        f"{RESULTS}/logs/finetune_data_subset/{{llm}}/{{subset}}/{{lr}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune_data_subset/{{llm}}/{{subset}}/{{lr}}.tsv"


use rule evaluate as evaluate_data_subset with:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        delta=f"{RESULTS}/ablations/data_type/{{llm}}/{{subset}}/{{lr}}/trainable_delta.safetensors",
        connector=f"{RESULTS}/pretrain/{{llm}}/connector.safetensors",
        llm=lambda w: model_input(config["models"][w.llm]),
        vision=model_input(config["vision"]),
        data=data_inputs(),
    output:
        predictions=f"{RESULTS}/ablations/data_type/{{llm}}/{{subset}}/{{lr}}/eval/{{bench}}/predictions.jsonl",
        metrics=f"{RESULTS}/ablations/data_type/{{llm}}/{{subset}}/{{lr}}/eval/{{bench}}/metrics.json",
    wildcard_constraints:
        subset="[A-Za-z0-9_]+",
    params:
        blind="",  # evaluate's reads {evalset}, which this rule has not
        strategy=ABLATIONS.get("data_type", {}).get("strategy"),
        config=lambda w: evaluation_config_json(w.bench, ABLATIONS["data_type"]["strategy"]),
    log:
        f"{RESULTS}/logs/evaluate_data_subset/{{llm}}/{{subset}}/{{lr}}/{{bench}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate_data_subset/{{llm}}/{{subset}}/{{lr}}/{{bench}}.tsv"


rule ablation_table:
    input:
        selection=f"{RESULTS}/selection/best_lr.json",
        results=ablation_inputs,
    output:
        report_when_made(f"{RESULTS}/tables/ablation_{{ablation}}.html", {"ablation": list(ABLATIONS)},
                         caption="captions/ablations.rst", category="Ablations", labels={"ablation": "{ablation}"}),
        f"{RESULTS}/tables/ablation_{{ablation}}.csv",
        f"{RESULTS}/tables/ablation_{{ablation}}.md",
        f"{RESULTS}/tables/ablation_{{ablation}}.tex",
    wildcard_constraints:
        ablation="|".join(ABLATIONS) or "no_ablation_configured",
    params:
        config=ablation_config_json(),
        results=lambda w, output: results_root_of(output[0]),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/ablation_table/{{ablation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablation_table/{{ablation}}.tsv"
    shell:
        "python -m workflow_scripts.report.ablations --config-json {params.config:q} --results {params.results}"
        " --ablation {wildcards.ablation} > {log} 2>&1"


rule ablations:
    input:
        ablation_tables(),
