"""Conversation templates render exactly LLaVA's prompt strings."""

import pytest

from workflow_scripts.data.conversation import (
    VICUNA_SYSTEM,
    generation_prompt,
    get_template,
    render_segments,
    render_text,
)


def test_vicuna_v1_matches_llava_format():
    text = render_text("vicuna_v1", [("Q1", "A1"), ("Q2", "A2")])
    assert text == f"{VICUNA_SYSTEM} USER: Q1 ASSISTANT: A1</s>USER: Q2 ASSISTANT: A2</s>"


def test_llama_2_wraps_system_prompt_and_separates_turns_with_bos():
    text = render_text("llama_2", [("Q1", "A1"), ("Q2", "A2")])
    assert text.startswith("[INST] <<SYS>>\nYou are a helpful language and vision assistant.")
    assert text.endswith("<</SYS>>\n\nQ1 [/INST] A1 </s><s>[INST] Q2 [/INST] A2 </s>")


def test_plain_keeps_only_the_caption():
    assert render_segments(get_template("plain"), [("drop me", "a red circle")]) == [("a red circle\n", True)]


def test_segments_supervise_only_answers():
    segs = render_segments(get_template("vicuna_v1"), [("Q1", "A1"), ("Q2", "A2")])
    assert [t for t, sup in segs if sup] == [" A1</s>", " A2</s>"]


def test_generation_prompt_ends_at_the_assistant_role():
    assert generation_prompt("vicuna_v1", "Q2", [("Q1", "A1")]).endswith("ASSISTANT: A1</s>USER: Q2 ASSISTANT:")
    assert generation_prompt("vicuna_v1", "Q") == f"{VICUNA_SYSTEM} USER: Q ASSISTANT:"


def test_unknown_template_lists_known_ones():
    with pytest.raises(ValueError, match="llama_2"):
        get_template("chatml")
