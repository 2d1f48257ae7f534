# Data: check every configured input (preflight), then CC3M -> webdataset shards with img2dataset.


rule preflight:
    input:
        data_inputs(),
    output:
        f"{RESULTS}/preflight/inputs.json",
    params:
        config=preflight_config_json(),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/preflight/preflight.log",
    benchmark:
        f"{RESULTS}/benchmarks/preflight.tsv"
    shell:
        "python -m workflow_scripts.data.preflight --config-json {params.config:q} --out {output} > {log} 2>&1"


# The shard folder is deliberately not an output: Snakemake would delete it before a rerun, and img2dataset's
# incremental mode could not resume. The summary, written last, marks the download complete.
rule download_cc3m:
    input:
        preflight=f"{RESULTS}/preflight/inputs.json",
        tsv=data_inputs("cc3m_tsv"),
        subset=data_inputs("cc3m_subset"),
    output:
        summary=CC3M_SUMMARY,
    params:
        # From the config, not from input: a missing real input is absent from input (preflight reports it).
        tsv=lambda w: study.data_path(config, "cc3m_tsv"),
        subset=lambda w: optional_flag("--subset", study.data_path(config, "cc3m_subset")),
        shards=lambda w, output: study.shards_of_summary(output.summary),
        size=config["data"]["cc3m_image_size"],
        per_shard=config["data"]["cc3m_per_shard"],
        dl_threads=config["data"]["cc3m_download_threads"],
        file_urls="--allow-file-urls" if config["data"]["cc3m_allow_file_urls"] else "",
    threads: 2
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/download_cc3m/download_cc3m.log",
    benchmark:
        f"{RESULTS}/benchmarks/download_cc3m.tsv"
    shell:
        "python -m workflow_scripts.data.cc3m --tsv {params.tsv} {params.subset} --shards {params.shards}"
        " --summary {output.summary} --image-size {params.size} --processes {threads}"
        " --threads {params.dl_threads} --per-shard {params.per_shard} {params.file_urls} > {log} 2>&1"
