"""The official files as they ship, and other tools' answer files: read with the right counts, scored as the
official tools and LLaVA's scripts score them, and never a silent number.

Layouts follow the public releases (see REFERENCE.md): MME's hub download nests the subtasks one level down and
mixes two per-subtask shapes; LLaVA's MME answers are keyed "<subtask>/<image file>" with the question in
``prompt``; LLaVA's POPE answers carry the global ids of ``llava_pope_test.jsonl``; Flickr30k answers may be keyed
by the photo id (the image file's stem).
"""

import json

import pytest
from PIL import Image

from workflow_scripts.data import preflight, readers
from workflow_scripts.evaluate import captioning, mme, pope
from workflow_scripts.evaluate.common import Answer, CoverageError

# Subtasks that keep images/ + questions_answers_YN/; the other nine keep <stem>.txt beside the image.
NESTED = ("artwork", "celebrity", "landmark", "posters", "scene")
PNG = ("code_reasoning", "numerical_calculation", "text_translation")  # some cognition subtasks ship .png


def write_mme_release(root, subtasks=None):
    """A complete MME release as the hub unpacks it: <root>/MME_Benchmark/<subtask>/..., 2 questions an image."""
    base = root / "MME_Benchmark"
    for subtask, questions in readers.MME_QUESTIONS.items():
        if subtasks is not None and subtask not in subtasks:
            continue
        folder = base / subtask
        images = folder / "images" if subtask in NESTED else folder
        texts = folder / "questions_answers_YN" if subtask in NESTED else folder
        images.mkdir(parents=True, exist_ok=True)
        texts.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if subtask in PNG else ".jpg"
        for i in range(questions // 2):
            stem = f"{10000 + i}"
            Image.new("RGB", (2, 2), (i % 255, 0, 0)).save(images / f"{stem}{suffix}")
            # One question of the release has two spaces before the instruction: kept verbatim.
            spaces = "  " if i == 0 else " "
            (texts / f"{stem}.txt").write_text(f"Is there a cat in the image?{spaces}Please answer yes or no.\tYes\n"
                                               f"Is there a dog in the image? Please answer yes or no.\tNo\n")
    return root


@pytest.fixture(scope="module")
def mme_release(tmp_path_factory):
    return write_mme_release(tmp_path_factory.mktemp("mme") / "MME_Benchmark_release_version")


def test_hub_mme_layout_reads_all_2374_questions(mme_release):
    questions = readers.read_mme(mme_release)
    assert len(questions) == readers.MME_TOTAL == 2374
    assert {q.subtask for q in questions} == set(readers.MME_QUESTIONS)
    assert any(q.image.endswith(".png") for q in questions if q.subtask == "code_reasoning")
    assert any("/images/" in q.image for q in questions if q.subtask == "artwork")
    assert "image?  Please answer yes or no." in questions[0].question  # verbatim


def mme_config(root, **spec):
    return {"data_root": str(root.parent), "benchmarks": {"mme": {"root": root.name, **spec}}}


def test_preflight_accepts_the_complete_release_and_names_what_a_partial_one_lacks(mme_release, tmp_path):
    found, problems = preflight.preflight(mme_config(mme_release))
    assert problems == [] and found["mme_root"]["found"] == "2374 questions in 14 subtasks"
    partial = write_mme_release(tmp_path / "MME_Benchmark_release_version",
                                subtasks=[s for s in readers.MME_QUESTIONS if s != "OCR"])
    found, problems = preflight.preflight(mme_config(partial))
    assert len(problems) == 1 and "mme: 2334 of 2374 questions; missing subtasks: ['OCR']" in problems[0]
    found, problems = preflight.preflight(mme_config(partial, allow_partial=True))
    assert problems == [] and found["mme_root"]["complete"] is False


def test_preflight_refuses_an_empty_mme_folder(tmp_path):
    empty = tmp_path / "MME_Benchmark_release_version"
    empty.mkdir()
    _, problems = preflight.preflight(mme_config(empty))
    assert len(problems) == 1 and "no MME subtask folder" in problems[0]


def test_llava_mme_answers_score_as_ours(mme_release):
    prompts, refs = mme.build_prompts(str(mme_release))
    # Some answers right, some wrong, one with a leading space (official parsing: raw text).
    texts = {p.id: ("Yes" if i % 3 else "No") if i != 5 else " yes" for i, p in enumerate(prompts)}
    ours = [Answer(qid, text) for qid, text in texts.items()]
    llava = []
    for qid, text in texts.items():
        subtask, image, _, question = refs[qid]
        prompt = question.replace("Please answer yes or no.", "").strip() + mme.LLAVA_SUFFIX
        llava.append(Answer(f"{subtask}/{image.rsplit('/', 1)[1]}", text, prompt))
    a, b = mme.score_file(ours, str(mme_release)), mme.score_file(llava, str(mme_release))
    assert a == b and a["coverage"]["answered"] == 2374
    assert 0 < a["perception_8"] < a["perception"] and a["cognition"] > 0
    with pytest.raises(CoverageError, match="2373 of 2374 answered"):
        mme.score_file(llava[1:], str(mme_release))
    with pytest.raises(CoverageError, match="0 of 2374 references answered"):
        mme.score_file([Answer(a.id, a.text) for a in llava], str(mme_release))  # no prompt: nothing matches


def write_pope(root, n_per_split, random_lines=None):
    """coco_pope_<split>.json as RUCAIBox/POPE ships them (JSON lines, some CRLF); LLaVA's question file beside."""
    root.mkdir(parents=True, exist_ok=True)
    llava, qid = [], 0
    for split in ("adversarial", "popular", "random"):
        n = random_lines if split == "random" and random_lines else n_per_split
        lines = []
        for i in range(n):
            label = "yes" if i % 2 == 0 else "no"
            image = f"COCO_val2014_{i:012d}.jpg"
            text = f"Is there a {'dog' if i % 3 else 'cat'} in the image?"
            lines.append(json.dumps({"question_id": i + 1, "image": image, "text": text, "label": label}))
            llava.append({"question_id": qid, "image": image, "text": text, "category": split})
            qid += 1
        (root / f"coco_pope_{split}.json").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    questions = root / "llava_pope_test.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in llava))
    return root, llava


def test_llava_pope_answers_score_as_ours_through_its_question_file(tmp_path):
    root, llava_questions = write_pope(tmp_path / "pope", 12)
    _, refs = pope.build_prompts(str(root), "", ["random", "popular", "adversarial"])
    texts = {qid: ("Yes, there is." if i % 4 else "No.") for i, qid in enumerate(refs)}
    ours = [Answer(qid, t) for qid, t in texts.items()]
    # LLaVA's answers: its own ids, in its question file's order (category blocks).
    by_split = {s: [t for qid, t in texts.items() if qid.startswith(s + "/")] for s in ("adversarial", "popular",
                                                                                         "random")}
    cursor = {s: 0 for s in by_split}
    llava = []
    for q in llava_questions:
        llava.append(Answer(str(q["question_id"]), by_split[q["category"]][cursor[q["category"]]]))
        cursor[q["category"]] += 1
    a = pope.score_file(ours, str(root))
    b = pope.score_file(llava, str(root), questions=str(root / "llava_pope_test.jsonl"))
    assert a == b and a["coverage"]["answered"] == 36
    with pytest.raises(CoverageError, match="--questions"):
        pope.score_file(llava, str(root))


def test_both_public_pope_versions_pass_preflight(tmp_path):
    for name, random_lines in (("current", None), ("llava_pinned", 2910)):
        root, _ = write_pope(tmp_path / name, 3000, random_lines)
        config = {"data_root": str(tmp_path), "benchmarks": {"pope": {"root": name, "images": name,
                                                                      "splits": ["random", "popular",
                                                                                 "adversarial"]}}}
        found, problems = preflight.preflight(config)
        assert problems == [], problems
        assert found["pope_root"]["found"].startswith(f"random: {random_lines or 3000}")
    short, _ = write_pope(tmp_path / "short", 100)
    config["benchmarks"]["pope"]["root"] = "short"
    _, problems = preflight.preflight(config)
    assert any("pope: random has 100 questions, a complete split 3000" in p for p in problems)


def test_flickr30k_answers_keyed_by_photo_id(tmp_path):
    """Karpathy's dataset_flickr30k.json: imgid 0.. and filename <photo id>.jpg; answers by either key."""
    images = [{"filename": f"{1000092795 + i}.jpg", "imgid": i, "split": "test",
               "sentences": [{"raw": f"A person number {i} walks a dog ."}, {"raw": f"Someone {i} with a dog ."}]}
              for i in range(4)]
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    by_imgid = [Answer(str(i), f"A person number {i} walks a dog.") for i in range(4)]
    by_stem = [Answer(f"{1000092795 + i}", a.text) for i, a in enumerate(by_imgid)]
    by_file = [Answer(f"flickr30k-images/{1000092795 + i}.jpg", a.text) for i, a in enumerate(by_imgid)]
    scores = [captioning.score_file(a, str(path)) for a in (by_imgid, by_stem, by_file)]
    assert scores[0]["CIDEr"] > 100 and scores[0] == scores[1] == scores[2]
    with pytest.raises(CoverageError, match="0 of 4 references answered"):
        captioning.score_file([Answer("COCO_val2014_1", "x")], str(path))


def test_llava_per_type_files_become_one_tagged_pool(tmp_path):
    """The data-type ablation's pool: conversation_58k / detail_23k / complex_reasoning_77k joined, each record
    tagged; the same image id in two files stays two records (one per type)."""
    from workflow_scripts.data.instruct import select_subset
    from workflow_scripts.data.instruct_types import tagged_records

    def rec(i, text):
        return {"id": f"{i:012d}", "image": f"{i:012d}.jpg",
                "conversations": [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": text}]}

    files = {}
    for name, ids in (("conversation", [1, 2, 3]), ("detail", [1, 4]), ("complex_reasoning", [2, 5, 6, 7])):
        files[name] = str(tmp_path / f"{name}.json")
        (tmp_path / f"{name}.json").write_text(json.dumps([rec(i, f"{name} {i}") for i in ids]))
    rows = tagged_records(files)
    assert [(r["id"][-1], r["type"]) for r in rows] == [("1", "conversation"), ("2", "conversation"),
                                                        ("3", "conversation"), ("1", "detail"), ("4", "detail"),
                                                        ("2", "complex_reasoning"), ("5", "complex_reasoning"),
                                                        ("6", "complex_reasoning"), ("7", "complex_reasoning")]
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps(rows))
    records = readers.read_llava_json(pool)
    assert [r.type for r in select_subset(records, ["detail"])] == ["detail", "detail"]
    with pytest.raises(ValueError, match="asked for 3 records of types \\['detail'\\], only 2 exist"):
        select_subset(records, ["detail"], 3)
