"""MME: 14 yes/no subtasks (the toy world has 5), two questions per image (one Yes, one No).

Parsing as the official ``calculation.py``: on the raw answer, lower-cased but not stripped, exact yes/no, else
yes/no within the first 4 characters, else wrong. Subtask score = 100·acc + 100·acc+ (acc+: both questions of an
image right). Perception = sum of the 10 perception subtasks (max 2000), cognition of the 4 others (max 800);
``perception_8`` is the authors' sibling code's sum without landmark and artwork (max 1600).

Rescoring accepts our predictions and LLaVA's MME answer files (``question_id = "<subtask>/<image file>"``,
shared by both questions of an image, told apart by the question in ``prompt``).
"""

from __future__ import annotations

import os
from collections import defaultdict

from workflow_scripts.data.labels import IMAGE_PLACEHOLDER
from workflow_scripts.data.readers import read_mme
from workflow_scripts.evaluate.common import Answer, Prompt, coverage, score_cli

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
SIBLING_EXCLUDED = ("landmark", "artwork")  # UCSC-VLAA/Sight-Beyond-Text sums 8 perception subtasks
LLAVA_SUFFIX = "\nAnswer the question using a single word or phrase."


def question_id(subtask: str, image: str, answer: str) -> str:
    return f"{subtask}/{os.path.splitext(os.path.basename(image))[0]}/{answer.lower()}"


OFFICIAL_INSTRUCTION = "Please answer yes or no."


def build_prompts(root: str, instruction: str = "official") -> tuple[list[Prompt], dict]:
    """One prompt per question; references: id -> (subtask, image, "yes"|"no"). ``instruction``: "official" keeps
    each question verbatim; "llava" asks as LLaVA-1.5's MME file does, its short-answer suffix in place of
    "Please answer yes or no." (the protocol its published MME scores were measured with)."""
    prompts, refs = [], {}
    for q in read_mme(root):
        qid = question_id(q.subtask, q.image, q.answer)
        text = q.question
        if instruction == "llava" and text.rstrip().endswith(OFFICIAL_INSTRUCTION):
            text = text.rstrip()[: -len(OFFICIAL_INSTRUCTION)].rstrip() + LLAVA_SUFFIX
        prompts.append(Prompt(qid, f"{IMAGE_PLACEHOLDER}\n{text}", q.image))
        refs[qid] = (q.subtask, q.image, q.answer.lower(), q.question)
    return prompts, refs


def question_key(subtask: str, image: str, question: str) -> tuple[str, str, str]:
    """What identifies an MME question across formats: subtask, image file name and the question without its
    answer instruction (LLaVA replaces "Please answer yes or no." by its own suffix; some official questions
    have two spaces before it)."""
    q = question.replace(LLAVA_SUFFIX, "").strip()
    if q.endswith("Please answer yes or no."):
        q = q[: -len("Please answer yes or no.")]
    return subtask, os.path.basename(image), " ".join(q.split())


def match_answers(answers: list[Answer], refs: dict) -> dict[str, str]:
    """Our question id -> answer text, for our ids or LLaVA's (``<subtask>/<image file>`` + prompt)."""
    by_key = {question_key(sub, image, question): qid for qid, (sub, image, _, question) in refs.items()}
    out = {}
    for a in answers:
        if a.id in refs:
            out[a.id] = a.text
        elif "/" in a.id and a.prompt is not None:
            subtask, image = a.id.split("/", 1)
            qid = by_key.get(question_key(subtask, image, a.prompt))
            if qid is not None:
                out[qid] = a.text
    return out


def parse(text: str) -> str:
    """'yes', 'no' or 'other' as the official MME tool decides (raw text: a leading space makes "other")."""
    answer = text.lower()
    if answer in ("yes", "no"):
        return answer
    head = answer[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def score(parsed: dict[str, str], refs: dict[str, tuple], allow_partial: bool = False) -> dict:
    """Pure scoring: per-subtask acc, acc+, score; perception (10 and 8 subtasks) and cognition sums. Answers
    must cover the references (``coverage``); a partial score covers the answered questions and says so."""
    cover = coverage(parsed, refs, "mme", allow_partial, hint="; LLaVA's answer files need their 'prompt' field")
    per_image = defaultdict(list)
    for qid, (subtask, image, truth, *_) in refs.items():
        if qid in parsed:
            per_image[(subtask, image)].append(parsed[qid] == truth)
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
            "perception_8": sum(v["score"] for k, v in out.items() if k in PERCEPTION and k not in SIBLING_EXCLUDED),
            "cognition": sum(v["score"] for k, v in out.items() if k in COGNITION), "subtasks": out,
            "coverage": cover}


def score_file(answers: list[Answer], root: str, allow_partial: bool = False) -> dict:
    _, refs = build_prompts(root)
    return score({k: parse(v) for k, v in match_answers(answers, refs).items()}, refs, allow_partial)


if __name__ == "__main__":
    score_cli("mme", score_file)


def no_image_guess(prompts, paths: dict) -> dict[str, str]:
    """The best answer without looking: every question has a yes and a no twin on the same image, so any constant
    answer is right half the time and never on both ("Yes" everywhere)."""
    return {p.id: "Yes" for p in prompts}
