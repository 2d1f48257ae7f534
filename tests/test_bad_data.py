"""Bad data, case by case, with the outcome README's "Data problems" section promises:

- CC3M (web-scraped, millions of rows): a dead URL, a truncated JPEG, a zero-byte file, a non-image named .jpg
  and an empty caption are skipped and counted; the download succeeds with the rest.
- Instruct data and benchmarks (curated, every record counts): a zero-byte or non-image file fails before
  training, naming the record; a truncated image fails when decoded, naming the record and the file; a missing
  image, a conversation without an assistant turn or a malformed benchmark line fail fast naming file and
  record (see also test_readers.py and test_instruct.py).
"""

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from workflow_scripts.data import cc3m, readers
from workflow_scripts.data.images import BadImageError, load_rgb
from workflow_scripts.data.instruct import InstructDataset
from workflow_scripts.data.readers import InstructRecord
from workflow_scripts.evaluate import run as evaluate_run
from workflow_scripts.toyworld.toy_vision import image_processor


def jpeg_bytes(size=48) -> bytes:
    """A noisy JPEG: large enough that cutting it in half removes image data, not just the end marker."""
    buf = io.BytesIO()
    Image.effect_noise((size, size), 60).convert("RGB").save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture
def bad_images(tmp_path):
    """A good JPEG and the three kinds of broken image file."""
    folder = tmp_path / "images"
    folder.mkdir()
    good = jpeg_bytes()
    (folder / "good.jpg").write_bytes(good)
    (folder / "good2.jpg").write_bytes(jpeg_bytes())
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("<html>404 not found</html>\n")
    return folder


@pytest.mark.slow
def test_cc3m_skips_and_counts_every_bad_row(bad_images, tmp_path):
    rows = [("a red square", "good.jpg"), ("a green square", "good2.jpg"), ("gone", "missing.jpg"),
            ("half an image", "truncated.jpg"), ("nothing", "empty.jpg"), ("a web page", "text.jpg"),
            ("", "good.jpg")]
    tsv = tmp_path / "cc3m.tsv"
    tsv.write_text("caption\turl\n" + "".join(f"{c}\tfile://{bad_images / f}\n" for c, f in rows))
    summary_path = tmp_path / "summary.json"
    cc3m.main(["--tsv", str(tsv), "--shards", str(tmp_path / "shards"), "--summary", str(summary_path),
               "--image-size", "64", "--per-shard", "10", "--threads", "2", "--allow-file-urls"])
    summary = json.loads(summary_path.read_text())
    assert summary["skipped_empty_caption"] == 1
    assert summary["requested"] == 6
    assert summary["failed_to_download"] == 1  # the dead URL
    # img2dataset decodes every image to resize it: the truncated, empty and non-image files all fail there.
    assert summary["failed_to_resize"] == 3
    assert summary["downloaded"] == 2


def record(image: str) -> InstructRecord:
    return InstructRecord(f"rec-{image}", image, (("human", "<image>\nWhat is this?"), ("gpt", "A square.")))


@pytest.mark.parametrize("name", ["empty.jpg", "text.jpg"])
def test_instruct_image_that_is_not_an_image_fails_before_training(bad_images, toy_tokenizer, name):
    records = [record("good.jpg"), record(name)]
    with pytest.raises(BadImageError, match=rf"record rec-{name} of instruct\.json: .*{name}: not a readable image"):
        InstructDataset(records, str(bad_images), toy_tokenizer, image_processor(64), "vicuna_v1", 16, 256,
                        source="instruct.json")


def test_truncated_instruct_image_fails_when_decoded_naming_record_and_file(bad_images, toy_tokenizer):
    ds = InstructDataset([record("good.jpg"), record("truncated.jpg")], str(bad_images), toy_tokenizer,
                         image_processor(64), "vicuna_v1", 16, 256)
    assert ds[0]["pixel_values"].shape == (3, 64, 64)
    with pytest.raises(BadImageError, match=r"record rec-truncated\.jpg: .*truncated\.jpg: cannot decode"):
        ds[1]


def test_benchmark_image_that_cannot_be_decoded_is_named(bad_images):
    for name in ("empty.jpg", "text.jpg", "truncated.jpg"):
        with pytest.raises(BadImageError, match=name):
            load_rgb(bad_images / name)
    assert load_rgb(bad_images / "good.jpg").size == (48, 48)


def test_malformed_benchmark_line_fails_before_any_model_loads(tmp_path, monkeypatch):
    """POPE with a broken JSON line: the prompt builder raises, naming file and line, before load_model."""
    root = tmp_path / "pope"
    root.mkdir()
    (root / "coco_pope_random.json").write_text(
        '{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "yes"}\n{"question_id": 2,\n')
    config = {"data_root": str(tmp_path), "seed": 0, "vision": {}, "stage2": {},
              "benchmarks": {"pope": {"root": "pope", "images": "images", "splits": ["random"],
                                      "max_new_tokens": 4}}}
    (tmp_path / "images").mkdir()
    monkeypatch.setattr(evaluate_run, "load_model", lambda *a: pytest.fail("model loaded before data was read"))
    with pytest.raises(readers.DataFormatError, match=r"coco_pope_random\.json: line 2"):
        evaluate_run.main(["--bench", "pope", "--config-json", json.dumps(config), "--template", "vicuna_v1",
                           "--model", "unused", "--out-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_empty_caption_rows_are_dropped_and_named():
    rows = [("a cat", "http://x/1", "GCC_train_000000001"), ("  ", "http://x/2", "GCC_train_000000002")]
    kept, empty = cc3m.drop_empty_captions(rows)
    assert kept == rows[:1] and empty == ["GCC_train_000000002"]


def test_conversation_without_assistant_turn_fails_fast(tmp_path):
    path = Path(tmp_path / "instruct.json")
    path.write_text(json.dumps([{"id": "r9", "conversations": [{"from": "human", "value": "<image>\nHi"}]}]))
    with pytest.raises(readers.DataFormatError, match=r"instruct\.json: record 0 \(id 'r9'\): no assistant"):
        readers.read_llava_json(path)
