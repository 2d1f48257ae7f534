"""Token ids and labels for a conversation, built by tokenizing each template segment and concatenating.

Only assistant answers (and their EOS) are supervised. The invariant is checked for every sample: the
supervised tokens of each turn decode exactly to that turn's answer (then EOS, where the template has
one). A tokenizer that breaks it (say, one that no longer knows its own EOS) raises an error naming the
record, instead of training silently on a wrong mask as length arithmetic would.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflow_scripts.data.conversation import get_template, render_segments

IGNORE_INDEX = -100
IMAGE_PLACEHOLDER = "<image>"
# connector.image_start_end (LLaVA's mm_use_im_start_end): the image's tokens sit between these two, which the
# tokenizer then holds as added tokens.
IMAGE_START, IMAGE_END = "<im_start>", "<im_end>"


def image_markers(tokenizer) -> tuple[int, int] | None:
    """Ids of <im_start> and <im_end> when the tokenizer was given them (connector.image_start_end), else None."""
    vocab = tokenizer.get_added_vocab()
    return (vocab[IMAGE_START], vocab[IMAGE_END]) if IMAGE_START in vocab and IMAGE_END in vocab else None


def image_prompt_text(tokenizer) -> str:
    """What ``<image>`` becomes in a generation prompt: itself, or between the markers when the tokenizer has
    them (training does the same on ids, in ``expand_image_tokens``)."""
    if image_markers(tokenizer) is None:
        return IMAGE_PLACEHOLDER
    return f"{IMAGE_START}{IMAGE_PLACEHOLDER}{IMAGE_END}"


class LabelMaskError(ValueError):
    """A sample whose labels would not supervise exactly its assistant text; names the record."""


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def encode_segment(tokenizer, text: str, first: bool) -> list[int]:
    """Ids of ``text`` as it tokenizes inside the whole conversation.

    SentencePiece-style tokenizers mark a word start only at the start of the text, so a later segment is
    tokenized behind the EOS token (always a token boundary) and the EOS is dropped again.
    """
    if first:
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = tokenizer(tokenizer.eos_token + text, add_special_tokens=False)["input_ids"]
    if not ids or ids[0] != tokenizer.eos_token_id:
        raise LabelMaskError(f"tokenizer does not keep its EOS {tokenizer.eos_token!r} as one token")
    return ids[1:]


def encode_conversation(tokenizer, template_name: str, turns: list[tuple[str, str]], record_id: str = "?",
                        has_image: bool = False) -> Encoded:
    """Encode (question, answer) turns with the template; ``has_image`` adds the ``<image>`` placeholder for
    templates that drop the instruction (``plain``: ``<image>caption\\n``)."""
    template = get_template(template_name)
    segments = render_segments(template, turns, bos=tokenizer.bos_token, eos=tokenizer.eos_token)
    if has_image and not template.keeps_instruction:
        segments.insert(0, (IMAGE_PLACEHOLDER, False))
    ids = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    labels = [IGNORE_INDEX] * len(ids)
    answers = iter(turns)
    for i, (text, supervised) in enumerate(segments):
        seg = encode_segment(tokenizer, text, first=(i == 0))
        if supervised:
            _check_answer(tokenizer, template, seg, next(answers)[1], record_id)
        ids += seg
        labels += seg if supervised else [IGNORE_INDEX] * len(seg)
    return Encoded(ids, labels)


def _check_answer(tokenizer, template, seg: list[int], answer: str, record_id: str) -> None:
    body = seg
    if "{eos}" in template.answer_suffix:
        if not seg or seg[-1] != tokenizer.eos_token_id:
            raise LabelMaskError(f"record {record_id}: supervised tokens of an answer do not end with EOS "
                                 f"(id {tokenizer.eos_token_id}); got {seg[-3:]}")
        body = seg[:-1]
    decoded = tokenizer.decode(body, skip_special_tokens=False).strip()
    if decoded != answer.strip():
        raise LabelMaskError(f"record {record_id}: supervised tokens decode to {decoded!r}, "
                             f"not the assistant text {answer.strip()!r}")


def expand_image_tokens(enc: Encoded, image_token_id: int, n_image_tokens: int, record_id: str = "?",
                        markers: tuple[int, int] | None = None) -> Encoded:
    """Replace the single image placeholder by ``n_image_tokens`` copies (what the processor does), unsupervised;
    with ``markers`` (start, end ids) between them, also unsupervised."""
    at = [i for i, t in enumerate(enc.input_ids) if t == image_token_id]
    if len(at) != 1:
        raise LabelMaskError(f"record {record_id}: expected one {IMAGE_PLACEHOLDER} token, found {len(at)}")
    i = at[0]
    image = [image_token_id] * n_image_tokens
    if markers is not None:
        image = [markers[0], *image, markers[1]]
    return Encoded(enc.input_ids[:i] + image + enc.input_ids[i + 1:],
                   enc.labels[:i] + [IGNORE_INDEX] * len(image) + enc.labels[i + 1:])


def truncate(enc: Encoded, max_length: int, image_token_id: int | None = None, record_id: str = "?") -> Encoded | None:
    """Cut to ``max_length`` (after image expansion). None when nothing supervised is left; an error when the
    cut would split the image tokens (their features could no longer be matched)."""
    if len(enc.input_ids) <= max_length:
        return enc
    if image_token_id is not None and image_token_id in enc.input_ids[max_length:]:
        raise LabelMaskError(f"record {record_id}: model_max_length {max_length} cuts into the image tokens")
    cut = Encoded(enc.input_ids[:max_length], enc.labels[:max_length])
    return cut if cut.supervised else None
