# Reports: the study grid, the LR selection, the paper's tables and the sweep figures. Tables and figures are
# registered with report() so `snakemake --report report.html` collects them with captions.


rule study_plan:
    output:
        f"{RESULTS}/plan/study_grid.csv",
    params:
        config=plan_config(),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/study_plan/study_plan.log",
    benchmark:
        f"{RESULTS}/benchmarks/study_plan.tsv"
    shell:
        "python -m workflow_scripts.plan --config-json {params.config:q} --out {output} > {log} 2>&1"


# The efficiency table from configs alone (meta device): no weights or data needed for the real models.
rule param_table:
    input:
        llms=[local_model_input(m) for m in config["models"].values()],
        vision=local_model_input(config["vision"]),
    output:
        f"{RESULTS}/efficiency/param_table.csv",
    params:
        config=param_table_config(),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/param_table/param_table.log",
    benchmark:
        f"{RESULTS}/benchmarks/param_table.tsv"
    shell:
        "python -m workflow_scripts.model.accounting --config-json {params.config:q} --out {output} > {log} 2>&1"


# Un-wildcarded checkpoint: once every sweep cell is scored on the selection benchmark, it picks one LR per
# LLM x strategy; only then does the DAG know which models run the other benchmarks (report_inputs).
# selection.mode halving: every LR's run stopped at the rung, scored; the `keep` best per LLM x strategy continue.
checkpoint select_rung:
    input:
        rung_inputs(),
    output:
        json=paths.rung_selection(RESULTS),
    params:
        config=selection_config_json(),
        results=lambda w, output: results_root_of(output[0]),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/select_rung/select_rung.log",
    benchmark:
        f"{RESULTS}/benchmarks/select_rung.tsv"
    shell:
        "python -m workflow_scripts.report.select_lr --rung --config-json {params.config:q}"
        " --results {params.results} --json {output.json} > {log} 2>&1"


checkpoint select_lr:
    input:
        lambda w: selection_inputs(),
    output:
        json=f"{RESULTS}/selection/best_lr.json",
        md=f"{RESULTS}/selection/best_lr.md",
    params:
        config=selection_config_json(),
        results=lambda w, output: results_root_of(output[0]),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/select_lr/select_lr.log",
    benchmark:
        f"{RESULTS}/benchmarks/select_lr.tsv"
    shell:
        "python -m workflow_scripts.report.select_lr --config-json {params.config:q} --results {params.results}"
        " --json {output.json} --md {output.md} > {log} 2>&1"


# One LLM's sweep and the LR each strategy would get, without waiting for the other LLMs:
# `snakemake results/selection/sweep_vicuna-7b.md`.
rule sweep_summary:
    input:
        lambda w: [f for f in selection_inputs() if f"/eval/{w.llm}/" in f],
    output:
        f"{RESULTS}/selection/sweep_{{llm}}.md",
    params:
        config=selection_config_json(),
        results=lambda w, output: results_root_of(output[0]),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/sweep_summary/{{llm}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sweep_summary/{{llm}}.tsv"
    shell:
        "python -m workflow_scripts.report.select_lr --config-json {params.config:q} --results {params.results}"
        " --llm {wildcards.llm} --md {output} > {log} 2>&1"


rule tables:
    input:
        selection=f"{RESULTS}/selection/best_lr.json",
        results=report_inputs,
        sweep_efficiency=lambda w: sweep_efficiency_files(),  # the LR-sweep table: tensors each cell changed
    output:
        # The HTML version of each table goes into `snakemake --report`, shown inline with its own caption.
        [report_when_made(f, caption=f"captions/{os.path.basename(f)[: -len('.html')]}.rst", category="Tables")
         if f.endswith(".html") else f for f in table_files()],
    params:
        config=report_config_json(),
        results=lambda w, output: results_root_of(output[0]),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/tables/tables.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables.tsv"
    shell:
        "python -m workflow_scripts.report.tables --config-json {params.config:q} --results {params.results} > {log} 2>&1"


# Per LLM: the LR sweep and the stage-2 loss curves at the chosen LRs, each as PNG (report) + SVG and PDF.
rule figures:
    input:
        selection=f"{RESULTS}/selection/best_lr.json",
        efficiency=lambda w: chosen_efficiency_files(w.llm),
    output:
        sweep=report_when_made(paths.sweep_figure(RESULTS, "{llm}"), caption="captions/sweep_figure.rst",
                               category="Figures", labels={"LLM": "{llm}", "figure": "LR sweep"}),
        sweep_vector=multiext(paths.sweep_figure(RESULTS, "{llm}")[: -len(".png")], ".svg", ".pdf"),
        loss=report_when_made(paths.loss_figure(RESULTS, "{llm}"), caption="captions/loss_figure.rst",
                              category="Figures", labels={"LLM": "{llm}", "figure": "training loss"}),
        loss_vector=multiext(paths.loss_figure(RESULTS, "{llm}")[: -len(".png")], ".svg", ".pdf"),
    params:
        config=report_config_json(),
        results=lambda w, output: results_root_of(output[0]),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/figures/{{llm}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/{{llm}}.tsv"
    shell:
        "(python -m workflow_scripts.report.figures --config-json {params.config:q} --results {params.results}"
        " --llm {wildcards.llm} --kind sweep --out {output.sweep}"
        " && python -m workflow_scripts.report.figures --config-json {params.config:q} --results {params.results}"
        " --llm {wildcards.llm} --kind loss --out {output.loss}) > {log} 2>&1"


# `snakemake calibrate`: the reference rows beside their published numbers; fails when one is off by more than its
# tolerance (the table is then in the log).
rule calibrate:
    input:
        calibration_inputs(),
    output:
        paths.calibration_files(RESULTS),
    params:
        config=calibration_config_json(),
        results=lambda w, output: results_root_of(output[0]),
        out_dir=lambda w, output: os.path.dirname(output[0]),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/calibrate/calibrate.log",
    shell:
        "python -m workflow_scripts.report.calibration --config-json {params.config:q} --results {params.results}"
        " --out-dir {params.out_dir} > {log} 2>&1"
