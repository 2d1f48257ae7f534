"""The study's axes: LR text round trip, batch split, cells, data paths."""

import pytest
from conftest import REPO, load_config

from workflow_scripts import study


def test_lr_text_is_canonical_and_maps_back_through_config():
    config = load_config("config.yaml")
    assert [study.lr_text(x) for x in config["learning_rates"][:3]] == ["0.002", "0.001", "0.0005"]
    assert study.lr_text(1.0e-7) == "1e-07"
    assert study.lr_from_text(config, "2e-05") == 2.0e-5
    with pytest.raises(ValueError, match="not in the config's learning_rates"):
        study.lr_from_text(config, "3e-05")


@pytest.mark.parametrize("global_batch, per_device, gpus, expected", [
    (128, 16, 4, (16, 2)),   # 16 x 2 x 4 = 128
    (128, 32, 4, (32, 1)),
    (128, 16, 1, (16, 8)),
    (128, 48, 4, (32, 1)),   # 48 does not divide 32 per GPU: the largest divisor that fits
    (32, 32, 0, (32, 1)),    # CPU: one device
    (96, 16, 8, (12, 1)),    # 12 per GPU
])
def test_batch_split_keeps_global_batch(global_batch, per_device, gpus, expected):
    micro, accum = study.batch_split(global_batch, per_device, gpus)
    assert (micro, accum) == expected
    assert micro * accum * max(gpus, 1) == global_batch


def test_batch_split_rejects_indivisible_gpu_count():
    with pytest.raises(ValueError, match="not divisible by 3 GPUs"):
        study.batch_split(128, 16, 3)


def test_cells_and_paths():
    config = load_config("config/demo.yaml")
    cells = study.finetune_cells(config)
    assert len(cells) == 1 * 6 * 2
    assert cells[0] == study.Cell("toy-vicuna", "finetune", "0.003")  # the first LR of demo.yaml
    assert study.data_path(config, "instruct_json") == "resources/toy/data/llava/llava_instruct_80k.json"
    assert study.relative_data_paths(config)["mme_root"] == "MME_Benchmark_release_version"
    assert study.is_local_model(config, "resources/toy/models/llm")
    assert not study.is_local_model(load_config("config.yaml"), "lmsys/vicuna-7b-v1.5")


def test_finetune_gpus_by_size_and_strategy():
    config = load_config("config.yaml")
    assert study.finetune_gpus(config, "vicuna-7b", "layernorm") == 4
    config["gpus"]["finetune"] = {"7b": {"default": 4, "layernorm": 1}, "13b": 2}
    assert study.finetune_gpus(config, "vicuna-7b", "layernorm") == 1
    assert study.finetune_gpus(config, "vicuna-7b", "lora") == 4
    assert study.finetune_gpus(config, "vicuna-13b", "layernorm") == 2
    config["gpus"]["finetune"] = {"7b": {"layernorm": 1}}
    assert study.finetune_gpus(config, "vicuna-7b", "lora") == 1  # no default: one GPU


def test_stage2_for_applies_by_cell_to_the_named_cells_only():
    config = load_config("config.yaml")
    stage = study.stage2_for(config, "vicuna-13b", "layernorm")
    assert (stage["gradient_checkpointing"], stage["per_device_batch"]) == (False, 2)
    assert study.stage2_for(config, "vicuna-7b", "layernorm")["per_device_batch"] == 4
    # Not named: exactly stage2 as configured, without the by_cell table (a finetune's params, and so its
    # checkpoints, stay those of before the key existed).
    plain = study.stage2_for(config, "vicuna-7b", "finetune")
    assert plain == {k: v for k, v in config["stage2"].items() if k != "by_cell"}
    assert plain["gradient_checkpointing"] is True and plain["per_device_batch"] == 16
    # The global batch is the same for every cell: only its split into micro-batches changes.
    assert {study.stage2_for(config, m, s)["global_batch"] for m in config["models"]
            for s in config["strategies"]} == {128}
    assert study.batch_split(128, stage["per_device_batch"], study.finetune_gpus(config, "vicuna-13b",
                                                                                  "layernorm")) == (2, 16)
    # A 13B full finetune: its own ZeRO stage, checkpointing kept.
    big = study.stage2_for(config, "llama2-13b-chat", "finetune")
    assert (big["zero_stage"], big["per_device_batch"], big["gradient_checkpointing"]) == (3, 8, True)


def test_shipped_models_resolve_from_the_repository_and_toy_made_ones_stay_as_configured(tmp_path, monkeypatch):
    """From another working directory (``--directory``) the demo reads the repository's toy_models/; a model the
    toy rules make is never swapped for a copy lying in the repository."""
    monkeypatch.chdir(tmp_path)
    demo = load_config("config/demo.yaml")
    study.resolve_shipped_models(demo, str(REPO))
    assert demo["models"]["toy-vicuna"]["path"] == str(REPO / "toy_models" / "llm")
    assert demo["vision"]["path"] == str(REPO / "toy_models" / "vision")
    smoke = load_config("config/smoke.yaml")
    configured = [smoke["vision"]["path"]] + [m["path"] for m in smoke["models"].values()]
    study.resolve_shipped_models(smoke, str(REPO))
    assert [smoke["vision"]["path"]] + [m["path"] for m in smoke["models"].values()] == configured
