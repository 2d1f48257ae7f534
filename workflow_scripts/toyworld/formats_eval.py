"""Writers for the yes/no benchmarks: MME's folder tree and POPE's three negative-sampling splits.

Neither may be answerable from the question alone: a model that never looks at the picture should score what the
constant answer scores. MME asks two questions per picture that differ in one slot (the kind, number, cell, colour
or total asked), so each pair's (yes value, no value) is drawn first from balanced blocks, in which every value is
asked as often with yes as with no, and then a picture that fits the pair. POPE's negatives follow its three
sampling rules; the present objects it asks about are chosen so that each object is, where the picture allows,
asked as often with yes as with no.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from workflow_scripts.toyworld import language as lang
from workflow_scripts.toyworld.formats import coco_image_name, save_image, write_jsonl
from workflow_scripts.toyworld.scenes import CELLS, COLOURS, SHAPES, Scene, sample_scene

MME_SUFFIX = " Please answer yes or no."
MME_SUBTASKS = {"existence": "perception", "count": "perception", "position": "perception", "color": "perception",
                "numerical_calculation": "cognition"}
# The slot each subtask's two questions differ in, and the values it takes.
MME_SLOTS = {"existence": SHAPES, "count": (1, 2, 3), "position": tuple(range(len(CELLS))),
             "color": tuple(COLOURS), "numerical_calculation": (1, 2, 3, 4)}
MAX_DRAWS = 100_000  # scenes tried for one pair before giving up (the rarest pair, three of a kind, fits ~1 in 100)


def balanced_pairs(values, n: int, rng) -> list[tuple]:
    """``n`` ordered (yes value, no value) pairs of distinct values in which every value is, as far as ``n``
    allows, the yes value as often as the no value: blocks {(v_i, v_(i+s) mod m)} for shifts s = 1..m-1, each
    block balanced on its own, cycled in a random order."""
    m = len(values)
    pairs = []
    while len(pairs) < n:
        for s in rng.permutation(range(1, m)):
            block = [(values[i], values[(i + int(s)) % m]) for i in rng.permutation(m)]
            pairs.extend(block)
    return pairs[:n]


def mme_fit(subtask: str, scene: Scene, yes, no, rng) -> tuple[str, str] | None:
    """The (yes-question, no-question) pair about ``scene`` asking ``yes`` and ``no`` in ``subtask``'s slot, or
    None where the scene does not fit (the no-question must be false of it)."""
    if subtask == "existence":
        if yes in scene.kinds() and no not in scene.kinds():
            return f"Is there {lang.article(yes)} in this image?", f"Is there {lang.article(no)} in this image?"
        return None
    if subtask == "count":
        kinds = sorted(k for k in scene.kinds() if scene.count(k) == yes)
        if not kinds:
            return None
        kind = lang._choice(rng, kinds)
        return lang.count_question(kind, yes, "this image"), lang.count_question(kind, no, "this image")
    if subtask == "position":
        named = [s for s in scene.shapes if s.cell == yes]
        if not named:
            return None
        name = named[0].phrase(with_size=False)
        if any(s.phrase(with_size=False) == name and s.cell == no for s in scene.shapes):
            return None
        return f"Is the {name} in the {CELLS[yes]}?", f"Is the {name} in the {CELLS[no]}?"
    if subtask == "color":
        kinds = sorted({s.kind for s in scene.shapes if s.colour == yes}
                       - {s.kind for s in scene.shapes if s.colour == no})
        if not kinds:
            return None
        kind = lang._choice(rng, kinds)
        return f"Is there a {yes} {kind} in this image?", f"Is there a {no} {kind} in this image?"
    if subtask == "numerical_calculation":
        if len(scene.shapes) != yes:
            return None
        k = int(rng.integers(1, 4))
        return (f"Is the number of shapes in the image plus {k} equal to {yes + k}?",
                f"Is the number of shapes in the image plus {k} equal to {no + k}?")
    raise ValueError(f"unknown MME subtask {subtask!r}")


def mme_items(subtask: str, n: int, rng, first_id: int) -> list[tuple[Scene, str, str]]:
    """``n`` (scene, yes-question, no-question) items of ``subtask``: balanced pairs first, then for each the
    next drawn scene that fits it (scene ids ``first_id``, ``first_id + 1``, ...)."""
    items = []
    for yes, no in balanced_pairs(MME_SLOTS[subtask], n, rng):
        for _ in range(MAX_DRAWS):
            scene = sample_scene(rng, first_id + len(items))
            if (pair := mme_fit(subtask, scene, yes, no, rng)) is not None:
                items.append((scene, *pair))
                break
        else:
            raise RuntimeError(f"MME {subtask}: no scene fits ({yes!r}, {no!r}) in {MAX_DRAWS} draws")
    return items


def write_mme(per_subtask: int, rng, root: Path, image_size: int, first_id: int) -> dict:
    """MME as its release lays out these subtasks: ``<subtask>/<id>.jpg`` beside ``<subtask>/<id>.txt`` holding
    two lines ``question<TAB>Yes`` and ``question<TAB>No`` (in random order). (The release's artwork, celebrity,
    landmark, posters and scene use ``images/`` + ``questions_answers_YN/``: the toy world has none of them.)"""
    counts = {}
    for i, subtask in enumerate(MME_SUBTASKS):
        for scene, yes_q, no_q in mme_items(subtask, per_subtask, rng, first_id + i * per_subtask):
            save_image(scene, root / subtask / f"{scene.scene_id}.jpg", image_size)
            lines = [f"{yes_q}{MME_SUFFIX}\tYes", f"{no_q}{MME_SUFFIX}\tNo"]
            if rng.random() < 0.5:
                lines.reverse()
            (root / subtask / f"{scene.scene_id}.txt").write_text("\n".join(lines) + "\n")
        counts[subtask] = per_subtask
    return counts


def pope_negatives(scene: Scene, k: int, split: str, rng, frequency: Counter, cooccur: dict,
                   owed: Counter | None = None) -> list[str]:
    """POPE's negative objects: ``random`` over the absent objects (those asked more often with yes than with no
    so far first, ``owed``; ties at random), ``popular`` the most frequent absent ones, ``adversarial`` those that
    co-occur most with the objects present."""
    absent = [o for o in SHAPES if o not in scene.kinds()]
    if split == "random":
        owed = owed or Counter()
        return sorted((str(o) for o in rng.permutation(absent)), key=lambda o: -owed[o])[:k]
    if split == "popular":
        return sorted(absent, key=lambda o: (-frequency[o], o))[:k]
    if split == "adversarial":
        score = {o: sum(cooccur[p][o] for p in scene.kinds()) for o in absent}
        return sorted(absent, key=lambda o: (-score[o], o))[:k]
    raise ValueError(f"unknown POPE split {split!r}")


def write_pope(scenes, rng, root: Path, image_dir: Path, image_size: int, splits=("random", "popular", "adversarial"),
               per_image: int = 2) -> dict:
    """``coco_pope_<split>.json`` JSON lines (question_id, image, text, label), balanced yes/no per image. Of the
    present objects, those asked more often with no than with yes so far are asked first (ties at random), so
    that no object's answer can be guessed from how often it is absent."""
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
        owed = Counter()  # yes minus no so far, per object
        rows = []
        for s in scenes:
            k = min(per_image, len(s.kinds()), len(SHAPES) - len(s.kinds()))
            negatives = pope_negatives(s, k, split, split_rng, frequency, cooccur, owed)
            present = sorted((str(o) for o in split_rng.permutation(sorted(s.kinds()))), key=lambda o: owed[o])
            objects = [(o, "yes") for o in present[:k]] + [(o, "no") for o in negatives]
            for obj, label in objects:
                owed[obj] += 1 if label == "yes" else -1
                rows.append({"question_id": len(rows) + 1, "image": coco_image_name(s, "val2014"),
                             "text": f"Is there {lang.article(obj)} in the image?", "label": label})
        write_jsonl(root / f"coco_pope_{split}.json", rows)
        counts[split] = len(rows)
    return counts
