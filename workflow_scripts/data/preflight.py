"""Preflight: before any training job, check that every configured input exists and parses, and say what is
missing and where to get it. Cheap: the same readers the jobs use, no images decoded.

Entry: ``python -m workflow_scripts.data.preflight --config-json JSON --out results/preflight/inputs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from workflow_scripts import study
from workflow_scripts.data import readers
from workflow_scripts.io import write_json

WHERE_TO_GET = {
    "cc3m_tsv": "Conceptual Captions 'Train_GCC-training.tsv' (Google), with the header line caption<TAB>url added",
    "cc3m_subset": "chat.json of liuhaotian/LLaVA-CC3M-Pretrain-595K on the Hugging Face hub",
    "instruct_json": "llava_instruct_80k.json of liuhaotian/LLaVA-Instruct-150K on the Hugging Face hub",
    "instruct_images": "COCO train2017 images (cocodataset.org)",
    "coco_karpathy_json": "dataset_coco.json of Karpathy's splits (caption_datasets.zip)",
    "coco_images": "COCO train2014 + val2014 image folders (cocodataset.org)",
    "flickr30k_karpathy_json": "dataset_flickr30k.json of Karpathy's splits (caption_datasets.zip)",
    "flickr30k_images": "Flickr30k images (request form on the dataset's page)",
    "vqav2_questions": "v2_Questions_Val_mscoco.zip (visualqa.org)",
    "vqav2_annotations": "v2_Annotations_Val_mscoco.zip (visualqa.org)",
    "vqav2_train_questions": "v2_Questions_Train_mscoco.zip (visualqa.org)",
    "vqav2_train_annotations": "v2_Annotations_Train_mscoco.zip (visualqa.org)",
    "vqav2_images": "COCO val2014 images (cocodataset.org)",
    "mme_root": "MME_Benchmark_release_version (request from the MME authors)",
    "pope_root": "coco_pope_{random,popular,adversarial}.json of the POPE repository (output/coco)",
    "pope_images": "COCO val2014 images (cocodataset.org)",
}


def _check(key: str, path: str, config: dict):
    """Parse one input; returns a short description of what was found."""
    if key == "cc3m_tsv":
        return f"{len(readers.read_cc3m_tsv(path))} rows"
    if key in ("cc3m_subset", "instruct_json"):
        return f"{len(readers.read_llava_json(path))} records"
    if key.endswith("karpathy_json"):
        return f"{len(readers.read_karpathy(path, 'test'))} test images"
    if key == "vqav2_questions":
        return f"{len(readers.read_vqav2(path, study.data_path(config, 'vqav2_annotations')))} questions"
    if key == "vqav2_train_questions":
        return f"{len(readers.read_vqav2(path, study.data_path(config, 'vqav2_train_annotations')))} questions"
    if key == "mme_root":
        return f"{len(readers.read_mme(path))} questions"
    if key == "pope_root":
        splits = config["benchmarks"]["pope"]["splits"]
        return ", ".join(f"{s}: {len(readers.read_pope(os.path.join(path, f'coco_pope_{s}.json')))}" for s in splits)
    if not os.path.isdir(path) and not os.path.isfile(path):
        raise FileNotFoundError(path)
    return "present"


def preflight(config: dict) -> tuple[dict, list[str]]:
    """(found, problems) over every configured input."""
    found, problems = {}, []
    for key in study.DATA_KEYS:
        path = study.data_path(config, key)
        if path is None:
            continue
        if not os.path.exists(path):
            problems.append(f"missing {key}: {path}\n    get it from: {WHERE_TO_GET[key]}")
            continue
        try:
            found[key] = {"path": path, "found": _check(key, path, config)}
        except (readers.DataFormatError, FileNotFoundError) as e:
            problems.append(f"unreadable {key}: {e}")
    return found, problems


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config-json", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    found, problems = preflight(json.loads(args.config_json))
    for key, info in found.items():
        print(f"ok  {key:26s} {info['path']}  ({info['found']})")
    if problems:
        print("\nPreflight failed: fix these inputs (paths are data_root + the config's relative path):",
              file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    write_json(args.out, found)


if __name__ == "__main__":
    main()
