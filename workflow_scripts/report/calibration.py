"""Calibration: released checkpoints scored by the study's own evaluation, beside the numbers published for them.

Before ~2,200 GPU-hours go into the sweep, this checks the evaluation stack (prompts, image handling, parsing,
scoring) on models whose scores are known: each ``reference_models`` entry names a checkpoint in the standard
Hugging Face Llava format, the protocol it was measured with, and per benchmark the published value with its
source and a tolerance. A difference beyond the tolerance fails the job, with the table in its log.
At toy scale a reference can be the study's own export of a cell (``export_of``) with ``same_as_cell``: its
"published" value is that cell's score from the study's in-memory evaluation, so the standard-format path is
checked end to end against the path the study's tables use.

Entry: ``python -m workflow_scripts.report.calibration --config-json J --results DIR --out-dir DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from workflow_scripts.io import write_json, write_text
from workflow_scripts.report import paths
from workflow_scripts.report.render import RENDERERS, Table

COLUMNS = ["Model", "Benchmark", "Metric", "Ours", "Published", "Difference", "Tolerance", "Within", "Source"]


def published_value(results: str, spec: dict) -> tuple[float | None, str]:
    """(published value, its source) of one benchmark of a reference: the config's number, or the study's own score
    of the cell named by ``same_as_cell`` ("llm/strategy/lr")."""
    if "same_as_cell" in spec:
        llm, strategy, lr = spec["same_as_cell"].split("/")
        path = paths.eval_metrics(results, llm, strategy, lr, spec["bench"])
        with open(path) as f:
            return float(json.load(f)[spec["metric"]]), f"the study's evaluation of {spec['same_as_cell']}"
    return float(spec["value"]), spec["source"]


def calibration_rows(config: dict, results: str) -> list[dict]:
    """One row per reference model x published benchmark, from the reference evaluations' metrics.json."""
    rows = []
    for name, ref in config.get("reference_models", {}).items():
        for bench, spec in ref["published"].items():
            with open(paths.reference_metrics(results, name, bench)) as f:
                metrics = json.load(f)
            ours = float(metrics[spec["metric"]])
            published, source = published_value(results, {**spec, "bench": bench})
            diff = ours - published
            rows.append({"model": ref["label"], "reference": name, "bench": bench, "metric": spec["metric"],
                         "ours": ours, "published": published, "difference": diff, "tolerance": spec["tolerance"],
                         "within": abs(diff) <= spec["tolerance"], "source": source,
                         "size": metrics.get("size")})
    return rows


def calibration_table(rows: list[dict]) -> Table:
    table = Table("Calibration: released checkpoints through our evaluation vs published", COLUMNS,
                  digits={"Tolerance": 2})
    for r in rows:
        table.rows.append([r["model"], r["bench"], r["metric"], r["ours"], r["published"], r["difference"],
                           r["tolerance"], "yes" if r["within"] else "NO", r["source"]])
    table.notes.append("Ours: the study's evaluation code on the checkpoint, with the protocol in "
                       "reference_models (config). A row outside its tolerance fails `snakemake calibrate`: the "
                       "evaluation, not the training, would then explain a gap to the paper.")
    return table


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config-json", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    rows = calibration_rows(json.loads(args.config_json), args.results)
    table = calibration_table(rows)
    print(RENDERERS["md"](table))
    off = [r for r in rows if not r["within"]]
    if off:
        sys.exit("calibration failed: " + "; ".join(
            f"{r['reference']} {r['bench']} {r['metric']} {r['ours']:.2f} vs published {r['published']:.2f} "
            f"(difference {r['difference']:+.2f}, tolerance {r['tolerance']})" for r in off)
            + ". Check the protocol (template, prompt suffix, image_aspect, POPE commit) before training.")
    for ext, render in RENDERERS.items():
        write_text(os.path.join(args.out_dir, f"calibration.{ext}"), render(table))
    write_json(os.path.join(args.out_dir, "calibration.json"), rows)


if __name__ == "__main__":
    main()
