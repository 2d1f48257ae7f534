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
from workflow_scripts.evaluate.common import Answer, Prompt, coverage

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


def score(parsed: dict[str, str], refs: dict[str, list[str]], extras=EXTRA_METRICS,
          allow_partial: bool = False) -> dict:
    """Pure (given pycocoevalcap): CIDEr and the ``extras`` (BLEU-4, METEOR, ROUGE-L) ×100 over the referenced
    images, which the answers must cover (``coverage``; a partial score covers the answered images, and CIDEr's
    document frequencies come from them). METEOR starts a Java process (~6 s)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    cover = coverage(parsed, refs, "captioning", allow_partial,
                     hint="; captions are keyed by COCO id / Karpathy imgid or by the image file's stem")
    refs = {k: v for k, v in refs.items() if k in parsed}
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tokenizer.tokenize({k: [{"caption": parsed.get(k, "")}] for k in refs})
    out = {"CIDEr": 100 * float(Cider().compute_score(gts, res)[0]), "images": len(refs), "coverage": cover}
    if "BLEU-4" in extras:
        out["BLEU-4"] = 100 * float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    if "METEOR" in extras:
        out["METEOR"] = 100 * float(Meteor().compute_score(gts, res)[0])
    if "ROUGE-L" in extras:
        out["ROUGE-L"] = 100 * float(Rouge().compute_score(gts, res)[0])
    return out


def match_answers(answers: list[Answer], images) -> dict[str, str]:
    """Image id -> answer text, for answers keyed by our id (COCO id / Karpathy imgid) or by the image file's
    stem (a Flickr photo id such as 1007129816, or COCO_val2014_000000391895)."""
    by_stem = {os.path.splitext(os.path.basename(im.path))[0]: str(im.image_id) for im in images}
    ids = {str(im.image_id) for im in images}
    out = {}
    for a in answers:
        key = a.id if a.id in ids else by_stem.get(os.path.splitext(os.path.basename(a.id))[0])
        if key is not None:
            out[key] = a.text
    return out


def score_file(answers: list[Answer], karpathy_json: str, allow_partial: bool = False) -> dict:
    images = read_karpathy(karpathy_json, "test")
    refs = {str(im.image_id): list(im.captions) for im in images}
    return score({k: parse(v) for k, v in match_answers(answers, images).items()}, refs, allow_partial=allow_partial)
