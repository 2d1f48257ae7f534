"""Stage 1 and stage 2 end to end on the smoke world with a tiny MLLM: loss goes down, only the strategy's
parameters change, the export loads with stock transformers in a fresh process, resume is exact, NaN stops."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import subprocess_env, training_config
from safetensors.torch import load_file
from transformers import CLIPVisionModel, LlavaForConditionalGeneration

from workflow_scripts import study
from workflow_scripts.train import finetune, merge, pretrain_connector
from workflow_scripts.train.loop import COMPLETE, NonFiniteLossError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stage1(smoke_world, smoke_shards, trained_base_models, tmp_path_factory):
    config, _ = smoke_world
    config = training_config(config)
    config["stage1"].update(max_steps=20, lr=2.0e-3, global_batch=8, per_device_batch=8)
    out = tmp_path_factory.mktemp("stage1")
    llm, vision, _ = trained_base_models
    pretrain_connector.main(["--llm", llm, "--vision", vision, "--shards", smoke_shards, "--config-json",
                             json.dumps(config), "--checkpoints", str(out / "ckpt"), "--connector-out",
                             str(out / "connector.safetensors"), "--metrics", str(out / "metrics.json")])
    return out


def test_stage1_trains_only_the_connector_and_learns(stage1):
    metrics = json.loads((stage1 / "metrics.json").read_text())
    assert metrics["steps"] == 20
    # 20 steps x 8 samples read the smoke shards' ~36 training samples several times: Trainer told the stream
    # each epoch (its order follows it), rather than replaying epoch 0's order
    order = metrics["data_order"]
    assert order["shuffled"] is True and len(order["epochs_read"]) >= 3
    assert order["epochs_read"] == list(range(len(order["epochs_read"])))
    assert metrics["loss_last_10pct_mean"] < metrics["loss_first_10pct_mean"]
    assert metrics["parameters"]["trainable_params"] == metrics["parameters"]["groups"]["connector"]["total"]
    weights = load_file(stage1 / "connector.safetensors")
    assert set(weights) == {"model.multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_1.bias"}


def _finetune_args(config, trained_base_models, stage1, out: Path, strategy="layernorm", lr="0.01", extra=()):
    llm, vision, _ = trained_base_models
    return ["--llm", llm, "--vision", vision, "--connector", str(stage1 / "connector.safetensors"),
            "--instruct-json", study.data_path(config, "instruct_json"),
            "--images", study.data_path(config, "instruct_images"), "--template", "vicuna_v1",
            "--strategy", strategy, "--lr", lr, "--config-json", json.dumps(config),
            "--checkpoints", str(out / "ckpt"), "--delta",
            str(out / "delta.safetensors"), "--efficiency", str(out / "efficiency.json"), *extra]


def _merge(config, trained_base_models, stage1, out: Path, strategy="layernorm"):
    """The export_model rule's step: the merged folder rebuilt from base weights + connector + delta."""
    llm, vision, _ = trained_base_models
    merge.main(["--llm", llm, "--vision", vision, "--connector", str(stage1 / "connector.safetensors"),
                "--strategy", strategy, "--delta", str(out / "delta.safetensors"), "--config-json",
                json.dumps(config), "--export", str(out / "export")])


@pytest.fixture(scope="module")
def stage2(smoke_world, trained_base_models, stage1, tmp_path_factory):
    config = training_config(smoke_world[0], max_steps=10, global_batch=8, per_device_batch=8, save_steps=5)
    config["learning_rates"] = [1.0e-2, 3.0e-3]
    out = tmp_path_factory.mktemp("stage2")
    finetune.main(_finetune_args(config, trained_base_models, stage1, out))
    _merge(config, trained_base_models, stage1, out)
    return config, out


def test_stage2_layernorm_learns_and_exports_its_delta(stage2, trained_base_models):
    _, out = stage2
    eff = json.loads((out / "efficiency.json").read_text())
    assert eff["steps"] == 10 and eff["loss_last_10pct_mean"] < eff["loss_first_10pct_mean"]
    assert eff["tokens_per_s"] > 0 and eff["peak_memory_bytes"] > 0 and eff["step_time_s"] > 0
    delta = load_file(out / "delta.safetensors")
    norms = {n for n in delta if "layernorm" in n or n.endswith("language_model.norm.weight")}
    assert len(norms) == 2 * 2 + 1
    assert set(delta) - norms == {"model.multi_modal_projector.linear_1.weight",
                                  "model.multi_modal_projector.linear_1.bias",
                                  "model.language_model.embed_tokens.weight", "lm_head.weight"}
    assert eff["parameters"]["trainable_params"] == sum(t.numel() for t in delta.values())
    assert eff["tensors_changed"] == {"changed": len(delta), "trainable": len(delta), "unchanged": []}
    assert eff["gradient_checkpointing"] is False  # as the smoke config asks
    # The vision tower never changes.
    base = CLIPVisionModel.from_pretrained(trained_base_models[1]).state_dict()
    exported = LlavaForConditionalGeneration.from_pretrained(out / "export" / "model").model.vision_tower.state_dict()
    assert set(base) == set(exported)
    for name, value in base.items():
        assert torch.equal(exported[name], value), name


def test_export_loads_in_a_fresh_process_and_generates(stage2):
    _, out = stage2
    code = (
        "import sys; from PIL import Image;"
        "from transformers import AutoProcessor, LlavaForConditionalGeneration;"
        "m = LlavaForConditionalGeneration.from_pretrained(sys.argv[1]);"
        "p = AutoProcessor.from_pretrained(sys.argv[1]);"
        "x = p(images=[Image.new('RGB', (64, 64), 'red')], text=['USER: <image>\\nWhat is it? ASSISTANT:'],"
        " return_tensors='pt');"
        "o = m.generate(**x, max_new_tokens=5, do_sample=False); print('NEW', o.shape[1] - x['input_ids'].shape[1])")
    proc = subprocess.run([sys.executable, "-c", code, str(out / "export" / "model")], capture_output=True,
                          text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.split("NEW")[-1]) >= 1


def test_a_cell_whose_updates_round_away_is_shown_as_unchanged(stage2, trained_base_models, stage1, tmp_path):
    """At an LR far below the weights' float spacing the norms (values near 1) cannot move: the cell records
    that they did not, instead of looking like a trained result."""
    config = training_config(stage2[0], max_steps=2)
    config["learning_rates"] = [1.0e-12]
    finetune.main(_finetune_args(config, trained_base_models, stage1, tmp_path, lr="1e-12"))
    changed = json.loads((tmp_path / "efficiency.json").read_text())["tensors_changed"]
    assert changed["trainable"] == 9 and changed["changed"] < changed["trainable"]
    assert "model.language_model.norm.weight" in changed["unchanged"]


def test_stage1_honours_gradient_checkpointing(smoke_world, smoke_shards, trained_base_models, stage1, tmp_path):
    """gradient_checkpointing from the config reaches the model stage 1 trains, and recomputing activations
    trains the same connector."""
    llm, vision, _ = trained_base_models
    config = training_config(smoke_world[0])
    config["stage1"].update(max_steps=20, lr=2.0e-3, global_batch=8, per_device_batch=8, gradient_checkpointing=True)
    pretrain_connector.main(["--llm", llm, "--vision", vision, "--shards", smoke_shards, "--config-json",
                             json.dumps(config), "--checkpoints", str(tmp_path / "ckpt"), "--connector-out",
                             str(tmp_path / "connector.safetensors"), "--metrics", str(tmp_path / "metrics.json")])
    on = json.loads((tmp_path / "metrics.json").read_text())
    off = json.loads((stage1 / "metrics.json").read_text())
    assert on["gradient_checkpointing"] is True and off["gradient_checkpointing"] is False
    assert on["tensors_changed"]["changed"] == on["tensors_changed"]["trainable"] == 2
    a, b = load_file(tmp_path / "connector.safetensors"), load_file(stage1 / "connector.safetensors")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5), name


def test_invalid_lr_is_refused(stage2, trained_base_models, stage1, tmp_path):
    """The rule maps a path's LR text back through the config's grid; the script refuses a non-positive value."""
    config, _ = stage2
    with pytest.raises(ValueError, match="must be a positive number"):
        finetune.main(_finetune_args(config, trained_base_models, stage1, tmp_path, lr="-0.5"))


def test_nan_loss_stops_without_outputs(stage2, trained_base_models, stage1, tmp_path):
    config, _ = stage2
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        finetune.main(_finetune_args(config, trained_base_models, stage1, tmp_path,
                                     extra=("--inject-nan-at-step", "3")))
    assert not any((tmp_path / n).exists() for n in ("delta.safetensors", "export", "efficiency.json"))


def test_killed_finetune_resumes_to_identical_weights(stage2, trained_base_models, stage1, tmp_path):
    """SIGKILL after the first complete checkpoint, rerun: it resumes and ends where the uninterrupted run did."""
    config, reference = stage2
    args = _finetune_args(config, trained_base_models, stage1, tmp_path, extra=("--threads", "1"))
    cmd = [sys.executable, "-m", "workflow_scripts.train.finetune", *args]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    marker = tmp_path / "ckpt" / "checkpoint-5" / COMPLETE
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists() and proc.poll() is None, "the run ended before it could be killed mid-way"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "delta.safetensors").exists()
    finetune.main(args)
    eff = json.loads((tmp_path / "efficiency.json").read_text())
    assert eff["resumed_from"].endswith("checkpoint-5") and eff["steps_this_run"] == 5
    resumed, uninterrupted = load_file(tmp_path / "delta.safetensors"), load_file(reference / "delta.safetensors")
    assert set(resumed) == set(uninterrupted)
    for name in resumed:
        assert torch.allclose(resumed[name], uninterrupted[name], atol=1e-6), name


def deepspeed_env(port_base: int) -> dict:
    """What the launcher would set for a single CPU process (gloo), plus a cache for DeepSpeed's JIT ops."""
    env = subprocess_env()
    env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port_base + os.getpid() % 1000))
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "torch_extensions"))
    return env


def run_deepspeed_finetune(config, zero_stage, max_steps, port_base, trained_base_models, stage1, out,
                           fail_at_step=None):
    """finetune.py in a subprocess under DeepSpeed ZeRO-``zero_stage``; returns its efficiency.json (None when
    ``fail_at_step`` interrupts it: a non-finite loss injected there stops it as a crash would)."""
    config = json.loads(json.dumps(config))
    config["deepspeed"]["zero_stage"] = zero_stage
    config["stage2"].update(max_steps=max_steps, save_steps=2)
    extra = ("--threads", "2") + (("--inject-nan-at-step", str(fail_at_step)) if fail_at_step else ())
    args = _finetune_args(config, trained_base_models, stage1, out, extra=extra)
    proc = subprocess.run([sys.executable, "-m", "workflow_scripts.train.finetune", *args],
                          env=deepspeed_env(port_base), capture_output=True, text=True, timeout=600)
    if fail_at_step:
        assert proc.returncode != 0 and "NonFiniteLossError" in proc.stderr, proc.stderr[-3000:]
        return None
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "efficiency.json").read_text())


def test_deepspeed_zero2_on_cpu_trains_and_resumes(stage2, trained_base_models, stage1, tmp_path):
    """DeepSpeed ZeRO-2 through HF Trainer on CPU (gloo), one process with the launcher's variables set."""
    config, _ = stage2
    # A 6-step run interrupted at step 5 leaves its complete checkpoint-4; the same run resumes from it.
    run_deepspeed_finetune(config, 2, 6, 29500, trained_base_models, stage1, tmp_path, fail_at_step=5)
    assert (tmp_path / "ckpt" / "checkpoint-4" / "global_step4").is_dir()  # DeepSpeed wrote its own checkpoint
    second = run_deepspeed_finetune(config, 2, 6, 29500, trained_base_models, stage1, tmp_path)
    assert second["resumed_from"].endswith("checkpoint-4") and second["steps_this_run"] == 2
    assert second["steps"] == 6 and not (tmp_path / "ckpt").exists()  # finished: nothing left to resume


def test_stage1_resumes_from_its_checkpoint_to_identical_connector(smoke_world, smoke_shards, trained_base_models,
                                                                  tmp_path):
    """Stage 1 streams shards (an iterable dataset): a resumed run skips what was trained and ends identical."""
    llm, vision, _ = trained_base_models
    config = training_config(smoke_world[0], save_steps=2)
    config["stage1"].update(lr=2.0e-3, global_batch=4, per_device_batch=4)

    config["stage1"].update(save_steps=2, max_steps=6)

    def run(out, *extra):
        pretrain_connector.main(["--llm", llm, "--vision", vision, "--shards", smoke_shards, "--config-json",
                                 json.dumps(config), "--checkpoints", str(out / "ckpt"), "--connector-out",
                                 str(out / "connector.safetensors"), "--metrics", str(out / "metrics.json"), *extra])
        return json.loads((out / "metrics.json").read_text())

    run(tmp_path / "straight")
    # The same run interrupted at step 5 (as a crash would) leaves its complete checkpoint-4 and resumes from it.
    with pytest.raises(NonFiniteLossError):
        run(tmp_path / "resumed", "--inject-nan-at-step", "5")
    assert (tmp_path / "resumed" / "ckpt" / "checkpoint-4" / COMPLETE).exists()
    again = run(tmp_path / "resumed")
    assert again["resumed_from"].endswith("checkpoint-4") and again["steps_this_run"] == 2
    a = load_file(tmp_path / "straight" / "connector.safetensors")
    b = load_file(tmp_path / "resumed" / "connector.safetensors")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


def test_deepspeed_zero3_on_cpu_exports_gathered_weights(stage2, trained_base_models, stage1, tmp_path):
    """Under ZeRO-3 parameters are partitioned; the export must hold the gathered, trained values."""
    config, _ = stage2
    run_deepspeed_finetune(config, 3, 2, 28500, trained_base_models, stage1, tmp_path)
    _merge(config, trained_base_models, stage1, tmp_path)
    delta = load_file(tmp_path / "delta.safetensors")
    exported = dict(LlavaForConditionalGeneration.from_pretrained(tmp_path / "export" / "model").named_parameters())
    assert delta and all(torch.equal(exported[k], v) for k, v in delta.items())
    connector = load_file(stage1 / "connector.safetensors")
    assert not torch.equal(exported["model.multi_modal_projector.linear_1.weight"],
                           connector["model.multi_modal_projector.linear_1.weight"])  # loaded, then trained


def test_lora_exports_adapter_and_merged_model(stage2, trained_base_models, stage1, tmp_path):
    config, _ = stage2
    config = json.loads(json.dumps(config))
    config["stage2"].update(max_steps=3)
    config["lora"] = {"r": 4, "alpha": 8, "dropout": 0.0}
    finetune.main(_finetune_args(config, trained_base_models, stage1, tmp_path, strategy="lora"))
    assert not (tmp_path / "export").exists()  # training keeps the delta; the folder is rebuilt from it
    _merge(config, trained_base_models, stage1, tmp_path, strategy="lora")
    eff = json.loads((tmp_path / "efficiency.json").read_text())
    delta = load_file(tmp_path / "delta.safetensors")
    assert eff["parameters"]["trainable_params"] == sum(t.numel() for t in delta.values())
    assert eff["parameters"]["groups"]["lora"]["trainable"] > 0
    adapter = tmp_path / "export" / "adapter"
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "non_lora_trainables.safetensors").exists()
    merged = dict(LlavaForConditionalGeneration.from_pretrained(tmp_path / "export" / "model").named_parameters())
    assert not any("lora_" in n for n in merged)
    assert torch.equal(merged["lm_head.weight"], delta["lm_head.weight"])
    # Merged q_proj = base + (alpha / r) * B @ A, by hand from the base checkpoint and the delta.
    base = load_file(Path(trained_base_models[0]) / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    prefix = "model.language_model.layers.0.self_attn.q_proj"
    a, b = delta[f"{prefix}.lora_A.default.weight"], delta[f"{prefix}.lora_B.default.weight"]
    assert torch.allclose(merged[f"{prefix}.weight"], base + (8 / 4) * b @ a, atol=1e-5)
    assert not torch.allclose(b, torch.zeros_like(b))  # B starts at zero: the adapter did train
