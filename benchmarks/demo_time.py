"""Where a workflow run's time goes, from Snakemake's per-job benchmark files: wall seconds per rule (summed over
its jobs), the share of the total, and the slowest job. The sum is CPU-side job time, not the run's wall time
(`make demo` runs two one-thread jobs side by side).

    .venv/bin/python benchmarks/demo_time.py                     # results/demo
    .venv/bin/python benchmarks/demo_time.py results/demo_seed43
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def job_seconds(results: Path) -> dict[str, list[tuple[float, str]]]:
    """rule (first folder under benchmarks/, or the file's stem) -> [(seconds, job file), ...]."""
    by_rule = defaultdict(list)
    root = results / "benchmarks"
    for tsv in sorted(root.rglob("*.tsv")):
        with tsv.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if rows:
            rel = tsv.relative_to(root)
            rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
            by_rule[rule].append((float(rows[-1]["s"]), str(rel)))
    return by_rule


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?", default="results/demo", type=Path)
    args = ap.parse_args(argv)
    by_rule = job_seconds(args.results)
    if not by_rule:
        raise SystemExit(f"{args.results}/benchmarks: no benchmark files; run the workflow first")
    total = sum(s for jobs in by_rule.values() for s, _ in jobs)
    print("| rule | jobs | seconds | share | slowest job |\n|---|---|---|---|---|")
    for rule, jobs in sorted(by_rule.items(), key=lambda kv: -sum(s for s, _ in kv[1])):
        seconds = sum(s for s, _ in jobs)
        slow = max(jobs)
        print(f"| {rule} | {len(jobs)} | {seconds:.0f} | {seconds / total:.1%} | {slow[0]:.0f} s ({slow[1]}) |")
    print(f"| all | {sum(len(j) for j in by_rule.values())} | {total:.0f} | 100% | |")


if __name__ == "__main__":
    main()
