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
