"""The toy world: every format parses with the real readers, splits are disjoint, generation is deterministic."""

import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workflow_scripts import study
from workflow_scripts.data import readers
from workflow_scripts.toyworld import formats, formats_eval, language, scenes, world


def _ids(names):
    return {int(re.search(r"(\d+)\.(jpg|png)$", n).group(1)) for n in names}


def test_every_format_parses_with_the_real_readers(smoke_world):
    config, manifest = smoke_world
    path = lambda key: study.data_path(config, key)  # noqa: E731
    counts = config["toy_world"]["counts"]

    tsv = readers.read_cc3m_tsv(path("cc3m_tsv"))
    assert len(tsv) == counts["cc3m"] + counts["cc3m_dead_urls"] + 1  # + one corrupt image
    assert all(r.url.startswith("file://") for r in tsv)
    dead = [r for r in tsv if not Path(r.url.removeprefix("file://")).exists()]
    assert len(dead) == counts["cc3m_dead_urls"]
    subset = readers.read_llava_json(path("cc3m_subset"))
    assert subset and all(r.id.startswith("GCC_train_") for r in subset)
    assert subset[0].conversations[1][1] == tsv[int(subset[0].id.split("_")[-1])].caption

    instruct = readers.read_llava_json(path("instruct_json"))
    assert len(instruct) == counts["instruct"]
    assert {r.type for r in instruct} <= {"conversation", "complex_reasoning", "detail"}
    for r in instruct:
        assert re.fullmatch(r"\d{12}\.jpg", r.image)
        assert (Path(path("instruct_images")) / r.image).exists()
        assert "<image>" in r.conversations[0][1] and all("<image>" not in v for _, v in r.conversations[1:])
        assert [f for f, _ in r.conversations] == ["human", "gpt"] * (len(r.conversations) // 2)

    for name in ("coco", "flickr30k"):
        images = readers.read_karpathy(path(f"{name}_karpathy_json"))
        assert Counter(i.split for i in images) == Counter(counts[name])
        assert all(len(i.captions) == 5 for i in images)
        assert all((Path(path(f"{name}_images")) / i.path).exists() for i in images)

    vqa = readers.read_vqav2(path("vqav2_questions"), path("vqav2_annotations"))
    assert len(vqa) == 3 * counts["vqav2"]["val"] and all(len(q.answers) == 10 for q in vqa)
    assert all((Path(path("vqav2_images")) / readers.coco_val2014_name(q.image_id)).exists() for q in vqa)
    assert any(len(set(q.answers)) > 1 for q in vqa) and any(len(set(q.answers)) == 1 for q in vqa)

    mme = readers.read_mme(path("mme_root"))
    assert {q.subtask for q in mme} == set(formats_eval.MME_SUBTASKS)
    per_image = Counter((q.image, q.answer) for q in mme)
    assert set(per_image.values()) == {1}  # one Yes and one No per image
    assert len(mme) == 2 * counts["mme_per_subtask"] * len(formats_eval.MME_SUBTASKS)

    for split in ("random", "popular", "adversarial"):
        pope = readers.read_pope(Path(path("pope_root")) / f"coco_pope_{split}.json")
        labels = Counter(q.label for q in pope)
        assert labels["yes"] == labels["no"] > 0
        assert all((Path(path("pope_images")) / q.image).exists() for q in pope)
    assert manifest["counts"]["instruct"]["conversation"] > 0


def test_images_of_different_splits_never_overlap(smoke_world):
    config, _ = smoke_world
    path = lambda key: study.data_path(config, key)  # noqa: E731
    train = _ids(r.image for r in readers.read_llava_json(path("instruct_json")))
    train |= _ids(r.url for r in readers.read_cc3m_tsv(path("cc3m_tsv")) if r.url.endswith(".jpg") and "deleted"
                  not in r.url and "corrupt" not in r.url)
    groups = {"train": train}
    for name in ("coco", "flickr30k"):
        for split in ("train", "val", "test"):
            images = readers.read_karpathy(path(f"{name}_karpathy_json"), split)
            groups[f"{name}_{split}"] = _ids(i.path for i in images)
    groups["vqav2_val"] = {q.image_id for q in readers.read_vqav2(path("vqav2_questions"), path("vqav2_annotations"))}
    groups["mme"] = _ids(q.image for q in readers.read_mme(path("mme_root")))
    groups["pope"] = _ids(q.image for q in readers.read_pope(Path(path("pope_root")) / "coco_pope_random.json"))
    names = list(groups)
    for i, a in enumerate(names):
        assert groups[a], a
        for b in names[i + 1:]:
            assert not groups[a] & groups[b], (a, b)


def test_corrupt_image_is_not_decodable(smoke_world):
    config, _ = smoke_world
    rows = readers.read_cc3m_tsv(study.data_path(config, "cc3m_tsv"))
    corrupt = [r for r in rows if "corrupt" in r.url]
    assert len(corrupt) == 1
    try:
        Image.open(corrupt[0].url.removeprefix("file://")).load()
        raise AssertionError("corrupt image decoded")
    except OSError:
        pass


def test_generation_is_deterministic(tmp_path, smoke_world):
    config, _ = smoke_world
    specs = []
    for run in ("a", "b"):
        spec = {"toy": dict(config["toy_world"], root=str(tmp_path / run / "toy")),
                "paths": study.relative_data_paths(config), "data_root": str(tmp_path / run / "data")}
        world.main(["--spec", json.dumps(spec), "--manifest", str(tmp_path / run / "world.json")])
        specs.append(spec)
    for rel in ("llava/llava_instruct_80k.json", "karpathy/dataset_coco.json", "pope/coco_pope_adversarial.json",
                "vqav2/v2_mscoco_val2014_annotations.json"):
        assert (tmp_path / "a/data" / rel).read_bytes() == (tmp_path / "b/data" / rel).read_bytes(), rel
    a = sorted((tmp_path / "a/data/coco/val2014").iterdir())
    b = sorted((tmp_path / "b/data/coco/val2014").iterdir())
    assert [p.name for p in a] == [p.name for p in b] and a[0].read_bytes() == b[0].read_bytes()


def test_scene_rules():
    rng = np.random.default_rng(0)
    drawn = [scenes.sample_scene(rng, i) for i in range(2000)]
    assert all(1 <= len(s.shapes) <= 4 for s in drawn)
    assert all(len({sh.cell for sh in s.shapes}) == len(s.shapes) for s in drawn)
    freq = Counter(k for s in drawn for k in s.kinds())
    assert freq["circle"] > freq["cross"]  # unequal base rates make "popular" negatives meaningful
    image = scenes.render(scenes.Scene(0, (scenes.Shape("square", "red", "large", 0),)), 64)
    assert image.getpixel((16, 16)) == scenes.COLOURS["red"]  # centre of the top-left cell
    assert image.getpixel((48, 48)) == scenes.BACKGROUND


def test_pope_negative_sampling():
    scene = scenes.Scene(0, (scenes.Shape("circle", "red", "large", 0),))
    freq = Counter({"circle": 9, "square": 5, "triangle": 7, "diamond": 1, "star": 2, "cross": 3})
    co = {k: Counter() for k in scenes.SHAPES}
    co["circle"].update({"diamond": 4, "star": 1})
    rng = np.random.default_rng(0)
    assert formats_eval.pope_negatives(scene, 2, "popular", rng, freq, co) == ["triangle", "square"]
    assert formats_eval.pope_negatives(scene, 2, "adversarial", rng, freq, co) == ["diamond", "star"]
    assert set(formats_eval.pope_negatives(scene, 3, "random", rng, freq, co)) <= set(scenes.SHAPES) - {"circle"}


def test_language_hand_checked():
    s = scenes.Scene(7, (scenes.Shape("cross", "orange", "small", 1), scenes.Shape("circle", "blue", "large", 2)))
    assert language.detail_description(s) == (
        "The image shows two shapes on a white background. In the top right there is a small orange cross. "
        "In the bottom left there is a large blue circle. The top left and bottom right are empty.")
    yes, no = formats_eval.mme_fit("numerical_calculation", s, 2, 4, np.random.default_rng(1))
    k = int(re.search(r"plus (\d)", yes).group(1))
    assert yes.endswith(f"equal to {2 + k}?") and no.endswith(f"equal to {4 + k}?")
    assert formats_eval.mme_fit("numerical_calculation", s, 3, 2, np.random.default_rng(1)) is None  # 2 shapes
    assert formats_eval.mme_fit("existence", s, "cross", "star", None) == (
        "Is there a cross in this image?", "Is there a star in this image?")
    assert formats_eval.mme_fit("existence", s, "cross", "circle", None) is None  # the no-question must be false
    assert formats_eval.mme_fit("position", s, 2, 0, None) == (
        "Is the blue circle in the bottom left?", "Is the blue circle in the top left?")
    assert formats_eval.mme_fit("count", s, 2, 1, np.random.default_rng(1)) is None  # no kind twice
    assert language.plural("cross") == "crosses" and language.plural("star", 1) == "star"


def test_scene_documents_show_the_scene_where_the_image_would_be():
    s = scenes.Scene(7, (scenes.Shape("cross", "orange", "small", 1), scenes.Shape("circle", "blue", "large", 2)))
    assert language.scene_in_words(s) == "small orange cross top right , large blue circle bottom left"
    rng = np.random.default_rng(3)
    docs = [world.scene_document(s, rng) for _ in range(40)]
    plain = [d for d in docs if not d.startswith("A chat")]
    chats = [d for d in docs if d.startswith("A chat")]
    assert plain and chats
    # plain: the scene, then a caption (stage 1's layout); chat: the scene opens the first question (<image>'s place)
    assert all(d.startswith(language.scene_in_words(s) + " ") and d.endswith("\n") for d in plain)
    assert all("USER: small orange cross top right , large blue circle bottom left\n" in d for d in chats)


def test_scene_questions_add_existence_checks_and_mme_yes_no_form():
    s = scenes.Scene(7, (scenes.Shape("cross", "orange", "small", 1), scenes.Shape("circle", "blue", "large", 2)))
    chats = lambda rng, **kw: [d for d in (world.scene_document(s, rng, **kw) for _ in range(60))  # noqa: E731
                               if d.startswith("A chat")]
    for doc in chats(np.random.default_rng(3)):  # the demo's corpus: no MME form
        assert "Please answer yes or no." not in doc
    docs = chats(np.random.default_rng(3), extra_exists=2, yes_no_share=1.0)
    assert docs
    for doc in docs:
        asked = re.findall(r"Is there an? (\w+) in the image\? Please answer yes or no\. ASSISTANT: (Yes|No)</s>", doc)
        assert len(asked) >= 2  # the two added, asked in MME's form since every yes/no question is
        assert all((kind in ("cross", "circle")) == (said == "Yes") for kind, said in asked), asked
        assert doc.count("Is there") == len(asked)  # no existence question left in another form


def _truth(scene, question: str) -> bool:
    """Hand-written reading of the yes/no questions about ``scene`` (independent of the generator's code)."""
    if m := re.fullmatch(r"Is there an? (\w+) in the image\?", question):
        return m[1] in scene.kinds()
    if m := re.fullmatch(r"Is there an? (\w+) (\w+) in the image\?", question):
        return any((s.colour, s.kind) == (m[1], m[2]) for s in scene.shapes)
    if m := re.fullmatch(r"(?:Is|Are) there (\w+) (\w+?)(?:es|s)? in the image\?", question):
        return language.NUMBER_WORDS.index(m[1]) == scene.count(m[2])
    m = re.fullmatch(r"Is the (\w+) (\w+) in the (\w+ \w+)\?", question)
    return any((s.colour, s.kind, s.position) == (m[1], m[2], m[3]) for s in scene.shapes)


def test_short_answer_records_ask_checkable_questions_in_the_benchmarks_forms():
    s = scenes.Scene(7, (scenes.Shape("cross", "orange", "small", 1), scenes.Shape("circle", "blue", "large", 2),
                         scenes.Shape("cross", "red", "large", 3)))
    rng = np.random.default_rng(5)
    negatives = Counter()
    for _ in range(60):
        record = formats.short_answer_record(s, rng, existence=4, checks=2, other=1)
        turns = record["conversations"]
        assert record["type"] == "short_answers" and len(turns) == 2 * 7
        assert turns[0]["value"].startswith("<image>\n")
        asked = [(t["value"].removeprefix("<image>\n"), a["value"]) for t, a in zip(turns[::2], turns[1::2])]
        exists = [(q.removesuffix(formats.SHORT_ANSWER), a) for q, a in asked
                  if q.startswith("Is there") and q.endswith(formats.SHORT_ANSWER)]
        checks = [(q.removesuffix(formats.YES_NO), a) for q, a in asked if q.endswith(formats.YES_NO)]
        assert len(exists) == 4 and len(checks) == 2
        assert len({q for q, _ in exists}) == 4  # four different kinds
        assert sorted(a for _, a in exists) == ["no", "no", "yes", "yes"]  # two present kinds, two absent
        assert all(_truth(s, q) == (a == "yes") for q, a in exists), exists
        assert all(a in ("Yes", "No") and _truth(s, q) == (a == "Yes") for q, a in checks), checks
        negatives.update(re.match(r"Is there an? (\w+)", q)[1] for q, a in exists if a == "no")
    # the partners of the kinds present (circle: square; cross: star) are asked more often than the others
    assert min(negatives["square"], negatives["star"]) > max(negatives[k] for k in ("triangle", "diamond"))


def test_short_answer_records_replace_a_share_and_leave_the_rest_of_the_world_as_it_was(tmp_path):
    pool = scenes.sample_scenes(seed=0, pool="instruct", count=400, first_id=1)

    def write(name, short_answers=None):
        rng = np.random.default_rng(1)
        counts = formats.write_instruct(pool, rng, tmp_path / name, tmp_path / "img", 32, short_answers,
                                        np.random.default_rng(2))
        return counts, json.loads((tmp_path / name).read_text()), rng.random()  # rng.random(): where rng ended

    default, off = write("a.json"), write("b.json", {"share": 0.0, "existence": 4})
    assert default == off
    counts, records, after = write("c.json", {"share": 0.5, "existence": 2, "checks": 1, "other": 0})
    assert after == default[2]  # the datasets written after the instruct json are drawn as without them
    assert set(counts) == {"conversation", "complex_reasoning", "detail", "short_answers"}
    assert sum(counts.values()) == 400 and 160 < counts["short_answers"] < 240, counts
    kept = [r for r in records if r["type"] != "short_answers"]
    assert kept == [r for r, new in zip(default[1], records) if new["type"] != "short_answers"]
    assert sum(r.type == "short_answers" for r in readers.read_llava_json(str(tmp_path / "c.json"))) == \
        counts["short_answers"]  # the real reader takes them


def test_pretraining_corpus_holds_the_configured_share_of_scene_documents(smoke_world):
    config, _ = smoke_world
    root = Path(config["toy_world"]["root"]) / "pretrain"
    texts = [json.loads(line)["text"] for line in (root / "text_train.jsonl").read_text().splitlines()]
    scene = r"(small|large) \w+ \w+ (top|bottom) (left|right)"
    shown = sum(re.match(scene, t) is not None or re.match(r"A chat[^\n]*USER: " + scene, t) is not None
                for t in texts)
    share = config["toy_world"]["scene_text_share"]
    assert abs(shown / len(texts) - share) < 0.1, (shown, len(texts))


def test_vqa_majority_answer_does_not_depend_on_the_hash_seed():
    """Ties go to the answer given first, in every process (string hashing is salted per process)."""
    import subprocess
    import sys

    code = ("from workflow_scripts.toyworld.formats import majority_answer; "
            "print(majority_answer(['two', '2', '2', 'two', 'three']))")
    seen = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                           capture_output=True, text=True, check=True).stdout.strip() for seed in range(6)}
    assert seen == {"two"}


def test_ship_replaces_each_model_folder_whole_and_checks_everything_first(tmp_path):
    from workflow_scripts.toyworld import ship

    built, shipped, metrics = tmp_path / "built", tmp_path / "toy_models", tmp_path / "metrics"
    for kind in ship.KINDS:
        (built / kind).mkdir(parents=True)
        (built / kind / "config.json").write_text("{}")
        (built / kind / "model.safetensors").write_bytes(b"new")
        (shipped / kind).mkdir(parents=True)
        (shipped / kind / "stale.bin").write_bytes(b"old")
    metrics.mkdir()
    (metrics / "llm_metrics.json").write_text('{"steps": 3}')
    with pytest.raises(FileNotFoundError, match="vision_metrics.json"):  # missing: nothing is replaced
        ship.ship(built, shipped, metrics)
    assert (shipped / "llm" / "stale.bin").exists()
    (metrics / "vision_metrics.json").write_text('{"steps": 5}')
    ship.ship(built, shipped, metrics)
    for kind in ship.KINDS:
        assert sorted(p.name for p in (shipped / kind).iterdir()) == [
            "config.json", "model.safetensors", "training_metrics.json"]
    assert (shipped / "llm" / "training_metrics.json").read_text() == '{"steps": 3}'
    assert not list(shipped.glob(".*"))  # no staging folder left behind
