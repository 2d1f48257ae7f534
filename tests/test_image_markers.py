"""connector.image_start_end (LLaVA's mm_use_im_start_end): <im_start> and <im_end> around the image's tokens in
training (on ids, unsupervised) and in generation prompts; off by default, and it asks stage 1 to train the
embeddings."""

import copy

import pytest
import torch
import yaml
from conftest import REPO, validated

from workflow_scripts import study
from workflow_scripts.data import readers
from workflow_scripts.data.instruct import InstructDataset
from workflow_scripts.data.labels import (
    IGNORE_INDEX,
    IMAGE_END,
    IMAGE_START,
    Encoded,
    expand_image_tokens,
    image_markers,
    image_prompt_text,
)
from workflow_scripts.model.build import build_mllm

pytestmark = pytest.mark.slow


def test_markers_wrap_the_expanded_image_unsupervised():
    enc = Encoded([1, 9, 5, 6], [IGNORE_INDEX, IGNORE_INDEX, 5, 6])
    out = expand_image_tokens(enc, 9, 3, markers=(70, 71))
    assert out.input_ids == [1, 70, 9, 9, 9, 71, 5, 6]
    assert out.labels == [IGNORE_INDEX] * 6 + [5, 6]
    assert expand_image_tokens(enc, 9, 3).input_ids == [1, 9, 9, 9, 5, 6]  # off: as before


def test_model_tokenizer_and_data_with_markers(tiny_base_models, smoke_world):
    plain, _ = build_mllm(*tiny_base_models)
    model, processor = build_mllm(*tiny_base_models, image_start_end=True)
    tok = processor.tokenizer
    start, end = image_markers(tok)
    assert image_markers(build_mllm(*tiny_base_models)[1].tokenizer) is None
    assert model.get_input_embeddings().weight.shape[0] == plain.get_input_embeddings().weight.shape[0] + 2 == len(tok)
    config, _ = smoke_world
    records = readers.read_llava_json(study.data_path(config, "instruct_json"))[:3]
    ds = InstructDataset(records, study.data_path(config, "instruct_images"), tok, processor.image_processor,
                         "vicuna_v1", model.config.image_seq_length, 512)
    ids = ds[0]["input_ids"].tolist()
    image = [i for i, t in enumerate(ids) if t == model.config.image_token_index]
    assert ids[image[0] - 1] == start and ids[image[-1] + 1] == end and len(image) == model.config.image_seq_length
    prompt = "USER: <image>\nWhat is it? ASSISTANT:".replace("<image>", image_prompt_text(tok))
    assert prompt == f"USER: {IMAGE_START}<image>{IMAGE_END}\nWhat is it? ASSISTANT:"
    # the processor expands the image inside the markers, and the model generates from it
    from PIL import Image

    batch = processor(text=[prompt], images=[Image.new("RGB", (64, 64), "red")], return_tensors="pt")
    row = batch["input_ids"][0].tolist()
    assert row.count(model.config.image_token_index) == model.config.image_seq_length
    assert row[row.index(model.config.image_token_index) - 1] == start
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > batch["input_ids"].shape[1]


def test_markers_need_stage1_to_train_the_embeddings():
    config = validated(yaml.safe_load((REPO / "config.yaml").read_text()))
    config["connector"]["image_start_end"] = True
    with pytest.raises(study.ConfigError, match=r"connector\.image_start_end"):
        study.check_config(config)
    fixed = copy.deepcopy(config)
    fixed["stage1"]["trains"] = ["connector", "embeddings"]
    study.check_config(fixed)


@pytest.mark.long
def test_smoke_workflow_trains_and_evaluates_with_markers(smoke_run, tmp_path):
    """Stage 1 (with the embeddings), the finetunes and their Flickr30k evaluations run with the markers on, and
    the prompts the models were given hold them."""
    import json
    import shutil

    from conftest import snakemake

    shutil.copytree(smoke_run / "resources", tmp_path / "resources")
    config = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    config["results_root"] = "results/smoke_markers"
    config["connector"] = {**config.get("connector", {}), "image_start_end": True}
    config["stage1"]["trains"] = ["connector", "embeddings"]
    (tmp_path / "markers.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--configfile", str(tmp_path / "markers.yaml"), "--cores", "2",
                     "results/smoke_markers/selection/best_lr.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    stage1 = json.loads((tmp_path / "results/smoke_markers/pretrain/smoke-vicuna/metrics.json").read_text())
    assert stage1["tensors_changed"]["changed"] == stage1["tensors_changed"]["trainable"] == 3  # + embeddings
    chosen = json.loads((tmp_path / "results/smoke_markers/selection/best_lr.json").read_text())
    lr = chosen["selected"]["smoke-vicuna"]["layernorm"]["lr"]
    line = (tmp_path / f"results/smoke_markers/eval/smoke-vicuna/layernorm/{lr}/flickr30k/predictions.jsonl")
    first = json.loads(line.read_text().splitlines()[0])
    assert f"{IMAGE_START}<image>{IMAGE_END}" in first["prompt"]
