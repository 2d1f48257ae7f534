"""POPE: "Is there a <object> in the image?" over random / popular / adversarial negative sampling.

Parsing as LLaVA's evaluation: keep the text before the first '.', drop commas; a word no/not/No makes it
"no", anything else "yes". Metrics with yes as the positive class; headline: mean F1 over the splits.
"""

from __future__ import annotations

import os

from workflow_scripts.data.labels import IMAGE_PLACEHOLDER
from workflow_scripts.data.readers import read_pope
from workflow_scripts.evaluate.common import Prompt, score_cli


def build_prompts(root: str, images: str, splits, suffix: str = "") -> tuple[list[Prompt], dict]:
    prompts, refs = [], {}
    for split in splits:
        for q in read_pope(os.path.join(root, f"coco_pope_{split}.json")):
            qid = f"{split}/{q.question_id}"
            prompts.append(Prompt(qid, f"{IMAGE_PLACEHOLDER}\n{q.text}{suffix}", os.path.join(images, q.image)))
            refs[qid] = (split, q.label)
    return prompts, refs


def parse(text: str) -> str:
    first = text.split(".")[0] if "." in text else text
    words = first.replace(",", "").split(" ")
    return "no" if any(w in ("No", "not", "no") for w in words) else "yes"


def binary_metrics(pairs: list[tuple[str, str]]) -> dict:
    """(prediction, truth) pairs -> accuracy, precision, recall, F1 (yes positive), yes-ratio; in %."""
    tp = sum(p == "yes" and t == "yes" for p, t in pairs)
    fp = sum(p == "yes" and t == "no" for p, t in pairs)
    fn = sum(p == "no" and t == "yes" for p, t in pairs)
    tn = sum(p == "no" and t == "no" for p, t in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n = len(pairs)
    return {"accuracy": 100 * (tp + tn) / n, "precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1,
            "yes_ratio": 100 * (tp + fp) / n, "questions": n}


def score(parsed: dict[str, str], refs: dict[str, tuple[str, str]]) -> dict:
    """Pure scoring per split and the means; a missing answer counts as wrong."""
    splits = sorted({s for s, _ in refs.values()})
    out = {}
    for split in splits:
        pairs = [(parsed.get(qid, "missing"), truth) for qid, (s, truth) in refs.items() if s == split]
        out[split] = binary_metrics(pairs)
    return {"f1_mean": sum(out[s]["f1"] for s in splits) / len(splits),
            "accuracy_mean": sum(out[s]["accuracy"] for s in splits) / len(splits), "splits": out}


def score_file(predictions: dict[str, str], root: str, splits: str = "random,popular,adversarial") -> dict:
    _, refs = build_prompts(root, "", splits.split(","))
    return score({k: parse(v) for k, v in predictions.items()}, refs)


if __name__ == "__main__":
    score_cli("pope", score_file)
