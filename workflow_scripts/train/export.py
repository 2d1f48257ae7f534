"""Saving and loading trained weights: the connector of stage 1, the trainable delta of stage 2, and a merged
model folder that stock ``LlavaForConditionalGeneration.from_pretrained`` loads. Safetensors only. Under
ZeRO-3 partitioned parameters are gathered first.

The delta is what training keeps (small for every strategy but full finetuning); the merged folder is rebuilt
from base weights + stage-1 connector + delta whenever an evaluation needs it (``train/merge.py``).
"""

from __future__ import annotations

import contextlib
import os

import torch
from safetensors.torch import load_file, save_file

from workflow_scripts.io import atomic_dir
from workflow_scripts.model.strategies import base_name, group_of, is_identity_connector_layer


def _gathered(params):
    """Context in which ZeRO-3 partitioned parameters hold their full values (no-op otherwise)."""
    partitioned = [p for p in params if hasattr(p, "ds_id")]
    if not partitioned:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(partitioned, modifier_rank=0)


def state_of(model, names: list[str]) -> dict[str, torch.Tensor]:
    """Full-value CPU copies of the named parameters (keys without PEFT's prefix)."""
    params = dict(model.named_parameters())
    chosen = [params[n] for n in names]
    with _gathered(chosen):
        return {base_name(n): params[n].detach().to("cpu", copy=True).contiguous() for n in names}


def save_safetensors(tensors: dict, path: str, metadata: dict | None = None) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    save_file(tensors, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)


def connector_names(model, connector: str) -> list[str]:
    return [n for n, _ in model.named_parameters()
            if group_of(n) == "connector" and not is_identity_connector_layer(n, connector)]


def connector_state(model, connector: str) -> dict[str, torch.Tensor]:
    """The connector's weights; collective under ZeRO-3, so every rank calls it (rank 0 writes)."""
    return state_of(model, connector_names(model, connector))


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


NON_ADAPTER = "non_lora_trainables.safetensors"  # LLaVA's name for the same thing


def non_adapter_names(model) -> list[str]:
    """Trainable parameters a PEFT adapter file does not hold (connector, embeddings, head)."""
    return [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]


def save_non_adapter(model, folder: str) -> None:
    """Beside an exported PEFT adapter: the other trainable weights, so nothing trained is lost."""
    save_safetensors(state_of(model, non_adapter_names(model)), os.path.join(folder, NON_ADAPTER))


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


def write_export(model, processor, out_dir: str) -> None:
    """A merged model folder (+ the PEFT adapter and the other trained weights for LoRA), written atomically."""
    with atomic_dir(out_dir) as tmp:
        if hasattr(model, "merge_and_unload"):  # PEFT: keep the adapter, then fold it into the weights
            model.save_pretrained(os.path.join(tmp, "adapter"))
            save_non_adapter(model, os.path.join(tmp, "adapter"))
            model = model.merge_and_unload()
        model.save_pretrained(os.path.join(tmp, "model"))
        processor.save_pretrained(os.path.join(tmp, "model"))
