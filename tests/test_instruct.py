"""Instruct dataset: <image> placement, subsetting, encoding with real images, collation, padding option."""


import pytest
import torch
from PIL import Image

from workflow_scripts import study
from workflow_scripts.data import readers
from workflow_scripts.data.images import expand_to_square, preprocess
from workflow_scripts.data.instruct import InstructDataset, collate, image_first, select_subset, to_turns
from workflow_scripts.data.readers import DataFormatError, InstructRecord
from workflow_scripts.toyworld.toy_vision import image_processor


def test_image_moves_to_front_of_first_turn():
    rec = InstructRecord("1", "a.jpg", (("human", "What is it?\n<image>"), ("gpt", "A star."),
                                        ("human", "Sure?"), ("gpt", "Yes.")))
    assert to_turns(rec) == [("<image>\nWhat is it?", "A star."), ("Sure?", "Yes.")]
    assert image_first("<image>\nQ") == "<image>\nQ"
    bad = InstructRecord("7", "a.jpg", (("human", "Q"), ("gpt", "A"), ("human", "<image> again"), ("gpt", "B")))
    with pytest.raises(DataFormatError, match="record 7"):
        to_turns(bad, "x.json")
    odd = InstructRecord("8", None, (("human", "Q"), ("human", "Q2"), ("gpt", "B")))
    with pytest.raises(DataFormatError, match="alternate"):
        to_turns(odd)


def _records(kinds):
    return [InstructRecord(str(i), None, (("human", "q"), ("gpt", "a")), k) for i, k in enumerate(kinds)]


def test_select_subset_by_type_and_count():
    recs = _records(["conversation", "detail", "complex_reasoning"] * 10)
    assert len(select_subset(recs, ["detail"])) == 10
    picked = select_subset(recs, ["conversation", "detail"], count=5, seed=3)
    assert len(picked) == 5 and {r.type for r in picked} <= {"conversation", "detail"}
    assert picked == select_subset(recs, ["conversation", "detail"], count=5, seed=3)  # seeded
    assert [int(r.id) for r in picked] == sorted(int(r.id) for r in picked)  # order kept
    assert len(select_subset(recs, None, count=30)) == 30
    with pytest.raises(ValueError, match="only 10 exist"):
        select_subset(recs, ["detail"], count=11)


def test_dataset_on_toy_world(smoke_world, toy_tokenizer):
    config, _ = smoke_world
    records = readers.read_llava_json(study.data_path(config, "instruct_json"))
    processor = image_processor(64)
    ds = InstructDataset(records, study.data_path(config, "instruct_images"), toy_tokenizer, processor,
                         "vicuna_v1", n_image_tokens=16, max_length=256)
    assert len(ds) + ds.dropped == len(records)
    image_id = toy_tokenizer.convert_tokens_to_ids("<image>")
    item = ds[0]
    assert int((item["input_ids"] == image_id).sum()) == 16
    assert item["pixel_values"].shape == (3, 64, 64)
    batch = collate([ds[0], ds[1], ds[2]], toy_tokenizer.pad_token_id)
    n = batch["input_ids"].shape[1]
    assert batch["pixel_values"].shape == (3, 3, 64, 64)
    assert batch["labels"].shape == batch["attention_mask"].shape == (3, n)
    for i in range(3):
        length = len(ds[i]["input_ids"])
        assert batch["attention_mask"][i].sum() == length  # right padding
        assert (batch["labels"][i, length:] == -100).all()
        assert (batch["input_ids"][i, length:] == toy_tokenizer.pad_token_id).all()


def test_short_max_length_drops_unsupervised_records(smoke_world, toy_tokenizer):
    config, _ = smoke_world
    records = readers.read_llava_json(study.data_path(config, "instruct_json"))[:5]
    full = InstructDataset(records, study.data_path(config, "instruct_images"), toy_tokenizer, image_processor(64),
                           "vicuna_v1", n_image_tokens=16, max_length=4096)
    # Cut every record just before its first supervised token (and after its image tokens).
    first_label = min(next(i for i, lab in enumerate(enc.labels) if lab != -100) for _, enc in full.items)
    ds = InstructDataset(records, study.data_path(config, "instruct_images"), toy_tokenizer, image_processor(64),
                         "vicuna_v1", n_image_tokens=16, max_length=first_label)
    assert ds.dropped == 5 and len(ds) == 0


def test_missing_image_fails_before_training(tmp_path, toy_tokenizer):
    rec = InstructRecord("000000000123", "000000000123.jpg", (("human", "<image>\nQ"), ("gpt", "A")))
    with pytest.raises(FileNotFoundError, match="record 000000000123: 000000000123.jpg"):
        InstructDataset([rec], str(tmp_path), toy_tokenizer, image_processor(64), "vicuna_v1", 16, 256)


def test_pad_mode_squares_with_mean_colour():
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    square = expand_to_square(wide, (1, 2, 3))
    assert square.size == (40, 40) and square.getpixel((0, 0)) == (1, 2, 3) and square.getpixel((20, 20)) == (255, 0, 0)
    processor = image_processor(64)
    crop, pad = preprocess([wide], processor, "crop"), preprocess([wide], processor, "pad")
    assert crop.shape == pad.shape == (1, 3, 64, 64)
    assert torch.allclose(pad[0, :, 0, 0], torch.zeros(3), atol=0.02)  # the mean colour normalises to ~0
    assert crop[0, 0, 0, 0] > 1.0  # red fills the cropped image
