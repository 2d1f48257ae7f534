"""The demo's benchmarks cannot be answered from the question alone: a model that never looks at the picture scores
what the constant answer scores. Checked on the world `make demo` generates (config/demo.yaml), through the
project's own readers and scorers; the no-image baselines each benchmark reports are recorded here."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest
from conftest import load_config

from workflow_scripts import study
from workflow_scripts.evaluate import mme, pope, vqav2
from workflow_scripts.toyworld import world

# The slot the two MME questions about one picture differ in (the kind, number, cell, colour or total asked).
MME_SLOT = {"existence": r"Is there an? (\w+) in this image", "count": r"there (\w+) \w+ in this image",
            "position": r"in the (\w+ \w+)\?", "color": r"Is there a (\w+) \w+ in this image",
            "numerical_calculation": r"plus (\d) equal to (\d+)"}


@pytest.fixture(scope="module")
def demo_world(tmp_path_factory):
    config = load_config("config/demo.yaml")
    base = tmp_path_factory.mktemp("demo_world")
    config["data_root"], config["toy_world"]["root"] = str(base / "data"), str(base)
    spec = {"toy": config["toy_world"], "paths": study.relative_data_paths(config), "data_root": config["data_root"]}
    world.main(["--spec", json.dumps(spec), "--manifest", str(base / "world.json")])
    return config


def data(config, rel):
    return f"{config['data_root']}/{rel}"


def test_mme_pairs_differ_in_one_slot_whose_values_are_asked_as_often_with_yes_as_with_no(demo_world):
    _, refs = mme.build_prompts(data(demo_world, demo_world["benchmarks"]["mme"]["root"]))
    answers = defaultdict(Counter)
    for subtask, _, truth, question in refs.values():
        slot = re.search(MME_SLOT[subtask], question).groups()
        if subtask == "numerical_calculation":  # what the question claims the picture holds: total minus addend
            slot = int(slot[1]) - int(slot[0])
        answers[subtask, slot][truth] += 1
    per_subtask = demo_world["toy_world"]["counts"]["mme_per_subtask"]
    for (subtask, slot), c in answers.items():
        # exact balance where the subtask's values divide the number of pictures (30: all but the 4 cells)
        assert abs(c["yes"] - c["no"]) <= (0 if subtask != "position" else 1), (subtask, slot, c)
    # the best rule from the slot alone: right on 50 % of the questions (position: 31 of 60 at most; before the
    # pairs were drawn first, existence 0.67-0.70 and count 0.77-0.87 on world seeds 0 and 1)
    by_subtask = defaultdict(list)
    for (subtask, _), c in answers.items():
        by_subtask[subtask].append(c)
    for subtask, counts in by_subtask.items():
        best = sum(max(c.values()) for c in counts) / (2 * per_subtask)
        assert best <= 0.5 + 1 / per_subtask, (subtask, best)


def test_mme_constant_answers_score_the_no_image_baseline(demo_world):
    root = data(demo_world, demo_world["benchmarks"]["mme"]["root"])
    prompts, refs = mme.build_prompts(root)
    for constant in ("Yes", "No"):
        scored = mme.score({p.id: mme.parse(constant) for p in prompts}, refs)
        # acc 50 and acc+ 0 in every subtask: 4 x 50 perception, 50 cognition
        assert scored["perception"] == pytest.approx(200.0) and scored["cognition"] == pytest.approx(50.0)
    guess = mme.no_image_guess(prompts, {})
    assert mme.score({i: mme.parse(t) for i, t in guess.items()}, refs)["perception"] == pytest.approx(200.0)


def test_pope_objects_are_asked_about_as_often_present_as_absent(demo_world):
    cfg = demo_world["benchmarks"]["pope"]
    prompts, refs = pope.build_prompts(data(demo_world, cfg["root"]), data(demo_world, cfg["images"]),
                                       ["random", "popular", "adversarial"])
    by_split = defaultdict(lambda: defaultdict(Counter))
    for p in prompts:
        split, truth, _ = refs[p.id]
        by_split[split][re.search(r"Is there an? (\w+) in the image", p.question).group(1)][truth] += 1
    for split, objects in by_split.items():
        questions = sum(sum(c.values()) for c in objects.values())
        best = sum(max(c.values()) for c in objects.values()) / questions
        # the best per-object rule without the picture (world seeds 0 and 1: random 0.51-0.53, popular 0.52-0.55,
        # adversarial 0.57-0.59; before the present objects asked were balanced: 0.61-0.68, 0.55-0.57, 0.59-0.62)
        assert best <= 0.60, (split, best, {o: dict(c) for o, c in objects.items()})
    for constant, f1 in (("yes", 66.67), ("no", 0.0)):
        scored = pope.score({p.id: constant for p in prompts}, refs)
        assert scored["f1_mean"] == pytest.approx(f1, abs=0.01)
        assert all(scored["splits"][s]["accuracy"] == pytest.approx(50.0) for s in by_split)


def test_vqav2_no_image_guess_is_the_training_answers_prior(demo_world):
    cfg = dict(demo_world["benchmarks"]["vqav2"])
    files = {k: data(demo_world, cfg[k]) for k in ("questions", "annotations", "train_questions", "train_annotations",
                                                   "images")}
    prompts, refs = vqav2.build_prompts(cfg, files, demo_world["seed"])
    guess = vqav2.no_image_guess(prompts, files)
    scored = vqav2.score({i: vqav2.parse(t) for i, t in guess.items()}, refs)
    # VQAv2's yes/no and counting questions keep a prior (as the real one does): the guess per question type
    # scores well above 0 but far from what reading the picture gives
    assert 35.0 <= scored["accuracy"] <= 55.0, scored["accuracy"]
