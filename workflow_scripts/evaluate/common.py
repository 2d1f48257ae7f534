"""What every benchmark shares: the prompt record, reading predictions (ours or LLaVA's answer files), provenance
of data files, and the ``score`` command line that rescoring uses."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field

from workflow_scripts.io import sha256_file, write_json


@dataclass
class Prompt:
    """One question to a model: text-only demonstration turns, then the question (with ``<image>``) about
    ``image`` (None: text only)."""

    id: str
    question: str
    image: str | None
    history: list[tuple[str, str]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """One line of an answer file: ours (id, output, prompt) or LLaVA's (question_id, text, prompt)."""

    id: str
    text: str
    prompt: str | None = None


def read_answers(path: str) -> list[Answer]:
    """Every answer of a JSON-lines answer file, in file order (LLaVA's POPE scorer pairs by order). A line
    without an id or a text names the file and line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
            key = row.get("id", row.get("question_id"))
            text = row.get("output", row.get("text"))
            if key is None or text is None:
                raise ValueError(f"{path}: line {n}: needs id/question_id and output/text")
            out.append(Answer(str(key), text, row.get("prompt")))
    return out


def read_predictions(path: str) -> dict[str, str]:
    """id -> raw answer text (see ``read_answers``)."""
    return {a.id: a.text for a in read_answers(path)}


class CoverageError(ValueError):
    """Answers that do not cover a benchmark's references: a score over them would be a silent number."""


def coverage(answered, refs: dict, bench: str, allow_partial: bool = False, hint: str = "") -> dict:
    """Check that the answers' ids cover ``refs``: zero matches is always an error (with ``hint`` on what the
    ids look like), fewer than all is an error unless ``allow_partial``. Returns {answered, references,
    unmatched}; a partial score is then computed over the answered references only, and says so."""
    answered = set(answered)
    matched = [k for k in refs if k in answered]
    unmatched = len(answered - set(refs))
    if not matched:
        example = next(iter(sorted(answered)), None)
        raise CoverageError(f"{bench}: 0 of {len(refs)} references answered: no answer id matches (answer ids look "
                            f"like {example!r}, references like {next(iter(refs), None)!r}){hint}")
    if len(matched) < len(refs) and not allow_partial:
        first = next(k for k in refs if k not in answered)
        raise CoverageError(f"{bench}: {len(matched)} of {len(refs)} answered; first missing: {first!r} (score the "
                            "answered part with allow_partial / --allow-partial, and the count is reported)")
    return {"answered": len(matched), "references": len(refs), "unmatched_answers": unmatched}


def file_fingerprint(path: str) -> dict:
    """Size and sha256 of a file; for a folder, its file count (hashing image folders would cost minutes)."""
    if os.path.isdir(path):
        return {"path": path, "files": sum(len(files) for _, _, files in os.walk(path))}
    return {"path": path, "bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def score_cli(name: str, score_file, argv=None, extra_args=()) -> None:
    """``python -m workflow_scripts.evaluate.<bench> score --predictions F --data D --out metrics.json``."""
    ap = argparse.ArgumentParser(prog=f"python -m workflow_scripts.evaluate.{name}",
                                 description=f"Score {name} predictions (ours or LLaVA's answer-file format).")
    sub = ap.add_subparsers(dest="command", required=True)
    sc = sub.add_parser("score")
    sc.add_argument("--predictions", required=True)
    sc.add_argument("--data", required=True, nargs="+", help="the benchmark's data file(s) or folder")
    sc.add_argument("--out", required=True)
    sc.add_argument("--allow-partial", action="store_true",
                    help="score the answered references when the answers cover only part of the benchmark")
    for flag, kwargs in extra_args:
        sc.add_argument(flag, **kwargs)
    args = ap.parse_args(argv)
    extras = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_"))
              for flag, _ in extra_args}
    metrics = score_file(read_answers(args.predictions), *args.data, allow_partial=args.allow_partial, **extras)
    write_json(args.out, metrics)
    print(json.dumps(metrics, indent=2))
