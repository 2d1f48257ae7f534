"""VQAv2 (val2014): a seeded subset of questions, 3 text-only QA demonstrations from the training questions,
and the accuracy of the official ``vqaEval.py`` (GT-Vision-Lab/VQA).

Official normalisation, applied only when the 10 human answers are not all identical (otherwise the stripped
prediction is compared as it is): punctuation removed or spaced, periods not followed by a digit dropped,
lower case, number words to digits, articles dropped, apostrophe-less contractions restored. Per question: the
mean over the 10 leave-one-out subsets of min(1, matches / 3).
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter

from workflow_scripts.data.labels import IMAGE_PLACEHOLDER
from workflow_scripts.data.readers import coco_val2014_name, read_vqav2
from workflow_scripts.evaluate.common import Answer, Prompt, coverage, score_cli

PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
               "?", "!"]
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}


def process_punctuation(text: str) -> str:
    """Official rule: a mark touching a space (or any digit,digit in the text) is deleted, else spaced."""
    out = text
    for p in PUNCTUATION:
        if (p + " " in text or " " + p in text) or COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # The official code calls periodStrip.sub("", outText, re.UNICODE): the flag lands in `count` (32), so at
    # most 32 periods go. Kept as the official tool scores.
    return PERIOD_STRIP.sub("", out, count=re.UNICODE)


def process_digit_article(text: str) -> str:
    words = [NUMBERS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def accuracy(prediction: str, answers: list[str]) -> float:
    """One question's official accuracy in [0, 1] for the 10 human ``answers``."""
    answers = [a.replace("\n", " ").replace("\t", " ").strip() for a in answers]
    pred = prediction.replace("\n", " ").replace("\t", " ").strip()
    if len(set(answers)) > 1:
        answers = [process_digit_article(process_punctuation(a)) for a in answers]
        pred = process_digit_article(process_punctuation(pred))
    scores = []
    for i in range(len(answers)):
        others = answers[:i] + answers[i + 1:]
        scores.append(min(1.0, sum(a == pred for a in others) / 3))
    return sum(scores) / len(scores)


def select_questions(questions, subset_size: int, seed: int):
    """A seeded subset of the questions (all when the subset is larger), in question-id order."""
    if subset_size >= len(questions):
        return sorted(questions, key=lambda q: q.question_id)
    return sorted(random.Random(seed).sample(questions, subset_size), key=lambda q: q.question_id)


def demonstrations(train_questions, train_annotations, shots: int, seed: int) -> list[tuple[str, str]]:
    """``shots`` text-only (question, answer) turns from the training set, fixed by the seed."""
    if shots == 0:
        return []
    pool = read_vqav2(train_questions, train_annotations)
    return [(q.question, q.multiple_choice_answer) for q in random.Random(seed).sample(pool, shots)]


def sibling_selection(questions, subset_size: int, pool_size: int, shots: int, seed: int):
    """The authors' sibling code (UCSC-VLAA/Sight-Beyond-Text, ``evaluate_vqa``): numpy's global generator seeded
    with ``seed`` draws ``pool_size + subset_size`` val questions without replacement; the first ``pool_size`` are
    the demonstration pool, the rest are evaluated in that order, and Python's ``random`` seeded alike draws
    ``shots`` demonstrations from the pool for each evaluated question in turn (question, first human answer).
    Returns [(question, demonstrations)]."""
    import numpy as np

    if pool_size + subset_size > len(questions):
        raise ValueError(f"vqav2 protocol sibling: {pool_size} + {subset_size} questions needed, {len(questions)} "
                         "in the val files")
    order = np.random.RandomState(seed).choice(len(questions), pool_size + subset_size, replace=False)
    pool = [questions[i] for i in order[:pool_size]]
    draw = random.Random(seed)
    out = []
    for i in order[pool_size:]:
        demos = [(d.question.strip(), d.answers[0].strip()) for d in draw.sample(pool, shots)]
        out.append((questions[i], demos))
    return out


def build_prompts(cfg: dict, paths: dict, seed: int) -> tuple[list[Prompt], dict]:
    """``paths``: questions, annotations, train_questions, train_annotations, images. ``cfg["protocol"]``:
    ``seeded_subset`` (ours: a seeded subset, the same training-set demonstrations for every question) or
    ``sibling`` (the authors' code: see ``sibling_selection``)."""
    suffix = cfg.get("prompt_suffix", "")
    val = read_vqav2(paths["questions"], paths["annotations"])
    if cfg.get("protocol", "seeded_subset") == "sibling":
        selected = [(q, [(d + suffix, a) for d, a in demos])
                    for q, demos in sibling_selection(val, cfg["subset_size"], cfg.get("demo_pool", 2048),
                                                      cfg["shots"], seed)]
    else:
        demos = [(q + suffix, a) for q, a in
                 demonstrations(paths["train_questions"], paths["train_annotations"], cfg["shots"], seed)]
        selected = [(q, demos) for q in select_questions(val, cfg["subset_size"], seed)]
    prompts, refs = [], {}
    for q, demos in selected:
        image = os.path.join(paths["images"], coco_val2014_name(q.image_id))
        prompts.append(Prompt(str(q.question_id), f"{IMAGE_PLACEHOLDER}\n{q.question}{suffix}", image, list(demos)))
        refs[str(q.question_id)] = (list(q.answers), q.answer_type, q.question_type)
    return prompts, refs


def no_image_guess(prompts: list[Prompt], paths: dict) -> dict[str, str]:
    """The best answer without looking: per question type (the annotations' ``question_type``), the most common
    answer of the training questions of that type; the overall most common answer for an unseen type."""
    by_type: dict[str, Counter] = {}
    for q in read_vqav2(paths["train_questions"], paths["train_annotations"]):
        by_type.setdefault(q.question_type, Counter())[q.multiple_choice_answer] += 1
    overall = sum(by_type.values(), Counter()).most_common(1)[0][0]
    types = {str(q.question_id): q.question_type for q in read_vqav2(paths["questions"], paths["annotations"])}
    return {p.id: by_type[types[p.id]].most_common(1)[0][0] if types[p.id] in by_type else overall
            for p in prompts}


def parse(text: str) -> str:
    """The answer as generated, up to the first line (scoring does the official normalisation)."""
    return text.strip().split("\n")[0]


def score(parsed: dict[str, str], refs: dict[str, tuple], allow_partial: bool = False) -> dict:
    """Pure scoring: overall, per answer type and per question type (as the official tool's ``perAnswerType``
    and ``perQuestionType``), x100, over answers that cover the references (``coverage``). ``refs``: question id
    -> (answers, answer type[, question type]); per question type: {type: {accuracy, questions}}."""
    cover = coverage(parsed, refs, "vqav2", allow_partial)
    by_type: dict[str, list[float]] = {}
    by_question: dict[str, list[float]] = {}
    total = []
    for qid, (answers, answer_type, *question_type) in refs.items():
        if qid not in parsed:
            continue
        acc = accuracy(parsed[qid], answers)
        total.append(acc)
        by_type.setdefault(answer_type, []).append(acc)
        if question_type and question_type[0]:
            by_question.setdefault(question_type[0], []).append(acc)
    out = {"accuracy": 100 * sum(total) / len(total), "questions": len(total),
           "by_answer_type": {k: 100 * sum(v) / len(v) for k, v in sorted(by_type.items())}}
    if by_question:
        out["by_question_type"] = {k: {"accuracy": 100 * sum(v) / len(v), "questions": len(v)}
                                   for k, v in sorted(by_question.items())}
    return {**out, "coverage": cover}


def score_file(answers: list[Answer], questions: str, annotations: str, allow_partial: bool = False) -> dict:
    """Score against every question of the files; a subset run (our 5000) needs ``allow_partial``."""
    refs = {str(q.question_id): (list(q.answers), q.answer_type, q.question_type)
            for q in read_vqav2(questions, annotations)}
    return score({a.id: parse(a.text) for a in answers if a.id in refs}, refs, allow_partial)


if __name__ == "__main__":
    score_cli("vqav2", score_file)
