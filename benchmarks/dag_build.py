"""How long Snakemake takes to build the paper's DAG, and how many evaluation jobs LR selection saves.

A dry run (`snakemake -n`) of config.yaml with its data root pointed at empty stand-in files, timed against a
dry run of the smoke config (the smallest DAG: the fixed cost of starting Snakemake and parsing the rules).
The evaluation count compares the study as built (every finetune cell on the selection benchmark, the other
benchmarks only at the chosen LR, plus the stage-1 and blind rows) with evaluating every benchmark at every LR.

Run: `.venv/bin/python benchmarks/dag_build.py` (no GPU, no data, about a minute).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workflow_scripts import study  # noqa: E402


def dry_run(workdir: Path, configfile: Path) -> tuple[float, dict[str, int]]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "-n", "--quiet", "rules"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")).stdout
    seconds = time.perf_counter() - start
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return seconds, counts


def paper_workdir(tmp: Path) -> Path:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data_root"] = str(tmp / "resources")
    for rel in (config["data"]["cc3m_tsv"], config["data"]["instruct_json"]):
        (tmp / "resources" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "resources" / rel).write_text("")
    path = tmp / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def main() -> None:
    repeats = 3
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "paper").mkdir()
        (tmp / "smoke").mkdir()
        paper_cfg = paper_workdir(tmp / "paper")
        paper = [dry_run(tmp / "paper", paper_cfg) for _ in range(repeats)]
        smoke = [dry_run(tmp / "smoke", REPO / "config/smoke.yaml") for _ in range(repeats)]
    t_paper, t_smoke = statistics.median(t for t, _ in paper), statistics.median(t for t, _ in smoke)
    counts = paper[0][1]
    print(f"paper DAG dry run: {t_paper:.1f} s for {counts['total']} jobs before selection "
          f"({counts['finetune']} finetunes, {counts['evaluate']} evaluations)")
    print(f"smoke DAG dry run: {t_smoke:.1f} s for {smoke[0][1]['total']} jobs")
    print(f"ratio paper / smoke: {t_paper / t_smoke:.2f}x")

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    n_llm, n_strategy = len(config["models"]), len(config["strategies"])
    n_cells, n_bench = len(study.finetune_cells(config)), len(config["benchmarks"])
    controls = 2 * n_llm * n_bench  # stage-1-only and blind rows, every benchmark
    with_selection = counts["evaluate"] + n_llm * n_strategy * (n_bench - 1) + controls
    every_lr = n_cells * n_bench + controls
    print(f"evaluation jobs: {with_selection} with selection ({counts['evaluate']} sweep + "
          f"{n_llm * n_strategy * (n_bench - 1)} at the chosen LR + {controls} control rows) vs {every_lr} "
          f"for every benchmark at every LR: {with_selection / every_lr:.3f}x")


if __name__ == "__main__":
    main()
