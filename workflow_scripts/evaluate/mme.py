"""MME: 14 yes/no subtasks (the toy world has 5), two questions per image (one Yes, one No).

Parsing as the official tool: exact yes/no, else yes/no within the first 4 characters, else wrong. Subtask
score = 100·acc + 100·acc+ (acc+: both questions of an image right). Perception = sum of the perception
subtasks present (max 2000 with all 10), cognition likewise (max 800).
"""

from __future__ import annotations

import os
from collections import defaultdict

from workflow_scripts.data.labels import IMAGE_PLACEHOLDER
from workflow_scripts.data.readers import read_mme
from workflow_scripts.evaluate.common import Prompt, score_cli

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def question_id(subtask: str, image: str, answer: str) -> str:
    return f"{subtask}/{os.path.splitext(os.path.basename(image))[0]}/{answer.lower()}"


def build_prompts(root: str) -> tuple[list[Prompt], dict]:
    """One prompt per question; references: id -> (subtask, image, "yes"|"no")."""
    prompts, refs = [], {}
    for q in read_mme(root):
        qid = question_id(q.subtask, q.image, q.answer)
        prompts.append(Prompt(qid, f"{IMAGE_PLACEHOLDER}\n{q.question}", q.image))
        refs[qid] = (q.subtask, q.image, q.answer.lower())
    return prompts, refs


def parse(text: str) -> str:
    """'yes', 'no' or 'other' as the official MME tool decides."""
    answer = text.strip().lower()
    if answer in ("yes", "no"):
        return answer
    head = answer[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def score(parsed: dict[str, str], refs: dict[str, tuple[str, str, str]]) -> dict:
    """Pure scoring: per-subtask acc, acc+, score; perception and cognition sums. Missing answers are wrong."""
    per_image = defaultdict(list)
    for qid, (subtask, image, truth) in refs.items():
        per_image[(subtask, image)].append(parsed.get(qid) == truth)
    subtasks = defaultdict(lambda: {"questions": 0, "correct": 0, "images": 0, "both": 0})
    for (subtask, _), results in per_image.items():
        s = subtasks[subtask]
        s["questions"] += len(results)
        s["correct"] += sum(results)
        s["images"] += 1
        s["both"] += all(results)
    out = {}
    for name, s in sorted(subtasks.items()):
        acc, acc_plus = 100 * s["correct"] / s["questions"], 100 * s["both"] / s["images"]
        out[name] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "questions": s["questions"]}
    return {"perception": sum(v["score"] for k, v in out.items() if k in PERCEPTION),
            "cognition": sum(v["score"] for k, v in out.items() if k in COGNITION), "subtasks": out}


def score_file(predictions: dict[str, str], root: str) -> dict:
    _, refs = build_prompts(root)
    return score({k: parse(v) for k, v in predictions.items()}, refs)


if __name__ == "__main__":
    score_cli("mme", score_file)
