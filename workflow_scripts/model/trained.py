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


def _gathered(params, modify: bool = True):
    """Context in which ZeRO-3 partitioned parameters hold their full values (no-op otherwise). Collective: every
    rank enters it with the same parameters. ``modify``: rank 0's writes are kept (else read-only)."""
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    if not partitioned:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0 if modify else None)


def connector_names(model, connector: str) -> list[str]:
    return [n for n, _ in model.named_parameters()
            if group_of(n) == "connector" and not is_identity_connector_layer(n, connector)]


def load_connector(model, path: str, connector: str) -> None:
    """Load what stage 1 trained: the connector, plus the LLM tensors it trained when ``stage1.trains`` names
    LLM groups (stage 2 starts from those). Under ZeRO-3 the parameters are gathered, written, re-partitioned."""
    weights = load_file(path)
    params = {base_name(n): p for n, p in model.named_parameters()}
    wanted = {base_name(n) for n in connector_names(model, connector)}
    if not wanted <= set(weights):
        raise ValueError(f"{path}: stage-1 weights lack the connector's {sorted(wanted - set(weights))}")
    unknown = sorted(n for n in weights if n not in params or group_of(n) in ("vision", "lora", "other")
                     or (group_of(n) == "connector" and n not in wanted))
    if unknown:
        raise ValueError(f"{path}: stage-1 weights hold tensors that are not the model's connector or LLM: "
                         f"{unknown[:3]}")
    with _gathered([params[n] for n in weights]), torch.no_grad():
        for n, value in weights.items():
            if tuple(value.shape) != tuple(params[n].shape) and not hasattr(params[n], "ds_id"):
                raise ValueError(f"{path}: {n} has shape {tuple(value.shape)}, the model's is "
                                 f"{tuple(params[n].shape)}")
            params[n].copy_(value.to(params[n].dtype))


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
                                  dtype=dtype, allow_pickle=config.get("allow_pickle_checkpoints", False),
                                  image_start_end=config.get("connector", {}).get("image_start_end", False))
    load_connector(model, connector_path, connector)
    if strategy is not None:
        model = apply_strategy(model, strategy, connector, config.get("lora"))
        if delta is not None:
            load_delta(model, delta)
        if merge_lora and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
    return model, processor
