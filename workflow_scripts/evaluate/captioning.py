"""COCO and Flickr30k captioning on the Karpathy test split: 3 text-only demonstrations (the question and a
training caption), then the question about the image. Scored with pycocoevalcap after its PTBTokenizer
(Java): CIDEr(-D) as reported in the paper, plus BLEU-4, METEOR and ROUGE-L; all ×100. SPICE needs a model
download and is not computed.
"""

from __future__ import annotations

import os
import random

from workflow_scripts.data.labels import IMAGE_PLACEHOLDER
from workflow_scripts.data.readers import read_karpathy
from workflow_scripts.evaluate.common import Prompt

QUESTION = "Please provide a description of the picture."


def demonstrations(karpathy_json: str, shots: int, seed: int) -> list[tuple[str, str]]:
    if shots == 0:
        return []
    train = read_karpathy(karpathy_json, "train") or read_karpathy(karpathy_json, "restval")
    picks = random.Random(seed).sample(train, shots)
    return [(QUESTION, im.captions[0]) for im in picks]


def build_prompts(cfg: dict, paths: dict, seed: int) -> tuple[list[Prompt], dict]:
    """``paths``: karpathy_json, images. One prompt per test image; references: id -> its captions."""
    demos = demonstrations(paths["karpathy_json"], cfg["shots"], seed)
    prompts, refs = [], {}
    for im in read_karpathy(paths["karpathy_json"], "test"):
        qid = str(im.image_id)
        prompts.append(Prompt(qid, f"{IMAGE_PLACEHOLDER}\n{QUESTION}", os.path.join(paths["images"], im.path),
                              list(demos)))
        refs[qid] = list(im.captions)
    return prompts, refs


def parse(text: str) -> str:
    """The caption: the first non-empty line of the answer."""
    lines = [line.strip() for line in text.strip().split("\n") if line.strip()]
    return lines[0] if lines else ""


EXTRA_METRICS = ("BLEU-4", "METEOR", "ROUGE-L")


def score(parsed: dict[str, str], refs: dict[str, list[str]], extras=EXTRA_METRICS) -> dict:
    """Pure (given pycocoevalcap): CIDEr and the ``extras`` (BLEU-4, METEOR, ROUGE-L) ×100 over the referenced
    images; a missing prediction is scored as an empty caption. METEOR starts a Java process (~6 s)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tokenizer.tokenize({k: [{"caption": parsed.get(k, "")}] for k in refs})
    out = {"CIDEr": 100 * float(Cider().compute_score(gts, res)[0]), "images": len(refs)}
    if "BLEU-4" in extras:
        out["BLEU-4"] = 100 * float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    if "METEOR" in extras:
        out["METEOR"] = 100 * float(Meteor().compute_score(gts, res)[0])
    if "ROUGE-L" in extras:
        out["ROUGE-L"] = 100 * float(Rouge().compute_score(gts, res)[0])
    return out


def score_file(predictions: dict[str, str], karpathy_json: str) -> dict:
    refs = {str(im.image_id): list(im.captions) for im in read_karpathy(karpathy_json, "test")}
    return score({k: parse(v) for k, v in predictions.items()}, refs)
