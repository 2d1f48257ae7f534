"""Each strategy trains exactly its named parameters (names listed, counts computed by hand from TINY)."""

import pytest
import torch
from conftest import TINY

from workflow_scripts.model.build import build_mllm
from workflow_scripts.model.strategies import STRATEGIES, apply_strategy, parameter_report, trainable_names

H, L, FF, HV = TINY["hidden"], TINY["layers"], TINY["intermediate"], TINY["vision_hidden"]
LLM = "model.language_model."


def expected_names(strategy: str) -> set[str]:
    """Written out by hand from the strategy table in REFERENCE.md, independently of the regexes."""
    layers = range(L)
    norms = {f"{LLM}layers.{i}.{n}.weight" for i in layers for n in ("input_layernorm", "post_attention_layernorm")}
    norms.add(f"{LLM}norm.weight")
    qv = {f"{LLM}layers.{i}.self_attn.{p}.weight" for i in layers for p in ("q_proj", "v_proj")}
    kv = {f"{LLM}layers.{i}.self_attn.{p}.weight" for i in layers for p in ("k_proj", "o_proj")}
    mlp = {f"{LLM}layers.{i}.mlp.{p}.weight" for i in layers for p in ("gate_proj", "up_proj", "down_proj")}
    extra = {"model.multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_1.bias",
             f"{LLM}embed_tokens.weight", "lm_head.weight"}
    connector = {n for n in extra if "projector" in n}
    return {"finetune": norms | qv | kv | mlp | extra, "attn_qv": qv | extra, "attn_mlp": mlp | extra,
            "layernorm": norms | extra, "layernorm_simp": norms,
            "layernorm_no_connector": norms | (extra - connector), "connector_only": connector}[strategy]


@pytest.fixture(scope="module")
def mllm(tiny_base_models):
    return build_mllm(*tiny_base_models)


@pytest.mark.parametrize("strategy", ["finetune", "attn_qv", "attn_mlp", "layernorm", "layernorm_simp",
                                      "layernorm_no_connector", "connector_only"])
def test_strategy_trains_exactly_its_parameters(tiny_base_models, strategy):
    model, processor = build_mllm(*tiny_base_models)
    model = apply_strategy(model, strategy)
    assert set(trainable_names(model)) == expected_names(strategy)


def test_counts_by_hand(tiny_base_models):
    model, processor = build_mllm(*tiny_base_models)
    V = len(processor.tokenizer)  # toy vocabulary + <image>
    connector = HV * H + H
    embed_head = 2 * V * H
    expected = {
        "layernorm": (2 * L + 1) * H + connector + embed_head,
        "layernorm_simp": (2 * L + 1) * H,
        "attn_qv": L * 2 * H * H + connector + embed_head,
        "attn_mlp": L * 3 * H * FF + connector + embed_head,
    }
    for strategy, count in expected.items():
        report = parameter_report(apply_strategy(model, strategy))
        assert report["trainable_params"] == count, strategy
    report = parameter_report(apply_strategy(model, "layernorm_simp"))
    assert report["groups"]["norms"] == {"trainable": (2 * L + 1) * H, "total": (2 * L + 1) * H}
    assert report["groups"]["vision"]["trainable"] == 0
    assert report["groups"]["connector"]["total"] == connector  # the identity second layer is not counted


def test_lora_adds_adapters_on_every_llm_linear_only(tiny_base_models):
    model, _ = build_mllm(*tiny_base_models)
    model = apply_strategy(model, "lora", lora_settings={"r": 4, "alpha": 8, "dropout": 0.0})
    names = trainable_names(model)
    lora = [n for n in names if "lora_" in n]
    assert lora and all("language_model" in n for n in lora)
    per_layer = 4 * (4 * (H + H) + 2 * (H + FF) + (FF + H))  # q,k,v,o: H->H; gate,up: H->I; down: I->H
    report = parameter_report(model)
    assert report["groups"]["lora"]["trainable"] == L * per_layer
    assert {n.split("base_model.model.")[-1] for n in names if "lora_" not in n} == {
        "model.multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_1.bias",
        f"{LLM}embed_tokens.weight", "lm_head.weight"}
    assert report["groups"]["vision"]["trainable"] == 0


def test_one_step_changes_only_trainable_weights(tiny_base_models, toy_tokenizer):
    model, processor = build_mllm(*tiny_base_models)
    model = apply_strategy(model, "layernorm")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    from PIL import Image
    inputs = processor(images=[Image.new("RGB", (64, 64), "red")], text=["<image>\nA red square."],
                       return_tensors="pt")
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    opt.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if "vision_tower" in n or "self_attn" in n or "mlp" in n:
            assert not changed, n
    assert not torch.equal(before[f"{LLM}norm.weight"], model.get_parameter(f"{LLM}norm.weight").detach())


def test_table_covers_the_config_schema():
    from conftest import SCHEMA

    assert set(SCHEMA["definitions"]["strategy"]["enum"]) == set(STRATEGIES)
