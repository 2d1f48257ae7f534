"""Generate the whole toy world: every dataset of the study in its real format, plus the pretraining corpora
of the toy base models. Deterministic from the seed; each pool of scenes has its own ids, so no image is in
two splits.

Entry: ``python -m workflow_scripts.toyworld.world --spec JSON`` (the rule builds the JSON from the config).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from workflow_scripts.data.conversation import render_text
from workflow_scripts.toyworld import formats, formats_eval
from workflow_scripts.toyworld import language as lang
from workflow_scripts.toyworld.scenes import pool_rng, sample_scenes

# Pool order fixes the id ranges: changing one count shifts later ids but never makes two pools share one.
POOLS = ("cc3m", "instruct", "coco_train", "coco_val", "coco_test", "flickr30k_train", "flickr30k_val",
         "flickr30k_test", "vqav2_train", "vqav2_val", "mme", "pope", "text_train", "text_val", "clip_train",
         "clip_test")
DRAWN_TO_FIT = ("mme",)
SHORT_STREAM = 1  # keys the short-answer records' own random stream (toy_world.short_answers)


def pool_sizes(counts: dict, n_mme_subtasks: int) -> dict[str, int]:
    """Number of scenes per pool from the config's ``toy_world.counts``."""
    sizes = {"cc3m": counts["cc3m"], "instruct": counts["instruct"], "mme": counts["mme_per_subtask"] * n_mme_subtasks,
             "pope": counts["pope"]}
    for name in ("coco", "flickr30k", "vqav2", "text", "clip"):
        for split, n in counts[name].items():
            sizes[f"{name}_{split}"] = n
    return sizes


def make_pools(seed: int, sizes: dict[str, int]) -> tuple[dict, dict]:
    """Each pool's scenes and its first scene id. MME's pool only reserves its ids: its scenes are drawn to fit
    its questions (``formats_eval.mme_items``)."""
    pools, first_ids, next_id = {}, {}, 100_000
    for name in POOLS:
        first_ids[name] = next_id
        pools[name] = [] if name in DRAWN_TO_FIT else sample_scenes(seed, name, sizes[name], next_id)
        next_id += sizes[name] + 1000
    return pools, first_ids


def text_document(scene, rng) -> str:
    """Text the toy LLM pretrains on: captions and chats about a scene it never sees."""
    captions = [lang.cc3m_caption(scene, rng), lang.coco_caption(scene, rng), lang.flickr_caption(scene, rng)]
    qas = lang.qa_pool(scene, rng) + [lang.reasoning_qa(scene, rng)]
    picked = [qas[int(i)] for i in rng.permutation(len(qas))[:3]]
    turns = [(qa.question, qa.long) for qa in picked]
    if rng.random() < 0.3:
        turns.append(("Describe the image in detail.", lang.detail_description(scene)))
    return " ".join(captions[: int(rng.integers(1, 4))]) + "\n" + render_text("vicuna_v1", turns)


def scene_document(scene, rng, extra_exists: int = 0, yes_no_share: float = 0.0) -> str:
    """Text in which the scene is *shown* in words where an image would be, then captioned (stage 1's ``plain``
    layout) or asked about in a chat (the instruct layout, short-answer forms included). An LLM that learned to
    read a scene here only needs a connector that tells it the picture in the same terms: the paper's view of
    LLM -> MLLM as domain adaptation, in miniature.

    ``extra_exists`` existence questions (yes or no at even odds) join each chat, shuffled in; ``yes_no_share``
    of the yes/no questions ask "Please answer yes or no." as MME does. An existence check is the skill a tiny LLM
    learns last (``benchmarks/text_skills.py``). The defaults write the demo's corpus unchanged."""
    shown = lang.scene_in_words(scene)
    if rng.random() < 0.4:
        return f"{shown} {lang.cc3m_caption(scene, rng)}\n"
    pool = lang.qa_pool(scene, rng) + [lang.exists_qa(scene, rng, answer_yes=rng.random() < 0.5)]
    picked = [pool[int(i)] for i in rng.permutation(len(pool))[: int(rng.integers(1, 4))]]
    if extra_exists:
        picked += [lang.exists_qa(scene, rng, answer_yes=rng.random() < 0.5) for _ in range(extra_exists)]
        picked = [picked[int(i)] for i in rng.permutation(len(picked))]
    turns = []
    for qa in picked:
        u = rng.random()
        if u < yes_no_share and qa.short in ("yes", "no"):
            turns.append((qa.question + formats.YES_NO, qa.short.capitalize()))
        elif u < yes_no_share + (1 - yes_no_share) / 2:
            turns.append((qa.question + formats.SHORT_ANSWER, qa.short))
        else:
            turns.append((qa.question, qa.long))
    turns[0] = (f"{shown}\n{turns[0][0]}", turns[0][1])
    return render_text("vicuna_v1", turns)


def write_pretraining(pools, rng, root: Path, image_size: int, scene_share: float, scene_questions: dict) -> dict:
    for split in ("train", "val"):
        formats.write_jsonl(root / f"text_{split}.jsonl", [
            {"text": scene_document(s, rng, **scene_questions) if rng.random() < scene_share
             else text_document(s, rng)}
            for s in pools[f"text_{split}"]])
    for split in ("train", "test"):
        rows = []
        for s in pools[f"clip_{split}"]:
            name = f"clip_images/{s.scene_id}.jpg"
            formats.save_image(s, root / name, image_size)
            rows.append({"image": name, "captions": [lang.coco_caption(s, rng) for _ in range(3)]})
        formats.write_jsonl(root / f"clip_{split}.jsonl", rows)
    return {k: len(pools[k]) for k in ("text_train", "text_val", "clip_train", "clip_test")}


def generate(spec: dict, staging: Path) -> dict:
    """Write the world under ``staging`` (paths in ``spec['paths']`` are relative to the data root, which
    ``staging/data`` stands for) and return the summary that goes into ``world.json``."""
    toy, paths = spec["toy"], spec["paths"]
    size, seed = toy["image_size"], toy["seed"]
    data = staging / "data"
    p = {k: data / v for k, v in paths.items() if v is not None}
    pools, first_ids = make_pools(seed, pool_sizes(toy["counts"], len(formats_eval.MME_SUBTASKS)))
    rng = np.random.default_rng(seed)
    web = Path(toy["root"]) / "web" / "cc3m"  # where the "internet" lives once installed
    summary = {"cc3m": formats.write_cc3m(pools["cc3m"], rng, p["cc3m_tsv"], staging / "web" / "cc3m", web,
                                          p.get("cc3m_subset"), size, toy["counts"]["cc3m_dead_urls"])}
    summary["instruct"] = formats.write_instruct(pools["instruct"], rng, p["instruct_json"], p["instruct_images"], size,
                                                 toy.get("short_answers"), np.random.default_rng([seed, SHORT_STREAM]))
    for name in ("coco", "flickr30k"):
        splits = {s: pools[f"{name}_{s}"] for s in ("train", "val", "test")}
        summary[name] = formats.write_karpathy(splits, rng, p[f"{name}_karpathy_json"], p[f"{name}_images"], name, size)
    summary["vqav2"] = {
        "train": formats.write_vqav2(pools["vqav2_train"], rng, p["vqav2_train_questions"],
                                     p["vqav2_train_annotations"], staging / "unused", "train2014", size),
        "val": formats.write_vqav2(pools["vqav2_val"], rng, p["vqav2_questions"], p["vqav2_annotations"],
                                   p["vqav2_images"], "val2014", size)}
    shutil.rmtree(staging / "unused", ignore_errors=True)  # demonstrations are text-only: no train images needed
    summary["mme"] = formats_eval.write_mme(toy["counts"]["mme_per_subtask"], pool_rng(seed, "mme"), p["mme_root"],
                                            size, first_ids["mme"])
    summary["pope"] = formats_eval.write_pope(pools["pope"], rng, p["pope_root"], p["pope_images"], size)
    # The base models' corpora have their own stream: the shipped base models (toy_models/) stay what this code
    # writes however the benchmarks' writers change.
    summary["pretraining"] = write_pretraining(pools, pool_rng(seed, "pretraining"), staging / "pretrain", size,
                                               toy.get("scene_text_share", 0.5), toy.get("scene_questions", {}))
    return summary


MARKER = ".written_by_toy_world"  # in a data root this generator created; nothing else is ever written over


class ForeignDataError(RuntimeError):
    """The data root holds files the toy world did not write (real data, or another tool's)."""


def _first_file(root: Path) -> Path | None:
    """Some file under ``root`` (stops at the first: a real data root can hold millions). Empty folders do not
    count: Snakemake creates the output folders before the job starts."""
    for folder, _, files in os.walk(root):
        if files:
            return Path(folder) / files[0]
    return None


def claim_data_root(data_root: Path) -> None:
    """Refuse a data root that holds files but not our marker; else mark it ours."""
    if not (data_root / MARKER).exists() and (found := _first_file(data_root)) is not None:
        raise ForeignDataError(
            f"{data_root}: holds files the toy world did not write (e.g. {found}). Refusing to write generated "
            "data over them: point data_root at an empty folder under toy_world.root, or drop the toy_world "
            "section to run on these files")
    data_root.mkdir(parents=True, exist_ok=True)
    (data_root / MARKER).write_text("generated by workflow_scripts.toyworld.world; safe to delete with the folder\n")


def install(staging: Path, data_root: Path, toy_root: Path) -> None:
    """Move the finished world into place: data under the data root, the rest under the toy root."""
    for src, dst in [(staging / "data", data_root), (staging / "web", toy_root / "web"),
                     (staging / "pretrain", toy_root / "pretrain")]:
        dst.mkdir(parents=True, exist_ok=True)
        for child in src.iterdir():
            target = dst / child.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            child.replace(target)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", required=True, help="JSON: {toy: config.toy_world, paths: {...}, data_root: ...}")
    ap.add_argument("--manifest", required=True, help="world.json, written last (marks the world complete)")
    args = ap.parse_args(argv)
    spec = json.loads(args.spec)
    toy_root, data_root = Path(spec["toy"]["root"]), Path(spec["data_root"])
    start = time.time()
    claim_data_root(data_root)
    staging = toy_root / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    summary = generate(spec, staging)
    install(staging, data_root, toy_root)
    shutil.rmtree(staging, ignore_errors=True)
    manifest = {"spec_sha256": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest(),
                "seed": spec["toy"]["seed"], "counts": summary, "seconds": round(time.time() - start, 1)}
    out = Path(args.manifest)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(out)
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
