# Input helpers of the fetch stage and the calibration: where a model is loaded from, which fetch receipts a job
# waits for, and what a reference model's evaluation reads. (Kept apart from common.smk, which holds the study's
# validation, wildcards and the other named helpers.)


def model_input(spec):
    """What a job needs before it can load a model (``spec``: a ``models:`` entry or ``vision:``): the fetch
    receipt of a pinned hub model, the config.json of a local folder (so a rule that makes it runs first)."""
    if spec.get("revision"):
        return [os.path.join(study.model_dir(config, spec), study.MODEL_RECEIPT)]
    return [f"{spec['path']}/config.json"] if study.is_local_model(config, spec["path"]) else []


def local_model_input(spec):
    """``model_input`` for a rule that reads only a config.json it can do without (the shipped architecture
    stands in): a model still to be fetched is not waited for."""
    return [] if spec.get("revision") else model_input(spec)


def sources_table():
    """The sources table's path: as configured, or the repository's when run from another working directory."""
    path = config["fetch"]["sources"]
    if not os.path.isabs(path) and not os.path.exists(path):
        path = os.path.join(workflow.basedir, path)
    return path


def fetch_sources():
    """The sources table's entries this config needs, by name ({} without a fetch: section)."""
    if "fetch" not in config:
        return {}
    table = fetch_data.load_sources(sources_table())
    return {name: table[name] for name in fetch_data.wanted(config, table)}


def fetch_receipts(models=True):
    """The fetch receipts: every data source this config needs, and (``models``) every pinned model."""
    data = [f"{config['data_root']}/fetched/{name}.json" for name in SOURCES]
    if not models:
        return data
    return data + [os.path.join(config["data_root"], "models", repo, study.MODEL_RECEIPT)
                   for repo in study.fetched_models(config)]


REFERENCES = config.get("reference_models", {})


def reference_dir(ref):
    """The folder a reference model is loaded from: its fetched or local folder, or the export of a cell."""
    spec = REFERENCES[ref]
    if "export_of" in spec:
        return os.path.join(RESULTS, "finetune", spec["export_of"], "export")
    return study.model_dir(config, spec)


def reference_input(ref):
    spec = REFERENCES[ref]
    return [reference_dir(ref)] if "export_of" in spec else model_input(spec)


def reference_config_json(ref, bench):
    """An evaluation's keys with the reference's protocol: its image handling and benchmark settings."""
    spec = REFERENCES[ref]
    kept = json.loads(evaluation_config_json(bench))
    kept["vision"] = {**kept["vision"], "image_aspect": spec.get("image_aspect", "pad")}
    kept["stage2"] = {"precision": spec.get("precision", "fp16")}
    kept["benchmarks"][bench] = {**kept["benchmarks"][bench], **spec.get("benchmarks", {}).get(bench, {})}
    return canonical_json(kept)


def calibration_inputs():
    """Every reference evaluation with a published value, and the cells whose own scores stand in for one."""
    out = []
    for ref, spec in REFERENCES.items():
        for bench, published in spec["published"].items():
            out.append(paths.reference_metrics(RESULTS, ref, bench))
            if "same_as_cell" in published:
                out.append(paths.eval_metrics(RESULTS, *published["same_as_cell"].split("/"), bench))
    return out


def calibration_config_json():
    return canonical_json(_pick("reference_models"))
