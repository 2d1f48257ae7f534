"""Label masking: only assistant answers + EOS are supervised, checked per sample; broken setups are caught."""

import pytest

from workflow_scripts.data.conversation import render_text
from workflow_scripts.data.labels import (
    IGNORE_INDEX,
    Encoded,
    LabelMaskError,
    encode_conversation,
    expand_image_tokens,
    truncate,
)

TURNS = [("<image>\nWhat color is the circle?", "The circle is red."),
         ("How many shapes are there?", "There are two shapes."),
         ("Is there a star in the image?", "No, there is no star in the image.")]


def supervised_text(tok, enc):
    return tok.decode([i for i, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX])


@pytest.mark.parametrize("template, expected", [
    ("vicuna_v1", "The circle is red.</s> There are two shapes.</s> No, there is no star in the image.</s>"),
    ("llama_2", "The circle is red. </s> There are two shapes. </s> No, there is no star in the image. </s>"),
])
def test_multi_turn_supervises_exactly_the_answers(toy_tokenizer, template, expected):
    enc = encode_conversation(toy_tokenizer, template, TURNS, "r1")
    assert supervised_text(toy_tokenizer, enc) == expected
    assert enc.labels[0] == IGNORE_INDEX and enc.input_ids[0] == toy_tokenizer.bos_token_id
    assert sum(t == toy_tokenizer.eos_token_id for t, lab in zip(enc.input_ids, enc.labels) if lab != -100) == 3
    # Segment-wise ids equal the whole conversation's ids: training sees what generation prompts look like.
    assert enc.input_ids == toy_tokenizer(render_text(template, TURNS))["input_ids"]


def test_plain_template_supervises_caption_and_newline(toy_tokenizer):
    enc = encode_conversation(toy_tokenizer, "plain", [("ignored", "a red circle")], "c1", has_image=True)
    image_id = toy_tokenizer.convert_tokens_to_ids("<image>")
    assert enc.input_ids[:2] == [toy_tokenizer.bos_token_id, image_id]
    assert enc.labels[:2] == [IGNORE_INDEX, IGNORE_INDEX]
    assert supervised_text(toy_tokenizer, enc) == "a red circle\n"


def test_tokenizer_that_splits_its_eos_is_caught(toy_tokenizer):
    tok = toy_tokenizer
    original = tok.eos_token
    try:
        tok.eos_token = "<|end|>"  # a string the vocabulary does not hold: it tokenizes into pieces
        with pytest.raises(LabelMaskError, match="EOS"):
            encode_conversation(tok, "vicuna_v1", TURNS, "r9")
    finally:
        tok.eos_token = original


def test_answer_that_does_not_round_trip_names_the_record(toy_tokenizer):
    class LossyTokenizer:
        """Drops characters it does not know (what a BPE without byte fallback does)."""

        def __init__(self, inner):
            self.inner = inner
            self.bos_token, self.eos_token = inner.bos_token, inner.eos_token
            self.bos_token_id, self.eos_token_id = inner.bos_token_id, inner.eos_token_id

        def __call__(self, text, add_special_tokens=False):
            return self.inner(text.replace("é", ""), add_special_tokens=add_special_tokens)

        def decode(self, ids, skip_special_tokens=False):
            return self.inner.decode(ids, skip_special_tokens=skip_special_tokens)

    with pytest.raises(LabelMaskError, match=r"record rec-42: supervised tokens decode to 'A caf'"):
        encode_conversation(LossyTokenizer(toy_tokenizer), "vicuna_v1", [("Q?", "A café")], "rec-42")


def test_expand_and_truncate_hand_checked():
    enc = Encoded([1, 50, 9, 7, 8, 2], [-100, -100, -100, 7, 8, 2])  # 50 = image token
    wide = expand_image_tokens(enc, 50, 3)
    assert wide.input_ids == [1, 50, 50, 50, 9, 7, 8, 2]
    assert wide.labels == [-100, -100, -100, -100, -100, 7, 8, 2]
    cut = truncate(wide, 6, 50)
    assert cut.input_ids == [1, 50, 50, 50, 9, 7] and cut.labels == [-100] * 5 + [7]
    assert truncate(wide, 5, 50) is None  # nothing supervised left
    with pytest.raises(LabelMaskError, match="cuts into the image tokens"):
        truncate(wide, 2, 50)
    with pytest.raises(LabelMaskError, match="expected one <image> token, found 0"):
        expand_image_tokens(Encoded([1, 2], [-100, 2]), 50, 3, "x")
