"""The image must reach the language model. Stage 1's alignment check (held-out caption loss with each caption's
own image vs with the images shuffled) passes on a tiny training whose captions name what the picture shows,
and fails — the job raises before writing its connector — when the image features are cut off on the way."""

import io
import json

import numpy as np
import pytest
import torch
import webdataset as wds
from conftest import training_config

from workflow_scripts.data.shards import ShardStream, held_out_samples
from workflow_scripts.toyworld import language as lang
from workflow_scripts.toyworld.scenes import render, sample_scenes
from workflow_scripts.train import alignment, pretrain_connector

pytestmark = pytest.mark.slow

TRAIN, HELD_OUT = 320, 48


def _caption(scene) -> str:
    """Only what the picture shows, in what even the smoke world's weak CLIP keeps (the colours, in reading
    order): nothing a text prior could guess."""
    return lang.join_list([s.colour for s in scene.shapes])


@pytest.fixture(scope="module")
def picture_shards(tmp_path_factory):
    """Two shards of (image, caption) pairs in img2dataset's layout; the last HELD_OUT are held out."""
    out = tmp_path_factory.mktemp("pictures")
    scenes = sample_scenes(7, "alignment_test", TRAIN + HELD_OUT, 0)
    half = len(scenes) // 2
    for n, part in enumerate((scenes[:half], scenes[half:])):
        with wds.TarWriter(str(out / f"{n:05d}.tar")) as sink:
            for s in part:
                buf = io.BytesIO()
                render(s, 64).save(buf, format="JPEG", quality=95)
                sink.write({"__key__": f"{s.scene_id:09d}", "jpg": buf.getvalue(), "txt": _caption(s).encode()})
        (out / f"{n:05d}_stats.json").write_text(json.dumps({"successes": len(part)}))
    return str(out)


def _stage1(config, models, shards, out, steps=80):
    config = training_config(config)
    config["stage1"].update(max_steps=steps, lr=3.0e-3, global_batch=16, per_device_batch=16,
                            trains=["connector", "norms", "attention", "mlp"],
                            alignment={"holdout": HELD_OUT, "min_gap": 0.05})
    llm, vision, _ = models
    pretrain_connector.main(["--llm", llm, "--vision", vision, "--shards", shards, "--config-json",
                             json.dumps(config), "--checkpoints", str(out / "ckpt"), "--connector-out",
                             str(out / "connector.safetensors"), "--metrics", str(out / "metrics.json")])
    return json.loads((out / "metrics.json").read_text())


def test_held_out_samples_are_never_trained_on(picture_shards):
    stream = ShardStream(picture_shards, holdout=HELD_OUT)
    trained = [s.key for s in stream]
    held = [s.key for s in held_out_samples(stream)]
    assert len(trained) == len(stream) == TRAIN and len(held) == HELD_OUT
    assert not set(trained) & set(held)
    assert held == sorted(held) and held[0] > trained[-1]  # the tail of the last shard, in key order


def test_alignment_check_passes_when_the_image_reaches_the_llm(smoke_world, trained_base_models, picture_shards,
                                                               tmp_path):
    metrics = _stage1(smoke_world[0], trained_base_models, picture_shards, tmp_path)
    check = metrics["alignment"]
    after, before = check["after_training"], check["before_training"]
    assert after["samples"] == before["samples"] == HELD_OUT
    assert after["relative_gap"] >= 0.05 and check["aligned"] is True
    assert after["loss_real_images"] < before["loss_real_images"]
    # stage1.trains named LLM groups: they are saved with the connector and are what stage 2 starts from
    from safetensors.torch import load_file

    from workflow_scripts.model.trained import build_trained

    saved = load_file(tmp_path / "connector.safetensors")
    norm = "model.language_model.layers.0.input_layernorm.weight"
    assert norm in saved and "model.multi_modal_projector.linear_1.weight" in saved
    assert not any("vision_tower" in n or "embed_tokens" in n or "linear_2" in n for n in saved)
    llm, vision, _ = trained_base_models
    model, _ = build_trained(llm, vision, smoke_world[0], str(tmp_path / "connector.safetensors"))
    assert torch.equal(dict(model.named_parameters())[norm], saved[norm])
    assert not torch.equal(saved[norm], torch.ones_like(saved[norm]))  # trained away from the base's init


def test_stage1_weights_with_a_vision_tensor_are_refused(tiny_base_models, tmp_path):
    from safetensors.torch import save_file

    from workflow_scripts.model.build import build_mllm
    from workflow_scripts.model.trained import load_connector

    model, _ = build_mllm(*tiny_base_models)
    params = dict(model.named_parameters())
    good = {n: params[n].detach().clone() for n in ("model.multi_modal_projector.linear_1.weight",
                                                     "model.multi_modal_projector.linear_1.bias")}
    vision = next(n for n in params if "vision_tower" in n)
    save_file({**good, vision: params[vision].detach().clone()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="not the model's connector or LLM"):
        load_connector(model, str(tmp_path / "bad.safetensors"), "linear")
    save_file({"model.multi_modal_projector.linear_1.bias": good["model.multi_modal_projector.linear_1.bias"]},
              str(tmp_path / "short.safetensors"))
    with pytest.raises(ValueError, match="lack the connector"):
        load_connector(model, str(tmp_path / "short.safetensors"), "linear")


def test_alignment_check_fails_when_the_image_is_cut_off(smoke_world, trained_base_models, picture_shards,
                                                         tmp_path, monkeypatch):
    """A vision path that delivers nothing (the connector's output zeroed): the captions cannot depend on the
    image, the job raises AlignmentError and writes no connector."""
    from transformers.models.llava import modeling_llava

    forward = modeling_llava.LlavaMultiModalProjector.forward
    monkeypatch.setattr(modeling_llava.LlavaMultiModalProjector, "forward",
                        lambda self, features: forward(self, features) * 0)
    with pytest.raises(alignment.AlignmentError, match="did not align the image to the text"):
        _stage1(smoke_world[0], trained_base_models, picture_shards, tmp_path)
    assert not (tmp_path / "connector.safetensors").exists()


def test_shuffled_images_rotate_so_no_caption_keeps_its_own():
    items = [{"input_ids": i, "pixel_values": f"img{i}"} for i in range(4)]
    assert [it["pixel_values"] for it in alignment.with_images_shuffled(items)] == ["img1", "img2", "img3", "img0"]
    assert [it["input_ids"] for it in alignment.with_images_shuffled(items)] == [0, 1, 2, 3]


@pytest.mark.parametrize("gap,min_gap,passes", [(0.10, 0.05, True), (0.05, 0.05, True), (0.04, 0.05, False),
                                                (-0.2, 0.05, False), (-0.2, None, True)])
def test_alignment_verdict(gap, min_gap, passes):
    after = {"samples": 8, "loss_real_images": 1.0, "loss_shuffled_images": 1.0, "relative_gap": gap}
    assert (alignment.verdict(after, min_gap) is None) is passes


def test_caption_loss_weights_every_caption_token_equally():
    """Two batches of 1 and 3 supervised tokens with per-token losses 1 and 2: the mean is (1 + 3*2) / 4."""
    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, labels, attention_mask, pixel_values):
            return type("Out", (), {"loss": torch.tensor(float(input_ids[0, 0]))})()

    def item(value, supervised):
        ids = torch.full((supervised + 1,), value)
        return {"input_ids": ids, "labels": ids.clone(), "pixel_values": torch.zeros(1)}

    from functools import partial

    from workflow_scripts.data.instruct import collate

    items = [item(1, 1), item(2, 3)]
    assert alignment.caption_loss(Fixed(), items, partial(collate, pad_token_id=0), batch_size=1) == \
        pytest.approx((1 + 3 * 2) / 4)
    assert np.isfinite(alignment.caption_loss(Fixed(), items, partial(collate, pad_token_id=0)))
