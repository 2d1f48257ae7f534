"""POPE: "Is there a <object> in the image?" over random / popular / adversarial negative sampling.

Parsing as LLaVA's evaluation: keep the text before the first '.', drop commas; a word no/not/No makes it
"no", anything else "yes". Metrics with yes as the positive class; headline: mean F1 over the splits. Beside
them (not POPE's, ours): the share of images whose questions all got one answer although one object is there
and another is not. A model that reads the picture but not the question sits at 50 % accuracy with this at
100 %; one that answers each question at random has it at 12.5 % for two present and two absent objects.

Rescoring accepts our predictions (ids ``<split>/<question_id>``) and LLaVA's answer files, whose ids are those of
its ``llava_pope_test.jsonl``: given that question file (``--questions``), answers are grouped by its
``category`` and paired with ``coco_pope_<category>.json`` in file order, as LLaVA's ``eval_pope.py`` does.
"""

from __future__ import annotations

import json
import os

from workflow_scripts.data.labels import IMAGE_PLACEHOLDER
from workflow_scripts.data.readers import read_pope
from workflow_scripts.evaluate.common import Answer, Prompt, coverage, score_cli


def build_prompts(root: str, images: str, splits, suffix: str = "") -> tuple[list[Prompt], dict]:
    prompts, refs = [], {}
    for split in splits:
        for q in read_pope(os.path.join(root, f"coco_pope_{split}.json")):
            qid = f"{split}/{q.question_id}"
            prompts.append(Prompt(qid, f"{IMAGE_PLACEHOLDER}\n{q.text}{suffix}", os.path.join(images, q.image)))
            refs[qid] = (split, q.label, q.image)
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


def question_blind_images(parsed: dict[str, str], refs: dict[str, tuple[str, str, str]]) -> dict:
    """Of the images with a present and an absent object asked about (and answered), how many got one answer to
    every question: ``{"images": n, "question_blind": % of them}``."""
    by_image: dict[str, list[tuple[str, str]]] = {}
    for qid, (_, truth, image) in refs.items():
        if qid in parsed:
            by_image.setdefault(image, []).append((parsed[qid], truth))
    mixed = [pairs for pairs in by_image.values() if {t for _, t in pairs} == {"yes", "no"}]
    blind = sum(len({p for p, _ in pairs}) == 1 for pairs in mixed)
    return {"images": len(mixed), "question_blind": 100 * blind / len(mixed) if mixed else None}


def score(parsed: dict[str, str], refs: dict[str, tuple[str, str, str]], allow_partial: bool = False) -> dict:
    """Pure scoring per split and the means. Answers must cover the references (``coverage``)."""
    cover = coverage(parsed, refs, "pope", allow_partial,
                     hint="; LLaVA's answer files are scored with its question file: --questions llava_pope_test.jsonl")
    by_split: dict[str, dict] = {}
    for qid, ref in refs.items():
        by_split.setdefault(ref[0], {})[qid] = ref
    out = {}
    for split, split_refs in sorted(by_split.items()):
        pairs = [(parsed[qid], truth) for qid, (_, truth, _) in split_refs.items() if qid in parsed]
        if pairs:
            out[split] = {**binary_metrics(pairs), **question_blind_images(parsed, split_refs)}
    return {"f1_mean": sum(v["f1"] for v in out.values()) / len(out),
            "accuracy_mean": sum(v["accuracy"] for v in out.values()) / len(out), "splits": out, "coverage": cover}


def llava_categories(questions: str) -> dict[str, str]:
    """question_id -> category of LLaVA's ``llava_pope_test.jsonl``."""
    out = {}
    with open(questions, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                row = json.loads(line)
                if "question_id" not in row or "category" not in row:
                    raise ValueError(f"{questions}: line {n}: needs question_id and category (LLaVA's question file)")
                out[str(row["question_id"])] = row["category"]
    return out


def match_answers(answers: list[Answer], refs: dict, questions: str | None = None) -> dict[str, str]:
    """Our question id -> answer text: our ids directly, or LLaVA's ids through its question file."""
    if questions is None or any(a.id in refs for a in answers):
        return {a.id: a.text for a in answers if a.id in refs}
    category = llava_categories(questions)
    by_split: dict[str, list[str]] = {}
    for a in answers:
        if a.id not in category:
            raise ValueError(f"{questions}: has no question {a.id!r} of the answer file")
        by_split.setdefault(category[a.id], []).append(a.text)
    out = {}
    for split, texts in by_split.items():
        ids = [qid for qid, (s, _, _) in refs.items() if s == split]
        if len(texts) > len(ids):
            raise ValueError(f"pope: {len(texts)} answers of category {split!r}, but coco_pope_{split}.json has "
                             f"{len(ids)} questions (another POPE version?)")
        out.update(zip(ids, texts))
    return out


def score_file(answers: list[Answer], root: str, splits: str = "random,popular,adversarial",
               allow_partial: bool = False, questions: str | None = None) -> dict:
    _, refs = build_prompts(root, "", splits.split(","))
    return score({k: parse(v) for k, v in match_answers(answers, refs, questions).items()}, refs, allow_partial)


if __name__ == "__main__":
    score_cli("pope", score_file, extra_args=[("--questions", {"help": "LLaVA's llava_pope_test.jsonl, to score "
                                                              "LLaVA's POPE answer files"})])


def no_image_guess(prompts, paths: dict) -> dict[str, str]:
    """The best answer without looking: each image has as many absent as present objects, and answering "yes"
    everywhere has the best F1 of the constant answers (precision 0.5, recall 1: F1 66.67)."""
    return {p.id: "yes" for p in prompts}
