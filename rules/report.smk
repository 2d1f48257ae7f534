# Reports. So far: the study grid (every finetune cell the config asks for, with its batch split), which the
# tables use to show missing cells as missing.


rule study_plan:
    output:
        f"{RESULTS}/plan/study_grid.csv",
    params:
        config=plan_config(),
    conda:
        "../envs/study.yaml"
    log:
        "logs/study_plan/study_plan.log",
    benchmark:
        "benchmarks/rules/study_plan.tsv"
    shell:
        "python -m workflow_scripts.plan --config-json {params.config:q} --out {output} > {log} 2>&1"


# The efficiency table from configs alone (meta device): no weights or data needed for the real models.
rule param_table:
    input:
        llms=[model_input(m["path"]) for m in config["models"].values()],
        vision=model_input(config["vision"]["path"]),
    output:
        f"{RESULTS}/efficiency/param_table.csv",
    params:
        config=lambda w: json.dumps({k: config[k] for k in config if k != "toy_world"}),
    conda:
        "../envs/study.yaml"
    log:
        "logs/param_table/param_table.log",
    benchmark:
        "benchmarks/rules/param_table.tsv"
    shell:
        "python -m workflow_scripts.model.accounting --config-json {params.config:q} --out {output} > {log} 2>&1"
