"""Stage-1 samples: (image, caption) pairs from the CC3M shards in the ``plain`` template
(``<s><image>caption\\n``, loss on the caption and the newline)."""

from __future__ import annotations

import torch

from workflow_scripts.data.images import preprocess
from workflow_scripts.data.labels import encode_conversation, expand_image_tokens, image_markers, truncate
from workflow_scripts.data.shards import ShardStream


class CaptionStream(torch.utils.data.IterableDataset):
    """Encoded stage-1 samples streamed from webdataset shards."""

    def __init__(self, shards: ShardStream, tokenizer, image_processor, image_token_id: int, n_image_tokens: int,
                 max_length: int, image_aspect: str = "crop"):
        self.shards, self.tokenizer, self.image_processor = shards, tokenizer, image_processor
        self.image_token_id, self.n_image_tokens = image_token_id, n_image_tokens
        self.max_length, self.image_aspect = max_length, image_aspect

    def __len__(self) -> int:
        return len(self.shards)

    def set_epoch(self, epoch: int) -> None:
        """Trainer (through accelerate's data loader) says which epoch starts: the shards' order follows it."""
        self.shards.set_epoch(epoch)

    def __iter__(self):
        for sample in self.shards:
            item = self.encode(sample)
            if item is not None:
                yield item

    def encode(self, sample) -> dict | None:
        """The training item of one sample; None for an empty caption or one truncation leaves nothing of."""
        if not sample.caption.strip():
            return None  # an empty caption teaches nothing (img2dataset keeps such rows)
        enc = encode_conversation(self.tokenizer, "plain", [("", sample.caption.strip())], sample.key, has_image=True)
        enc = truncate(expand_image_tokens(enc, self.image_token_id, self.n_image_tokens, sample.key,
                                           image_markers(self.tokenizer)),
                       self.max_length, self.image_token_id, sample.key)
        if enc is None:
            return None
        return {"input_ids": torch.tensor(enc.input_ids), "labels": torch.tensor(enc.labels),
                "pixel_values": preprocess([sample.image], self.image_processor, self.image_aspect)[0]}
