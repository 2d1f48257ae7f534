"""The one table of stage-2 tuning strategies. A strategy is data: which language-model parameters train (by
name pattern), whether the connector, embeddings and head train with them, and whether LoRA adapters are added.
Everything else — requires_grad, the optimizer's parameters, counting, the saved trainable delta — derives
from this table. The vision tower never trains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LLM_PREFIX = "model.language_model."
PEFT_PREFIX = "base_model.model."
# The LLM's parameter groups (group_of): all of them together are the whole LLM.
LLM_GROUPS = ("embeddings", "head", "norms", "attention", "mlp")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Strategy:
    name: str
    llm_patterns: tuple[str, ...]  # regexes searched in parameter names relative to the language model
    also_trains: tuple[str, ...] = ("connector", "embeddings", "head")  # groups outside the LLM's layers
    lora: bool = False
    description: str = ""
    label: str = ""  # the paper's name for it, in tables and figures

    @property
    def display(self) -> str:
        return self.label or self.name


NORMS = (r"\.(input_layernorm|post_attention_layernorm)\.", r"^norm\.")
STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("finetune", (r".",), label="Finetune", description="every LLM parameter"),
    Strategy("lora", (), lora=True, label="LoRA",
             description="LoRA adapters on q,k,v,o,gate,up,down of every layer"),
    Strategy("attn_qv", (r"\.self_attn\.(q_proj|v_proj)\.",), label="Attn. QV Proj.",
             description="q_proj and v_proj of every layer"),
    Strategy("attn_mlp", (r"\.mlp\.(gate_proj|up_proj|down_proj)\.",), label="Attn. MLP",
             description="the MLP of every layer"),
    Strategy("layernorm", NORMS, label="LayerNorm", description="both LayerNorms of every layer and the final norm"),
    Strategy("layernorm_simp", NORMS, also_trains=(), label="LayerNorm-simp.",
             description="the same norms and nothing else (connector, embeddings, head frozen)"),
    # The connector ablation: LayerNorm tuning without the connector, and the connector alone.
    Strategy("layernorm_no_connector", NORMS, also_trains=("embeddings", "head"), label="LayerNorm w/o connector",
             description="the norms, embeddings and head (connector frozen at its stage-1 weights)"),
    Strategy("connector_only", (), also_trains=("connector",), label="Connector only",
             description="the connector alone (no LLM weight)"),
)}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}") from None


def base_name(name: str) -> str:
    """Parameter name without PEFT's wrapper prefix."""
    return name[len(PEFT_PREFIX):] if name.startswith(PEFT_PREFIX) else name


def is_identity_connector_layer(name: str, connector: str) -> bool:
    """The second projector layer of the ``linear`` connector is a fixed identity (see model.build)."""
    return connector == "linear" and ".multi_modal_projector.linear_2." in base_name(name)


def group_of(name: str) -> str:
    """Accounting group of a parameter: vision, connector, embeddings, head, norms, attention, mlp, lora."""
    n = base_name(name)
    if "lora_" in n:
        return "lora"
    if ".vision_tower." in n or n.startswith("vision_tower."):
        return "vision"
    if "multi_modal_projector" in n:
        return "connector"
    if "embed_tokens" in n:
        return "embeddings"
    if n.startswith("lm_head"):
        return "head"
    if "layernorm" in n or re.search(r"language_model\.norm\.", n):
        return "norms"
    if ".self_attn." in n:
        return "attention"
    if ".mlp." in n:
        return "mlp"
    return "other"


def trains(strategy: Strategy, name: str, connector: str) -> bool:
    """Whether parameter ``name`` trains under ``strategy`` (LoRA adapters are decided by PEFT)."""
    n = base_name(name)
    group = group_of(n)
    if group == "lora":
        return strategy.lora
    if group == "vision" or is_identity_connector_layer(n, connector):
        return False
    if group in ("connector", "embeddings", "head"):
        return group in strategy.also_trains
    if n.startswith(LLM_PREFIX):
        return any(re.search(p, n[len(LLM_PREFIX):]) for p in strategy.llm_patterns)
    return False


def lora_config(settings: dict):
    """PEFT LoraConfig on the language model's linear layers only (never the vision tower or connector)."""
    from peft import LoraConfig

    return LoraConfig(r=settings["r"], lora_alpha=settings["alpha"], lora_dropout=settings["dropout"], bias="none",
                      target_modules=rf".*language_model.*\.({'|'.join(LORA_TARGETS)})")


def apply_strategy(model, name: str, connector: str = "linear", lora_settings: dict | None = None):
    """Set requires_grad as the table says; for ``lora`` wrap with PEFT first. Returns the (maybe wrapped) model."""
    strategy = get_strategy(name)
    if strategy.lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(lora_settings or {"r": 64, "alpha": 16, "dropout": 0.05}))
    for pname, param in model.named_parameters():
        param.requires_grad = trains(strategy, pname, connector)
    return model


def trainable_names(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


def parameter_report(model, connector: str = "linear") -> dict:
    """Trainable / total parameters per group and overall; the fixed identity connector layer is not counted.
    Shares are relative to the whole MLLM, vision tower included (as the paper states them)."""
    groups: dict[str, dict[str, int]] = {}
    for name, p in model.named_parameters():
        if is_identity_connector_layer(name, connector):
            continue
        g = groups.setdefault(group_of(name), {"trainable": 0, "total": 0})
        g["total"] += p.numel()
        g["trainable"] += p.numel() if p.requires_grad else 0
    trainable = sum(g["trainable"] for g in groups.values())
    total = sum(g["total"] for g in groups.values())
    return {"trainable_params": trainable, "total_params": total, "trainable_pct": 100.0 * trainable / total,
            "groups": groups}
