"""Writers for the on-disk formats of every dataset in the study, filled from toy scenes.

Each writer takes scenes and a seeded generator and writes exactly the layout the real data has, so the real
readers (``workflow_scripts.data.readers``) read both.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from workflow_scripts.toyworld import language as lang
from workflow_scripts.toyworld.scenes import CELLS, COLOURS, SHAPES, Scene, render

CAPTIONS_PER_IMAGE = 5


def save_image(scene: Scene, path: Path, image_size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    render(scene, image_size).save(path, format="JPEG", quality=95)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=None))


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_cc3m(scenes, rng, tsv: Path, web_dir: Path, url_dir: Path, subset_json: Path | None, image_size: int,
               dead_urls: int) -> dict:
    """CC3M tsv (header ``caption\\turl``, as img2dataset reads it) with ``file://`` URLs into ``web_dir``.

    Images are written to ``web_dir`` but addressed at ``url_dir``, where they will live once installed.
    Adds ``dead_urls`` rows whose file does not exist and one row whose file holds truncated JPEG bytes.
    The optional subset json lists rows by GCC id in LLaVA's ``chat.json`` pretraining format.
    """
    rows = []
    for s in scenes:
        path = web_dir / f"{s.scene_id}.jpg"
        save_image(s, path, image_size)
        rows.append((lang.cc3m_caption(s, rng), (url_dir / path.name).resolve().as_uri()))
    corrupt = web_dir / "corrupt.jpg"
    corrupt.write_bytes((web_dir / f"{scenes[0].scene_id}.jpg").read_bytes()[:120])
    rows.insert(len(rows) // 2, ("a corrupt picture of a square", (url_dir / corrupt.name).resolve().as_uri()))
    for i in range(dead_urls):
        at = int(rng.integers(len(rows)))
        rows.insert(at, (f"a shape that was deleted {i}", (url_dir / f"deleted_{i}.jpg").resolve().as_uri()))
    tsv.parent.mkdir(parents=True, exist_ok=True)
    with tsv.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(("caption", "url"))
        w.writerows(rows)
    if subset_json is not None:
        keep = [i for i in range(len(rows)) if rng.random() < 0.8]
        write_json(subset_json, [
            {"id": f"GCC_train_{i:09d}", "image": f"GCC_train_{i:09d}.jpg", "conversations": [
                {"from": "human", "value": "Give a brief description of the image.\n<image>"},
                {"from": "gpt", "value": rows[i][0]}]} for i in keep])
    return {"rows": len(rows), "dead_urls": dead_urls, "corrupt_images": 1}


SHORT_ANSWER = " Answer the question using a single word or phrase."  # LLaVA-1.5's VQA instruction
YES_NO = " Please answer yes or no."


def _conversation(scene, rng) -> list[dict]:
    """Turns of a 'conversation' record. Besides LLaVA-style long answers, some turns ask for a short answer or
    a plain yes/no, as LLaVA-1.5's data mix does, so the benchmarks' answer formats are not foreign."""
    pool = lang.qa_pool(scene, rng)
    picked = [pool[i] for i in rng.permutation(len(pool))[: int(rng.integers(2, 5))]]
    # Yes/no questions balanced per image are what MME and POPE ask: give them an extra share.
    picked.append(lang.exists_qa(scene, rng, answer_yes=rng.random() < 0.5))
    turns = []
    for qa in picked:
        u = rng.random()
        if u < 0.25:
            q, a = qa.question + SHORT_ANSWER, qa.short
        elif u < 0.4 and qa.short in ("yes", "no"):
            q, a = qa.question + YES_NO, qa.short.capitalize()
        else:
            q, a = qa.question, qa.long
        turns += [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
    if rng.random() < 0.2:
        turns += [{"from": "human", "value": "Please provide a description of the picture."},
                  {"from": "gpt", "value": lang.coco_caption(scene, rng)}]
    return turns


def instruct_record(scene: Scene, rng, kind: str) -> dict:
    """One LLaVA instruct record of the given type; ``<image>`` sits before or after the first question."""
    if kind == "conversation":
        turns = _conversation(scene, rng)
    elif kind == "detail":
        q = lang._choice(rng, ("Describe the image in detail.", "What do you see in this picture? Be thorough.",
                               "Give a detailed description of the image."))
        turns = [{"from": "human", "value": q}, {"from": "gpt", "value": lang.detail_description(scene)}]
    else:
        qa = lang.reasoning_qa(scene, rng)
        turns = [{"from": "human", "value": qa.question}, {"from": "gpt", "value": qa.long}]
    first = turns[0]["value"]
    turns[0]["value"] = f"<image>\n{first}" if rng.random() < 0.5 else f"{first}\n<image>"
    return {"id": f"{scene.scene_id:012d}", "image": f"{scene.scene_id:012d}.jpg", "type": kind,
            "conversations": turns}


def short_answer_record(scene: Scene, rng, existence: int = 4, checks: int = 2, other: int = 1) -> dict:
    """A record as LLaVA-1.5's mix adds them from VQA datasets: several questions about one image, each answered
    in a word. ``existence`` existence questions and ``other`` short questions (colour, count, position, size)
    carry LLaVA-1.5's short-answer instruction; ``checks`` colour/count/position checks ask for yes or no."""
    asked = [(qa.question + SHORT_ANSWER, qa.short) for qa in lang.existence_checks(scene, rng, existence)]
    asked += [(qa.question + YES_NO, qa.short.capitalize())
              for qa in (lang.check_qa(scene, rng, answer_yes=rng.random() < 0.5) for _ in range(checks))]
    pool = [qa for qa in lang.qa_pool(scene, rng) if qa.kind != "exists"]
    asked += [(pool[i].question + SHORT_ANSWER, pool[i].short) for i in rng.permutation(len(pool))[:other]]
    turns = []
    for i in rng.permutation(len(asked)):
        turns += [{"from": "human", "value": asked[i][0]}, {"from": "gpt", "value": asked[i][1]}]
    turns[0]["value"] = f"<image>\n{turns[0]['value']}"
    return {"id": f"{scene.scene_id:012d}", "image": f"{scene.scene_id:012d}.jpg", "type": "short_answers",
            "conversations": turns}


INSTRUCT_TYPES = ("conversation", "complex_reasoning", "detail")
INSTRUCT_TYPE_RATES = (0.45, 0.35, 0.20)


def write_instruct(scenes, rng, json_path: Path, image_dir: Path, image_size: int,
                   short_answers: dict | None = None, short_rng=None) -> dict:
    """LLaVA instruct json (80K/150K format, plus a ``type`` tag) with COCO train2017-style image names.

    ``short_answers`` (``{share, existence, checks, other}``) replaces that share of the records by LLaVA-1.5-style
    short-answer records (``short_answer_record``), drawn from ``short_rng``. Every record is first drawn from
    ``rng`` as without them, so ``rng`` ends where it would have: the rest of the world stays the same.
    """
    spec = dict(short_answers or {})
    share = spec.pop("share", 0.0)
    if share and short_rng is None:
        raise ValueError("short-answer records need their own generator (short_rng)")
    records = []
    for s in scenes:
        save_image(s, image_dir / f"{s.scene_id:012d}.jpg", image_size)
        kind = str(rng.choice(INSTRUCT_TYPES, p=INSTRUCT_TYPE_RATES))
        record = instruct_record(s, rng, kind)
        if share and short_rng.random() < share:
            record = short_answer_record(s, short_rng, **spec)
        records.append(record)
    write_json(json_path, records)
    types = INSTRUCT_TYPES + (("short_answers",) if share else ())
    return {t: sum(r["type"] == t for r in records) for t in types}


def coco_image_name(scene: Scene, subset: str) -> str:
    return f"COCO_{subset}_{scene.scene_id:012d}.jpg"


def write_karpathy(splits: dict[str, list[Scene]], rng, json_path: Path, image_root: Path, dataset: str,
                   image_size: int) -> dict:
    """Karpathy split json (``dataset_coco.json`` / ``dataset_flickr30k.json``), 5 captions per image."""
    caption = lang.coco_caption if dataset == "coco" else lang.flickr_caption
    images, sentid = [], 0
    for split, scenes in splits.items():
        for s in scenes:
            entry = {"split": split, "imgid": len(images)}
            if dataset == "coco":
                subset = "train2014" if split == "train" else "val2014"
                entry.update(filepath=subset, filename=coco_image_name(s, subset), cocoid=s.scene_id)
                save_image(s, image_root / subset / entry["filename"], image_size)
            else:
                entry.update(filename=f"{s.scene_id}.jpg")
                save_image(s, image_root / entry["filename"], image_size)
            sentences = []
            for _ in range(CAPTIONS_PER_IMAGE):
                raw = caption(s, rng)
                tokens = raw.lower().replace(".", " ").replace(",", " ").split()
                sentences.append({"tokens": tokens, "raw": raw, "imgid": entry["imgid"], "sentid": sentid})
                sentid += 1
            entry.update(sentids=[x["sentid"] for x in sentences], sentences=sentences)
            images.append(entry)
    write_json(json_path, {"images": images, "dataset": dataset})
    return {split: len(scenes) for split, scenes in splits.items()}


def human_answers(qa: lang.QA, rng) -> list[str]:
    """Ten VQAv2 annotators: most agree, some write the same answer differently, a few get it wrong."""
    def variant(ans: str) -> str:
        if ans.isdigit() and rng.random() < 0.5:
            return lang.NUMBER_WORDS[int(ans)]
        return lang._choice(rng, (ans.capitalize(), ans + ".", "the " + ans if not ans.isdigit() else ans))

    def wrong(ans: str) -> str:
        if ans in ("yes", "no"):
            return "no" if ans == "yes" else "yes"
        if ans.isdigit():
            return str(max(0, int(ans) + lang._choice(rng, (-1, 1))))
        for vocab in (tuple(COLOURS), CELLS, ("large", "small"), SHAPES):
            if ans in vocab:
                return lang._choice(rng, [v for v in vocab if v != ans])
        return "nothing"

    p_wrong = rng.uniform(0.0, 0.25)
    out = []
    for _ in range(10):
        u = rng.random()
        out.append(wrong(qa.short) if u < p_wrong else variant(qa.short) if u < p_wrong + 0.15 else qa.short)
    return out


def majority_answer(answers: list[str]) -> str:
    """The most common answer, ties to the one given first. (``max(set(...))`` would break ties by string hash
    order, which Python salts per process: two generations of the same world would differ.)"""
    return Counter(answers).most_common(1)[0][0]


VQA_TYPES = {"exists": ("is there a", "yes/no"), "count": ("how many", "number"),
             "colour": ("what color is the", "other"), "position": ("where is the", "other"),
             "size": ("is the", "other")}


def write_vqav2(scenes, rng, questions_json: Path, annotations_json: Path, image_dir: Path, subset: str,
                image_size: int, per_image: int = 3) -> dict:
    """VQAv2 question and annotation json (``v2_OpenEnded_mscoco_*``), 10 human answers per question."""
    questions, annotations = [], []
    for s in scenes:
        save_image(s, image_dir / coco_image_name(s, subset), image_size)
        pool = lang.qa_pool(s, rng)
        for k, j in enumerate(rng.permutation(len(pool))[:per_image]):
            qa = pool[int(j)]
            qid = s.scene_id * 10 + k
            questions.append({"image_id": s.scene_id, "question": qa.question, "question_id": qid})
            answers = human_answers(qa, rng)
            majority = majority_answer(answers)
            qtype, atype = VQA_TYPES[qa.kind]
            annotations.append({"question_id": qid, "image_id": s.scene_id, "question_type": qtype,
                                "answer_type": atype, "multiple_choice_answer": majority,
                                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                                            for i, a in enumerate(answers)]})
    info = {"description": "toy world VQAv2-format data", "version": "2.0"}
    write_json(questions_json, {"info": info, "task_type": "Open-Ended", "data_type": "mscoco",
                                "data_subtype": subset, "license": {}, "questions": questions})
    write_json(annotations_json, {"info": info, "data_type": "mscoco", "data_subtype": subset, "license": {},
                                  "annotations": annotations})
    return {"questions": len(questions)}
