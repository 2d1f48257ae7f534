"""Saving and loading trained weights: the connector of stage 1, the trainable delta of stage 2, and a merged
model folder that stock ``LlavaForConditionalGeneration.from_pretrained`` loads. Safetensors only. Under
ZeRO-3 partitioned parameters are gathered first.

The delta is what training keeps (small for every strategy but full finetuning); the merged folder is rebuilt
from base weights + stage-1 connector + delta whenever an evaluation needs it (``train/merge.py``).
"""

from __future__ import annotations

import json
import os

import torch
from safetensors.torch import save_file

from workflow_scripts.io import atomic_dir
from workflow_scripts.model.strategies import base_name
from workflow_scripts.model.trained import (  # noqa: F401 (re-exported: training loads what it saves)
    _gathered,
    connector_names,
    load_connector,
    load_delta,
)
from workflow_scripts.train.distributed import world


def state_of(model, names: list[str]) -> dict[str, torch.Tensor]:
    """Full-value CPU copies of the named parameters (keys without PEFT's prefix).

    Collective under ZeRO-3: every rank calls it with the same names. Parameters are gathered one at a time
    (a GPU never holds more than one extra full tensor) and, with more than one rank, copied on rank 0 only: the
    other ranks get an empty dict (only rank 0 writes)."""
    params = dict(model.named_parameters())
    keep = world()[0] == 0
    out = {}
    for n in names:
        with _gathered([params[n]], modify=False):
            if keep:
                out[base_name(n)] = params[n].detach().to("cpu", copy=True).contiguous()
    return out


def save_safetensors(tensors: dict, path: str, metadata: dict | None = None) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    save_file(tensors, tmp, metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)


def connector_state(model, connector: str) -> dict[str, torch.Tensor]:
    """The connector's weights; collective under ZeRO-3, so every rank calls it (rank 0 writes)."""
    return state_of(model, connector_names(model, connector))


NON_ADAPTER = "non_lora_trainables.safetensors"  # LLaVA's name for the same thing


def non_adapter_names(model) -> list[str]:
    """Trainable parameters a PEFT adapter file does not hold (connector, embeddings, head)."""
    return [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]


def save_non_adapter(model, folder: str) -> None:
    """Beside an exported PEFT adapter: the other trainable weights, so nothing trained is lost."""
    save_safetensors(state_of(model, non_adapter_names(model)), os.path.join(folder, NON_ADAPTER))


STUDY_CARD = "study_model.json"  # how the model was trained: what a standalone evaluation needs to prompt it


def write_export(model, processor, out_dir: str, card: dict | None = None) -> None:
    """A merged model folder (+ the PEFT adapter and the other trained weights for LoRA), written atomically,
    with ``card`` (template, strategy) beside the weights as ``study_model.json``."""
    with atomic_dir(out_dir) as tmp:
        if hasattr(model, "merge_and_unload"):  # PEFT: keep the adapter, then fold it into the weights
            model.save_pretrained(os.path.join(tmp, "adapter"))
            save_non_adapter(model, os.path.join(tmp, "adapter"))
            model = model.merge_and_unload()
        model.save_pretrained(os.path.join(tmp, "model"))
        processor.save_pretrained(os.path.join(tmp, "model"))
        if card:
            with open(os.path.join(tmp, "model", STUDY_CARD), "w") as f:
                json.dump(card, f, indent=2)
