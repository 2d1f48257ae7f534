"""What every benchmark shares: the prompt record, reading predictions (ours or LLaVA's answer files), provenance
of data files, and the ``score`` command line that rescoring uses."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import dataclass, field

from workflow_scripts.io import write_json


@dataclass
class Prompt:
    """One question to a model: text-only demonstration turns, then the question (with ``<image>``) about
    ``image`` (None: text only)."""

    id: str
    question: str
    image: str | None
    history: list[tuple[str, str]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def read_predictions(path: str) -> dict[str, str]:
    """id -> raw answer text from our ``predictions.jsonl`` (id, output) or LLaVA's answer file
    (question_id, text). A line without either names the file and line."""
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            key = row.get("id", row.get("question_id"))
            text = row.get("output", row.get("text"))
            if key is None or text is None:
                raise ValueError(f"{path}: line {n}: needs id/question_id and output/text")
            out[str(key)] = text
    return out


def file_fingerprint(path: str) -> dict:
    """Size and sha256 of a file; for a folder, its file count (hashing image folders would cost minutes)."""
    if os.path.isdir(path):
        return {"path": path, "files": sum(len(files) for _, _, files in os.walk(path))}
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": path, "bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def score_cli(name: str, score_file, argv=None) -> None:
    """``python -m workflow_scripts.evaluate.<bench> score --predictions F --data D --out metrics.json``."""
    ap = argparse.ArgumentParser(prog=f"python -m workflow_scripts.evaluate.{name}",
                                 description=f"Score {name} predictions (ours or LLaVA's answer-file format).")
    sub = ap.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("score")
    sc.add_argument("--predictions", required=True)
    sc.add_argument("--data", required=True, nargs="+", help="the benchmark's data file(s) or folder")
    sc.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    metrics = score_file(read_predictions(args.predictions), *args.data)
    write_json(args.out, metrics)
    print(json.dumps(metrics, indent=2))
