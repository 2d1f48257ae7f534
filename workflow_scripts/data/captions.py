"""Stage-1 samples: (image, caption) pairs from the CC3M shards in the ``plain`` template
(``<s><image>caption\\n``, loss on the caption and the newline).

How N workers read them: ``CaptionStream`` is the same on every rank. It tokenizes every caption (cheap) and
releases samples in whole global batches only, dropping an epoch's last partial one, so that accelerate's
``IterableDatasetShard`` (``dispatch_batches`` off) gives rank r the r-th micro-batch of every N: the N ranks
then train on exactly the global batches of one worker. The images are decoded afterwards, by
``CaptionCollator`` on the rank that trains on them.
"""

from __future__ import annotations

import logging
import os

import torch
from PIL import Image

from workflow_scripts.data.images import preprocess
from workflow_scripts.data.instruct import collate
from workflow_scripts.data.labels import IGNORE_INDEX, encode_conversation, expand_image_tokens, image_markers, truncate
from workflow_scripts.data.shards import Sample, ShardStream, UndecodableImageError

log = logging.getLogger(__name__)


class CaptionStream(torch.utils.data.IterableDataset):
    """Tokenized stage-1 samples (image still encoded) streamed from webdataset shards, in whole global
    batches of ``global_batch`` samples."""

    def __init__(self, shards: ShardStream, tokenizer, image_token_id: int, n_image_tokens: int, max_length: int,
                 global_batch: int = 1):
        self.shards, self.tokenizer = shards, tokenizer
        self.image_token_id, self.n_image_tokens = image_token_id, n_image_tokens
        self.max_length, self.global_batch = max_length, global_batch
        self.dropped_tail = 0  # samples of partial last global batches, in this process
        if len(shards) < global_batch:
            raise ValueError(f"{os.path.dirname(shards.shards[0])}: {len(shards)} training samples (held-out tail "
                             f"excluded) do not fill one global batch of {global_batch} (stage1.global_batch)")

    def __len__(self) -> int:
        return len(self.shards) // self.global_batch * self.global_batch

    def set_epoch(self, epoch: int) -> None:
        """Trainer (through accelerate's data loader) says which epoch starts: the shards' order follows it."""
        self.shards.set_epoch(epoch)

    def __iter__(self):
        batch = []
        for sample in self.shards:
            item = self.encode(sample)
            if item is None:
                continue
            batch.append(item)
            if len(batch) == self.global_batch:
                yield from batch
                batch = []
        self.dropped_tail += len(batch)  # every rank must see whole global batches: the tail waits a reshuffle

    def encode(self, sample: Sample) -> dict | None:
        """The training item of one sample without its pixels (``CaptionCollator`` adds them); None for an
        empty caption or one truncation leaves nothing of."""
        if not sample.caption.strip():
            return None  # an empty caption teaches nothing (img2dataset keeps such rows)
        enc = encode_conversation(self.tokenizer, "plain", [("", sample.caption.strip())], sample.key, has_image=True)
        enc = truncate(expand_image_tokens(enc, self.image_token_id, self.n_image_tokens, sample.key,
                                           image_markers(self.tokenizer)),
                       self.max_length, self.image_token_id, sample.key)
        if enc is None:
            return None
        return {"input_ids": torch.tensor(enc.input_ids), "labels": torch.tensor(enc.labels), "sample": sample}


class CaptionCollator:
    """Decode and preprocess the images of one micro-batch, then pad it. An image that does not decode keeps its
    place with blank pixels and no supervised token (it adds nothing to the loss or the gradient), so every rank
    still runs the same steps; it is counted in ``skipped`` and logged with its key and shard."""

    def __init__(self, image_processor, pad_token_id: int, image_aspect: str = "crop"):
        self.image_processor, self.pad_token_id, self.image_aspect = image_processor, pad_token_id, image_aspect
        self.skipped = 0

    def with_pixels(self, item: dict) -> dict:
        """``item`` with ``pixel_values`` (blank, and its labels masked, when the image does not decode)."""
        sample = item["sample"]
        out = {"input_ids": item["input_ids"], "labels": item["labels"]}
        try:
            out["pixel_values"] = preprocess([sample.decode()], self.image_processor, self.image_aspect)[0]
        except UndecodableImageError as e:
            self.skipped += 1
            log.warning("masking %s (%d so far)", e, self.skipped)
            blank = preprocess([Image.new("RGB", (8, 8))], self.image_processor, self.image_aspect)[0]
            out["pixel_values"] = torch.zeros_like(blank)
            out["labels"] = torch.full_like(item["labels"], IGNORE_INDEX)
        return out

    def __call__(self, items: list[dict]) -> dict:
        return collate([self.with_pixels(it) for it in items], self.pad_token_id)
