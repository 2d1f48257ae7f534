"""Preflight: before any training job, check that every configured input exists and parses, and say what is
missing and where to get it. Cheap: the same readers the jobs use, no images decoded.

Entry: ``python -m workflow_scripts.data.preflight --config-json JSON --out results/preflight/inputs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from workflow_scripts import study
from workflow_scripts.data import readers
from workflow_scripts.fetch.data import load_sources
from workflow_scripts.io import write_json

SOURCES_TABLE = Path(__file__).resolve().parents[2] / "config" / "sources.yaml"


def where_to_get(key: str, table_path: str | os.PathLike = SOURCES_TABLE) -> str:
    """Where a data key's files come from, as the sources table says (the one place that records it)."""
    lines = []
    for name, entry in load_sources(str(table_path)).items():
        if key not in entry.get("provides", []):
            continue
        if "url" in entry:
            lines.append(f"{entry['url']} (sources.yaml: {name}; rule fetch_data fetches it)")
        elif "hub" in entry:
            h = entry["hub"]
            lines.append(f"hub {h.get('type', 'dataset')} {h['repo']}, file {h['file']} (sources.yaml: {name}; rule "
                         "fetch_data fetches it)")
        if "manual" in entry and "url" not in entry and "hub" not in entry:
            lines.append(f"by hand (sources.yaml: {name}): {entry['manual']}")
    return "\n      ".join(lines) or "no entry in config/sources.yaml provides it"


def _check(key: str, path: str, config: dict):
    """Parse one input; returns (a short description of what was found, its size where it is a benchmark's)."""
    if key == "cc3m_tsv":
        return f"{len(readers.read_cc3m_tsv(path))} rows", None
    if key in ("cc3m_subset", "instruct_json"):
        return f"{len(readers.read_llava_json(path))} records", None
    if key.endswith("karpathy_json"):
        n = len(readers.read_karpathy(path, "test"))
        return f"{n} test images", n
    if key == "vqav2_questions":
        n = len(readers.read_vqav2(path, study.data_path(config, "vqav2_annotations")))
        return f"{n} questions", n
    if key == "vqav2_train_questions":
        return f"{len(readers.read_vqav2(path, study.data_path(config, 'vqav2_train_annotations')))} questions", None
    if key == "mme_root":
        questions = readers.read_mme(path)
        per = {}
        for q in questions:
            per[q.subtask] = per.get(q.subtask, 0) + 1
        return f"{len(questions)} questions in {len(per)} subtasks", per
    if key == "pope_root":
        splits = config["benchmarks"]["pope"]["splits"]
        per = {s: len(readers.read_pope(os.path.join(path, f"coco_pope_{s}.json"))) for s in splits}
        return ", ".join(f"{s}: {n}" for s, n in per.items()), per
    if not os.path.isdir(path) and not os.path.isfile(path):
        raise FileNotFoundError(path)
    return "present", None


# Which data key holds each benchmark's size.
SIZE_KEYS = {"mme": "mme_root", "pope": "pope_root", "vqav2": "vqav2_questions", "coco": "coco_karpathy_json",
             "flickr30k": "flickr30k_karpathy_json"}


def size_problems(bench: str, spec: dict, size) -> list[str]:
    """What a benchmark of ``size`` lacks against a complete one (``study.expected_size``); [] when complete.
    Pure: sizes as ``_check`` returns them."""
    expected = study.expected_size(bench, spec)
    if bench == "mme":
        total = sum(size.values())
        if total == expected:
            return []
        msg = f"mme: {total} of {expected} questions"
        if expected == readers.MME_TOTAL:
            missing = [s for s in readers.MME_QUESTIONS if s not in size]
            short = [f"{s} {n}/{readers.MME_QUESTIONS[s]}" for s, n in size.items()
                     if s in readers.MME_QUESTIONS and n != readers.MME_QUESTIONS[s]]
            msg += f"; missing subtasks: {missing or 'none'}; incomplete: {short or 'none'}"
        return [msg]
    if bench == "pope":
        # The POPE repository's current files hold 3000 lines per split; the commit LLaVA pinned has 2910 in random.
        return [f"pope: {split} has {n} questions, a complete split {expected}"
                for split, n in size.items()
                if n != expected and not (split == "random" and expected == 3000 and n == 2910)]
    if bench == "vqav2":
        return [] if size >= expected else [f"vqav2: {size} questions, fewer than subset_size {expected}"]
    return [] if size == expected else [f"{bench}: {size} of {expected} test images (Karpathy test split)"]


def preflight(config: dict) -> tuple[dict, list[str]]:
    """(found, problems) over every configured input, benchmark sizes included."""
    found, problems, sizes = {}, [], {}
    for key in study.DATA_KEYS:
        path = study.data_path(config, key)
        if path is None:
            continue
        if not os.path.exists(path):
            problems.append(f"missing {key}: {path}\n    get it from: {where_to_get(key)}")
            continue
        try:
            text, sizes[key] = _check(key, path, config)
            found[key] = {"path": path, "found": text}
        except (readers.DataFormatError, FileNotFoundError) as e:
            problems.append(f"unreadable {key}: {e}")
    for bench, spec in config.get("benchmarks", {}).items():
        key = SIZE_KEYS[bench]
        if sizes.get(key) is None:
            continue
        lacking = size_problems(bench, spec, sizes[key])
        found[key]["complete"] = not lacking
        if lacking and spec.get("allow_partial", False):
            found[key]["partial"] = lacking  # scored on what there is; the count travels with the number
        elif lacking:
            problems += [f"incomplete {m} (a deliberately partial benchmark: benchmarks.{bench}.allow_partial: "
                         "true)" for m in lacking]
    return found, problems


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config-json", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    found, problems = preflight(json.loads(args.config_json))
    for key, info in found.items():
        print(f"ok  {key:26s} {info['path']}  ({info['found']})")
    if problems:
        print("\nPreflight failed: fix these inputs (paths are data_root + the config's relative path):",
              file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    # The data root is recorded too: a results root belongs to the data it was computed from (study.check_results_root).
    write_json(args.out, {"data_root": json.loads(args.config_json)["data_root"], **found})


if __name__ == "__main__":
    main()
