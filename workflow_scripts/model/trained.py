"""A trained model rebuilt from what defines it: base LLM + CLIP, the stage-1 connector and a stage-2 cell's
trainable delta. Training, merging and evaluation all load through here, so a model evaluated in memory is the
model an export folder holds. Under ZeRO-3 partitioned parameters are gathered first.
"""

from __future__ import annotations

import contextlib

import torch
from safetensors.torch import load_file

from workflow_scripts.model.build import build_mllm
from workflow_scripts.model.strategies import apply_strategy, base_name, group_of, is_identity_connector_layer


def _gathered(params):
    """Context in which ZeRO-3 partitioned parameters hold their full values (no-op otherwise)."""
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    if not partitioned:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0)


def connector_names(model, connector: str) -> list[str]:
    return [n for n, _ in model.named_parameters()
            if group_of(n) == "connector" and not is_identity_connector_layer(n, connector)]


def load_connector(model, path: str, connector: str) -> None:
    """Load stage-1 connector weights; under ZeRO-3 the parameters are gathered, written, re-partitioned."""
    weights = load_file(path)
    params = dict(model.named_parameters())
    names = connector_names(model, connector)
    wanted = {base_name(n) for n in names}
    if set(weights) != wanted:
        raise ValueError(f"{path}: connector weights {sorted(weights)} do not match the model's {sorted(wanted)}")
    with _gathered([params[n] for n in names]), torch.no_grad():
        for n in names:
            params[n].copy_(weights[base_name(n)].to(params[n].dtype))


def load_delta(model, path: str) -> None:
    """Put a saved trainable delta back into a model prepared with the same strategy; the names must match the
    model's trainable parameters exactly (a delta of another strategy or model is refused)."""
    weights = load_file(path)
    params = {base_name(n): p for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != set(params):
        extra, missing = sorted(set(weights) - set(params)), sorted(set(params) - set(weights))
        raise ValueError(f"{path}: delta does not fit the model's trainable parameters "
                         f"(unexpected {extra[:3]}..., missing {missing[:3]}...)")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name].dtype))


def build_trained(llm: str, vision: str, config: dict, connector_path: str, strategy: str | None = None,
                  delta: str | None = None, dtype=torch.float32, merge_lora: bool = True):
    """(model, processor): base models + stage-1 connector (+ a cell's strategy and delta). ``config`` holds the
    model keys (vision, connector, lora, seed, allow_pickle_checkpoints). LoRA adapters are merged into the
    weights unless ``merge_lora`` is False (an export keeps the adapter too)."""
    connector = config.get("connector", {}).get("type", "linear")
    vision_cfg = config["vision"]
    model, processor = build_mllm(llm, vision, connector, vision_cfg.get("feature_layer", -2),
                                  vision_cfg.get("select_strategy", "default"), seed=config.get("seed", 0),
                                  dtype=dtype, allow_pickle=config.get("allow_pickle_checkpoints", False))
    load_connector(model, connector_path, connector)
    if strategy is not None:
        model = apply_strategy(model, strategy, connector, config.get("lora"))
        if delta is not None:
            load_delta(model, delta)
        if merge_lora and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
    return model, processor
