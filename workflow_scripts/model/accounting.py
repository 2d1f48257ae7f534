"""The paper's efficiency table, computed: per LLM x strategy, trainable parameters and their share of the
whole MLLM (vision tower included), and an analytic per-GPU memory estimate. Models are built on the
``meta`` device from config.json files alone — no weights, no download.

Entry: ``python -m workflow_scripts.model.accounting --config-json JSON --out param_table.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from workflow_scripts import study
from workflow_scripts.io import config_to_csv_main
from workflow_scripts.model.build import CONNECTORS, image_token_count
from workflow_scripts.model.strategies import apply_strategy, parameter_report

ARCH = Path(__file__).parent / "arch"
GIB = 2**30
GPU_GIB = 80 * 10**9 / GIB  # an 80 GB GPU (A100-80G, H100), the paper's
COLUMNS = ["llm", "strategy", "trainable_params", "total_params", "trainable_pct", "gpus", "per_device_batch",
           "gradient_checkpointing", "zero_stage", "seq_len", "weights_gib", "grads_gib", "optimizer_gib",
           "activations_gib", "total_gib", "fits_80gb"]


def _json(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def text_config_for(config: dict, llm: str) -> LlamaConfig:
    """The LLM's config.json: from its local folder, else the shipped one for its size class."""
    model = config["models"][llm]
    local = Path(study.model_dir(config, model)) / "config.json"
    if (model.get("revision") or study.is_local_model(config, model["path"])) and local.exists():
        return LlamaConfig(**_json(local))
    shipped = ARCH / f"llama2-{model['size']}.json"
    if not shipped.exists():
        raise FileNotFoundError(f"models.{llm}: no local config.json and no shipped {shipped.name}")
    return LlamaConfig(**_json(shipped))


def vision_config_for(config: dict) -> CLIPVisionConfig:
    path = config["vision"]["path"]
    local = Path(study.model_dir(config, config["vision"])) / "config.json"
    if (config["vision"].get("revision") or study.is_local_model(config, path)) and local.exists():
        raw = json.loads(local.read_text())
        return CLIPVisionConfig(**raw.get("vision_config", raw))
    return CLIPVisionConfig(**_json(ARCH / "clip-vit-large-patch14.json"))


def mllm_config(text: LlamaConfig, vision: CLIPVisionConfig, connector: str, select: str = "default",
                added_tokens: int = 1) -> LlavaConfig:
    """The Llava config of an LLM + CLIP shape as the study assembles it; the vocabulary grows by ``added_tokens``
    (<image>, and <im_start>/<im_end> with connector.image_start_end), the last added being <image>."""
    text.vocab_size += added_tokens
    text.tie_word_embeddings = False
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=text.vocab_size - 1,
                       image_seq_length=image_token_count(vision, select), projector_hidden_act=CONNECTORS[connector],
                       tie_word_embeddings=False)


def meta_mllm(text: LlamaConfig, vision: CLIPVisionConfig, connector: str, select: str = "default",
              added_tokens: int = 1):
    """A LlavaForConditionalGeneration without storage (see ``mllm_config``)."""
    with torch.device("meta"):
        return LlavaForConditionalGeneration(mllm_config(text, vision, connector, select, added_tokens))


def memory_estimate(report: dict, text: LlamaConfig, batch: int, seq: int, gpus: int, zero_stage: int,
                    checkpointing: bool = True) -> dict:
    """Per-GPU GiB for bf16 training with AdamW (fp32 master weights + 2 moments).

    Weights are replicated; ZeRO-2/3 partition gradients and optimizer states over the GPUs (ZeRO-3 also the
    weights). Activations with gradient checkpointing: the checkpointed input of every layer (2·b·s·h bytes), one
    layer recomputed in full (Korthikanti et al.: b·s·h·(34 + 5·a·s/h) bytes) and the fp32 logits (4·b·s·V).
    Without it every layer keeps its activations, b·s·h·34 bytes each: the s² attention term is not stored, as
    PyTorch's SDPA (the model's attention on GPU) runs fused kernels. Frozen weights need fewer stored inputs; we
    keep the bound that holds for all six strategies.
    """
    g = max(gpus, 1)
    shard = g if zero_stage >= 2 else 1
    weights = 2 * report["total_params"] / (g if zero_stage == 3 else 1)
    grads = 2 * report["trainable_params"] / shard
    optimizer = 12 * report["trainable_params"] / shard
    b, s, h, a = batch, seq, text.hidden_size, text.num_attention_heads
    if checkpointing:
        layers = 2 * b * s * h * text.num_hidden_layers + b * s * h * (34 + 5 * a * s / h)
    else:
        layers = 34 * b * s * h * text.num_hidden_layers
    activations = layers + 4 * b * s * text.vocab_size
    parts = {"weights_gib": weights, "grads_gib": grads, "optimizer_gib": optimizer, "activations_gib": activations}
    out = {k: round(v / GIB, 2) for k, v in parts.items()}
    out["total_gib"] = round(sum(parts.values()) / GIB, 2)
    return out


def table(config: dict) -> list[dict]:
    rows = []
    connector = config.get("connector", {}).get("type", "linear")
    for llm in config["models"]:
        for strategy in config["strategies"]:
            stage2 = study.stage2_for(config, llm, strategy)
            gpus = study.finetune_gpus(config, llm, strategy)
            batch, _ = study.batch_split(stage2["global_batch"], stage2["per_device_batch"], gpus)
            text = text_config_for(config, llm)
            added = 3 if config.get("connector", {}).get("image_start_end") else 1
            model = meta_mllm(text, vision_config_for(config), connector,
                              config["vision"].get("select_strategy", "default"), added)
            with torch.device("meta"):
                model = apply_strategy(model, strategy, connector, config.get("lora"))
            report = parameter_report(model, connector)
            zero_stage = stage2.get("zero_stage", config.get("deepspeed", {}).get("zero_stage", 2))
            memory = memory_estimate(report, text, batch, stage2["model_max_length"], gpus, zero_stage,
                                     stage2.get("gradient_checkpointing", True))
            rows.append({"llm": llm, "strategy": strategy, "trainable_params": report["trainable_params"],
                         "total_params": report["total_params"], "trainable_pct": round(report["trainable_pct"], 4),
                         "gpus": gpus, "per_device_batch": batch,
                         "gradient_checkpointing": stage2.get("gradient_checkpointing", True),
                         "zero_stage": zero_stage, "seq_len": stage2["model_max_length"], **memory,
                         "fits_80gb": memory["total_gib"] <= GPU_GIB})
    return rows


def stage1_memory(config: dict) -> list[dict]:
    """Per LLM, the analytic per-GPU memory of stage 1 (connector training, the LLM frozen but backpropagated
    through) at the configured micro-batch, sequence bound and checkpointing (``memory_estimate``)."""
    stage, connector = config["stage1"], config.get("connector", {}).get("type", "linear")
    gpus = config.get("gpus", {}).get("pretrain", 1)
    batch, _ = study.batch_split(stage["global_batch"], stage["per_device_batch"], gpus)
    rows = []
    for llm in config["models"]:
        text = text_config_for(config, llm)
        model = meta_mllm(text, vision_config_for(config), connector, config["vision"].get("select_strategy",
                                                                                           "default"))
        report = parameter_report(model, connector)
        trainable = sum(p.numel() for n, p in model.named_parameters() if "multi_modal_projector" in n)
        memory = memory_estimate({**report, "trainable_params": trainable}, text, batch, stage["model_max_length"],
                                 gpus, config.get("deepspeed", {}).get("zero_stage", 2),
                                 stage["gradient_checkpointing"])
        rows.append({"llm": llm, "gpus": gpus, "per_device_batch": batch,
                     "gradient_checkpointing": stage["gradient_checkpointing"], "seq_len": stage["model_max_length"],
                     **memory, "fits_80gb": memory["total_gib"] <= GPU_GIB})
    return rows


def main(argv=None) -> None:
    print(config_to_csv_main(argv, __doc__, COLUMNS, table))


if __name__ == "__main__":
    main()
