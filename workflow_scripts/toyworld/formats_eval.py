"""Writers for the yes/no benchmarks: MME's folder tree and POPE's three negative-sampling splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from workflow_scripts.toyworld import language as lang
from workflow_scripts.toyworld.formats import coco_image_name, save_image, write_jsonl
from workflow_scripts.toyworld.scenes import CELLS, COLOURS, SHAPES, Scene

MME_SUFFIX = " Please answer yes or no."
MME_SUBTASKS = {"existence": "perception", "count": "perception", "position": "perception", "color": "perception",
                "numerical_calculation": "cognition"}


def mme_pair(subtask: str, scene: Scene, rng) -> tuple[str, str]:
    """The (yes-question, no-question) pair MME asks about one image for ``subtask``."""
    s = lang._choice(rng, list(scene.shapes))
    if subtask == "existence":
        absent = [k for k in SHAPES if k not in scene.kinds()]
        return f"Is there {lang.article(s.kind)} in this image?", f"Is there {lang.article(absent[0])} in this image?"
    if subtask == "count":
        n = scene.count(s.kind)
        wrong = lang.wrong_count(n, rng)
        return lang.count_question(s.kind, n, "this image"), lang.count_question(s.kind, wrong, "this image")
    if subtask == "position":
        other = lang._choice(rng, [c for i, c in enumerate(CELLS) if i != s.cell])
        name = s.phrase(with_size=False)
        return f"Is the {name} in the {s.position}?", f"Is the {name} in the {other}?"
    if subtask == "color":
        other = lang._choice(rng, [c for c in COLOURS if c != s.colour])
        return f"Is there a {s.colour} {s.kind} in this image?", f"Is there a {other} {s.kind} in this image?"
    if subtask == "numerical_calculation":
        n, k = len(scene.shapes), int(rng.integers(1, 4))
        return (f"Is the number of shapes in the image plus {k} equal to {n + k}?",
                f"Is the number of shapes in the image plus {k} equal to {n + k + 1}?")
    raise ValueError(f"unknown MME subtask {subtask!r}")


def write_mme(scenes_by_subtask: dict[str, list[Scene]], rng, root: Path, image_size: int) -> dict:
    """MME layout: ``<subtask>/images/<id>.jpg`` and ``<subtask>/questions_answers_YN/<id>.txt``
    holding two lines ``question<TAB>Yes`` and ``question<TAB>No``."""
    counts = {}
    for subtask, scenes in scenes_by_subtask.items():
        for s in scenes:
            save_image(s, root / subtask / "images" / f"{s.scene_id}.jpg", image_size)
            yes_q, no_q = mme_pair(subtask, s, rng)
            lines = [f"{yes_q}{MME_SUFFIX}\tYes", f"{no_q}{MME_SUFFIX}\tNo"]
            if rng.random() < 0.5:
                lines.reverse()
            qa = root / subtask / "questions_answers_YN" / f"{s.scene_id}.txt"
            qa.parent.mkdir(parents=True, exist_ok=True)
            qa.write_text("\n".join(lines) + "\n")
        counts[subtask] = len(scenes)
    return counts


def pope_negatives(scene: Scene, k: int, split: str, rng, frequency: Counter, cooccur: dict) -> list[str]:
    """POPE's negative objects: ``random`` uniform over absent objects, ``popular`` the most frequent absent
    ones, ``adversarial`` those that co-occur most with the objects present."""
    absent = [o for o in SHAPES if o not in scene.kinds()]
    if split == "random":
        return [str(o) for o in rng.permutation(absent)[:k]]
    if split == "popular":
        return sorted(absent, key=lambda o: (-frequency[o], o))[:k]
    if split == "adversarial":
        score = {o: sum(cooccur[p][o] for p in scene.kinds()) for o in absent}
        return sorted(absent, key=lambda o: (-score[o], o))[:k]
    raise ValueError(f"unknown POPE split {split!r}")


def write_pope(scenes, rng, root: Path, image_dir: Path, image_size: int, splits=("random", "popular", "adversarial"),
               per_image: int = 2) -> dict:
    """``coco_pope_<split>.json`` JSON lines (question_id, image, text, label), balanced yes/no per image."""
    frequency = Counter(k for s in scenes for k in s.kinds())
    cooccur = {a: Counter() for a in SHAPES}
    for s in scenes:
        for a in s.kinds():
            cooccur[a].update(b for b in s.kinds() if b != a)
    for s in scenes:
        save_image(s, image_dir / coco_image_name(s, "val2014"), image_size)
    counts = {}
    for split in splits:
        split_rng = np.random.default_rng([int(rng.integers(2**31)), len(split)])
        rows = []
        for s in scenes:
            present = [str(o) for o in split_rng.permutation(sorted(s.kinds()))]
            k = min(per_image, len(present), len(SHAPES) - len(present))
            objects = [(o, "yes") for o in present[:k]]
            objects += [(o, "no") for o in pope_negatives(s, k, split, split_rng, frequency, cooccur)]
            for obj, label in objects:
                rows.append({"question_id": len(rows) + 1, "image": coco_image_name(s, "val2014"),
                             "text": f"Is there {lang.article(obj)} in the image?", "label": label})
        write_jsonl(root / f"coco_pope_{split}.json", rows)
        counts[split] = len(rows)
    return counts
