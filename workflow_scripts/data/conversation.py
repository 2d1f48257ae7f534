"""Conversation templates (LLaVA's ``plain``, ``vicuna_v1`` and ``llama_2``) as data, and their text form.

A template says how a list of (human, assistant) turns becomes one string. Label masking builds on the same
table by rendering the human part and the assistant part of each turn as separate segments.
"""

from __future__ import annotations

from dataclasses import dataclass

VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")
LLAMA2_SYSTEM = ("You are a helpful language and vision assistant. You are able to understand the visual content "
                 "that the user provides, and assist the user with a variety of tasks using natural language.")


@dataclass(frozen=True)
class Template:
    """How turns become text: each turn is ``human_prefix + question + assistant_prefix`` (not supervised)
    followed by ``answer_prefix + answer + answer_suffix`` (supervised; the suffix is where EOS goes).

    A generation prompt ends at ``assistant_prefix`` (``... ASSISTANT:``); the space before the answer belongs
    to the answer, as SentencePiece tokenizers attach it to the answer's first piece."""

    name: str
    system: str
    first_prefix: str  # human prefix of the first turn (carries the system prompt)
    human_prefix: str
    assistant_prefix: str
    answer_prefix: str
    answer_suffix: str  # after each answer; "{eos}" is replaced by the tokenizer's EOS text
    turn_separator: str = ""
    keeps_instruction: bool = True  # ``plain`` drops the instruction (LLaVA stage 1)


TEMPLATES = {
    "plain": Template("plain", "", "", "", "", "", "\n", keeps_instruction=False),
    "vicuna_v1": Template("vicuna_v1", VICUNA_SYSTEM, VICUNA_SYSTEM + " USER: ", "USER: ", " ASSISTANT:", " ",
                          "{eos}"),
    "llama_2": Template("llama_2", LLAMA2_SYSTEM, f"[INST] <<SYS>>\n{LLAMA2_SYSTEM}\n<</SYS>>\n\n", "[INST] ",
                        " [/INST]", " ", " {eos}", turn_separator="{bos}"),
}


def get_template(name: str) -> Template:
    """The template called ``name``; unknown names list the known ones."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown conversation template {name!r}; known: {sorted(TEMPLATES)}") from None


def render_segments(template: Template, turns: list[tuple[str, str]], bos: str = "<s>",
                    eos: str = "</s>") -> list[tuple[str, bool]]:
    """The conversation as ``(text, supervised)`` segments; their concatenation is the whole prompt text."""
    segments: list[tuple[str, bool]] = []
    for i, (question, answer) in enumerate(turns):
        if i and template.turn_separator:
            segments.append((template.turn_separator.format(bos=bos, eos=eos), False))
        if template.keeps_instruction:
            prefix = template.first_prefix if i == 0 else template.human_prefix
            segments.append((prefix + question + template.assistant_prefix, False))
        segments.append((template.answer_prefix + answer + template.answer_suffix.format(bos=bos, eos=eos), True))
    return segments


def render_text(template_name: str, turns: list[tuple[str, str]], bos: str = "<s>", eos: str = "</s>") -> str:
    """The whole conversation as one string (what a text-only LLM is trained on in the toy world)."""
    return "".join(text for text, _ in render_segments(get_template(template_name), turns, bos, eos))


def generation_prompt(template_name: str, question: str, history: list[tuple[str, str]] = ()) -> str:
    """Text of a prompt that asks ``question`` after ``history`` and leaves the answer to the model."""
    template = get_template(template_name)
    text = render_text(template_name, list(history)) if history else ""
    if history and template.turn_separator:
        text += template.turn_separator.format(bos="<s>", eos="</s>")
    prefix = template.first_prefix if not history else template.human_prefix
    return text + (prefix + question + template.assistant_prefix if template.keeps_instruction else "")
