"""Visual-instruction data (LLaVA json) as a torch Dataset: records are checked and encoded up front, so a bad
record stops the job before training starts; images are loaded per item.

Subsetting by conversation type and count serves the data-type ablation (20K conversation / detail /
reasoning / random).
"""

from __future__ import annotations

import logging
import os
import random

import torch

from workflow_scripts.data.images import BadImageError, blank_like, check_image, load_rgb, preprocess
from workflow_scripts.data.labels import (
    IGNORE_INDEX,
    IMAGE_PLACEHOLDER,
    encode_conversation,
    expand_image_tokens,
    image_markers,
    truncate,
)
from workflow_scripts.data.readers import DataFormatError, InstructRecord

log = logging.getLogger(__name__)


def image_first(value: str) -> str:
    """LLaVA's convention: the image placeholder moves to the front of the first human turn."""
    return f"{IMAGE_PLACEHOLDER}\n{value.replace(IMAGE_PLACEHOLDER, '').strip()}"


def to_turns(record: InstructRecord, path: str = "?") -> list[tuple[str, str]]:
    """(question, answer) pairs; the conversation must alternate human/gpt starting with human."""
    conv = list(record.conversations)
    roles = [r for r, _ in conv]
    if len(conv) % 2 or roles != ["human", "gpt"] * (len(conv) // 2):
        raise DataFormatError(path, f"record {record.id}", f"turns must alternate human/gpt, got {roles}")
    turns = [(conv[i][1], conv[i + 1][1]) for i in range(0, len(conv), 2)]
    if record.image is not None:
        turns[0] = (image_first(turns[0][0]), turns[0][1])
    for q, _ in turns[1:]:
        if IMAGE_PLACEHOLDER in q:
            raise DataFormatError(path, f"record {record.id}", f"{IMAGE_PLACEHOLDER} outside the first human turn")
    return turns


def select_subset(records: list[InstructRecord], types: list[str] | None = None, count: int | None = None,
                  seed: int = 0) -> list[InstructRecord]:
    """Records of the given ``type`` tags (all when None), then a seeded random ``count`` of them (all when
    None); order is kept. Asking for more than exist is an error, not a silent shortfall."""
    pool = [r for r in records if types is None or r.type in types]
    if count is None:
        return pool
    if count > len(pool):
        raise ValueError(f"asked for {count} records of types {types}, only {len(pool)} exist")
    keep = set(random.Random(seed).sample(range(len(pool)), count))
    return [r for i, r in enumerate(pool) if i in keep]


class InstructDataset(torch.utils.data.Dataset):
    """Encoded LLaVA records with their images; items are dicts of input_ids, labels, pixel_values."""

    def __init__(self, records: list[InstructRecord], image_dir: str, tokenizer, processor, template: str,
                 n_image_tokens: int, max_length: int, image_aspect: str = "crop", source: str = "?",
                 blank_images: bool = False):
        self.image_dir, self.processor, self.image_aspect = image_dir, processor, image_aspect
        self.blank_images = blank_images  # the text-priors control: train on what the text alone carries
        image_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
        if image_id is None or image_id == tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {IMAGE_PLACEHOLDER} token: add it when assembling the model")
        self.items, self.dropped = [], 0
        missing = [r for r in records if r.image is not None and not os.path.exists(os.path.join(image_dir, r.image))]
        if missing:
            raise FileNotFoundError(f"{len(missing)} record(s) of {source} name images missing from {image_dir}, "
                                    f"e.g. record {missing[0].id}: {missing[0].image}")
        for r in records:  # empty or non-image files fail here, before training starts
            if r.image is not None:
                try:
                    check_image(os.path.join(image_dir, r.image))
                except BadImageError as e:
                    raise BadImageError(f"record {r.id} of {source}: {e}") from None
        markers = image_markers(tokenizer)
        for r in records:
            enc = encode_conversation(tokenizer, template, to_turns(r, source), r.id, has_image=r.image is not None)
            if r.image is not None:
                enc = expand_image_tokens(enc, image_id, n_image_tokens, r.id, markers)
            enc = truncate(enc, max_length, image_id, r.id)
            if enc is None:
                self.dropped += 1  # truncation left nothing to learn from
                continue
            self.items.append((r, enc))
        if self.dropped:
            log.warning("%d record(s) of %s dropped: nothing supervised within %d tokens", self.dropped, source,
                        max_length)

    def __len__(self) -> int:
        return len(self.items)

    def lengths(self) -> list[int]:
        """Tokens of each item (image tokens included), known without reading any image: what length-grouped
        batching sorts by."""
        return [len(enc.input_ids) for _, enc in self.items]

    def __getitem__(self, i: int) -> dict:
        record, enc = self.items[i]
        item = {"input_ids": torch.tensor(enc.input_ids), "labels": torch.tensor(enc.labels)}
        if record.image is not None:
            try:
                image = load_rgb(os.path.join(self.image_dir, record.image))
            except BadImageError as e:  # damage past the header (a truncated JPEG) shows only when decoding
                raise BadImageError(f"record {record.id}: {e}") from None
            if self.blank_images:
                image = blank_like(image, self.processor)
            item["pixel_values"] = preprocess([image], self.processor, self.image_aspect)[0]
        return item


def collate(batch: list[dict], pad_token_id: int) -> dict:
    """Right-pad for training: ids with the pad id, labels with IGNORE_INDEX, attention mask 0 on padding."""
    length = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    for i, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = b["input_ids"], b["labels"], 1
    out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    images = [b["pixel_values"] for b in batch if "pixel_values" in b]
    if images:  # text-only samples may share the batch: Llava matches features to image tokens in order
        out["pixel_values"] = torch.stack(images)
    return out
