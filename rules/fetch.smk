# Fetch: every input of the sources table that the config needs, and every pinned model, into data_root. Local
# rules: under SLURM they run on the submit host, which has internet; the jobs after them read local folders only
# (gpu_lease starts them with HF_HUB_OFFLINE=1). The receipt, written last, marks a fetch complete: a rerun with it
# does nothing, one without it verifies what is there and downloads only what is missing.

SOURCES = fetch_sources()
MODEL_REVISIONS = study.fetched_models(config)


localrules:
    fetch,
    fetch_data,
    fetch_model,


# `snakemake fetch`: everything the study reads, and nothing else (on a cluster, run it where there is internet).
rule fetch:
    input:
        fetch_receipts(),


rule fetch_data:
    output:
        f"{config['data_root']}/fetched/{{source}}.json",
    wildcard_constraints:
        source="|".join(re.escape(s) for s in SOURCES) or "(?!)",
    params:
        # what the file is: a change fetches it again (and reruns what reads it); the script reads the rest
        # (size, sha256, the steps for a person) from the table, so filling those in reruns nothing
        source=lambda w: canonical_json(fetch_data.identity(SOURCES[w.source])),
        sources=lambda w: sources_table(),
        root=lambda w, output: os.path.dirname(os.path.dirname(output[0])),  # data_root/fetched/<source>.json
    resources:
        # whether the network may be used: not a rerun trigger (a resource, not a param), so switching a
        # finished study to offline refetches and reruns nothing
        fetch_offline=int(config.get("fetch", {}).get("offline", False)),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/fetch_data/{{source}}.log",
    shell:
        "python -m workflow_scripts.fetch.data --name {wildcards.source} --sources {params.sources}"
        " --data-root {params.root} --receipt {output} --offline {resources.fetch_offline} > {log} 2>&1"


rule fetch_model:
    output:
        os.path.join(config["data_root"], "models", "{repo}", study.MODEL_RECEIPT),
    wildcard_constraints:
        repo="|".join(re.escape(r) for r in MODEL_REVISIONS) or "(?!)",
    params:
        revision=lambda w: MODEL_REVISIONS[w.repo],
        folder=lambda w, output: os.path.dirname(output[0]),
    resources:
        fetch_offline=int(config.get("fetch", {}).get("offline", False)),
    conda:
        "../envs/study.yaml"
    log:
        f"{RESULTS}/logs/fetch_model/{{repo}}.log",
    shell:
        "python -m workflow_scripts.fetch.model --repo {wildcards.repo} --revision {params.revision}"
        " --folder {params.folder} --receipt {output} --offline {resources.fetch_offline} > {log} 2>&1"
