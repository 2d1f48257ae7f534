"""The computed efficiency table: real model shapes on the meta device, numbers checked by hand."""

import csv
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, load_config, subprocess_env
from transformers import LlamaConfig

from workflow_scripts.model import accounting

# LLaMA-2-7B + CLIP ViT-L/14 + linear connector, vocabulary 32000 + <image>:
NORMS_7B = (2 * 32 + 1) * 4096
CONNECTOR_7B = 1024 * 4096 + 4096
EMBED_HEAD_7B = 2 * 32001 * 4096


@pytest.fixture(scope="module")
def rows_7b():
    config = load_config("config.yaml")
    config["models"] = {"vicuna-7b": config["models"]["vicuna-7b"]}
    return {r["strategy"]: r for r in accounting.table(config)}


def test_layernorm_counts_by_hand(rows_7b):
    assert rows_7b["layernorm_simp"]["trainable_params"] == NORMS_7B
    assert rows_7b["layernorm"]["trainable_params"] == NORMS_7B + CONNECTOR_7B + EMBED_HEAD_7B
    attn_qv = 32 * 2 * 4096 * 4096
    assert rows_7b["attn_qv"]["trainable_params"] == attn_qv + CONNECTOR_7B + EMBED_HEAD_7B
    lora = 32 * 64 * (4 * (4096 + 4096) + 3 * (4096 + 11008))  # r * (in + out) per adapted linear
    assert rows_7b["lora"]["trainable_params"] == lora + CONNECTOR_7B + EMBED_HEAD_7B
    assert rows_7b["lora"]["total_params"] == rows_7b["finetune"]["total_params"] + lora


def test_shares_are_those_the_paper_reports(rows_7b):
    # Zhao et al. (MM-Vicuna-7B): LayerNorm 3.78 %, LoRA 5.92 %, attn QV 19.02 %, MLP 65.21 %, simp 0.004 %.
    paper = {"layernorm": 3.78, "lora": 5.92, "attn_qv": 19.02, "attn_mlp": 65.21, "layernorm_simp": 0.004}
    for strategy, pct in paper.items():
        assert rows_7b[strategy]["trainable_pct"] == pytest.approx(pct, abs=0.01), strategy


def test_memory_estimate_orders_strategies(rows_7b):
    total = {s: r["total_gib"] for s, r in rows_7b.items()}
    assert total["layernorm_simp"] < total["layernorm"] < total["lora"] < total["attn_qv"] < total["finetune"]
    # bf16 weights of the whole 7B MLLM replicated on every GPU:
    weights = 2 * rows_7b["finetune"]["total_params"] / 2**30
    assert rows_7b["finetune"]["weights_gib"] == pytest.approx(weights, abs=0.01)
    # AdamW: 12 bytes per trainable parameter, split over 4 GPUs by ZeRO-2.
    opt = 12 * rows_7b["layernorm"]["trainable_params"] / 4 / 2**30
    assert rows_7b["layernorm"]["optimizer_gib"] == pytest.approx(opt, abs=0.01)


def test_rule_builds_table_for_paper_config_without_weights(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["data_root"] = str(tmp_path / "none")
    (tmp_path / "paper.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                           str(tmp_path), "--configfile", str(tmp_path / "paper.yaml"), "--cores", "1",
                           "results/efficiency/param_table.csv"], capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "results/efficiency/param_table.csv").open()))
    assert len(rows) == 6 * 6 and set(accounting.COLUMNS) == set(rows[0])


def test_memory_estimate_with_and_without_checkpointing_by_hand():
    text = LlamaConfig(hidden_size=8, num_hidden_layers=3, num_attention_heads=2, vocab_size=10)
    report = {"total_params": 1000, "trainable_params": 100}
    b, s = 2, 4
    gib = 2**30
    off = accounting.memory_estimate(report, text, b, s, gpus=1, zero_stage=0, checkpointing=False)
    on = accounting.memory_estimate(report, text, b, s, gpus=1, zero_stage=0, checkpointing=True)
    logits = 4 * b * s * 10
    # without: 34 bytes per token, layer and hidden unit in every layer (fused attention stores no s x s scores)
    assert off["activations_gib"] == pytest.approx(round((34 * b * s * 8 * 3 + logits) / gib, 2))
    # with: each layer's input (bf16) + one layer recomputed in full, s x s scores included
    recomputed = b * s * 8 * (34 + 5 * 2 * s / 8)
    assert on["activations_gib"] == pytest.approx(round((2 * b * s * 8 * 3 + recomputed + logits) / gib, 2))
    assert off["weights_gib"] == on["weights_gib"] == round(2 * 1000 / gib, 2)


def test_paper_defaults_turn_checkpointing_off_only_where_it_fits():
    """config.yaml's stage2.by_cell: every cell fits an 80 GB GPU with >= 10 % to spare, and at the configured
    16 per device without checkpointing none would have fitted."""
    config = load_config("config.yaml")
    rows = accounting.table(config)
    off = [r for r in rows if not r["gradient_checkpointing"]]
    assert off and {r["strategy"] for r in off} == {"lora", "attn_qv", "attn_mlp", "layernorm", "layernorm_simp"}
    # Every cell of the paper's grid fits, those without checkpointing and the 13B ones on ZeRO-3 included.
    for r in rows:
        assert r["total_gib"] <= 0.9 * 80e9 / 2**30 and r["fits_80gb"], r
    assert {(r["llm"], r["strategy"]) for r in rows if r["zero_stage"] == 3} == {
        (m, s) for m in ("vicuna-13b", "llama2-13b", "llama2-13b-chat") for s in ("finetune", "attn_mlp")}
    config["stage2"]["by_cell"] = {size: {s: {"gradient_checkpointing": False} for s in config["strategies"]}
                                   for size in ("7b", "13b")}
    assert not any(r["fits_80gb"] for r in accounting.table(config))


def test_paper_stage1_fits_without_checkpointing_at_its_bound():
    """config.yaml's stage 1 (8 per device x 512 tokens, no checkpointing) fits 80 GB for every LLM with >= 10 %
    to spare; LLaVA's 32 x 2048 would not have fitted without checkpointing."""
    config = load_config("config.yaml")
    rows = accounting.stage1_memory(config)
    assert len(rows) == 6 and not any(r["gradient_checkpointing"] for r in rows)
    assert all(r["fits_80gb"] and r["total_gib"] <= 0.9 * 80e9 / 2**30 for r in rows), rows
    # only the connector trains: its gradients and AdamW state are a rounding error next to the frozen weights
    assert all(r["optimizer_gib"] < 0.1 for r in rows)
    config["stage1"].update(per_device_batch=32, model_max_length=2048)
    assert not any(r["fits_80gb"] for r in accounting.stage1_memory(config))
