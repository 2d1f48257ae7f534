"""Stream (image, caption) samples from img2dataset's webdataset shards.

Every rank of a training job reads the same stream: all shards, in the same order. The images stay encoded
(JPEG bytes) in the stream; accelerate hands each rank its own micro-batches of it (``IterableDatasetShard``), and
only then are that rank's images decoded (``Sample.decode``, called by stage 1's collator). So N workers train on
exactly the global batches one worker would, and each image is decoded once, by the rank that trains on it;
reading the tar bytes is all the ranks repeat. A sample whose image does not decode is counted where it is
decoded, never fatal to a training job.

Within a shard, samples come in key order. img2dataset writes a shard in the order its download threads
finish, which differs from one download to the next; sorting makes the training order, and so stage 1's
connector, a function of the data alone. It holds one shard's encoded samples in memory (cc3m_per_shard).

With ``shuffle_seed``, each epoch reads the shards, and the samples within each shard, in an order drawn from
(seed, epoch): LLaVA's stage 1 shuffles its data every epoch (a random sampler); the order of an epoch is the
same on a rerun, on a resume (Trainer calls ``set_epoch``) and on every rank. Without it, every epoch is in key
order.

The last ``holdout`` samples of the last shard (in key order) are never trained on: stage 1 measures on them
whether its caption loss depends on the image (``held_out_samples``).
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import random
from dataclasses import dataclass

import torch
import webdataset as wds
from PIL import Image

log = logging.getLogger(__name__)


class UndecodableImageError(ValueError):
    """A shard sample whose image bytes do not decode; the message names the sample and its shard."""


@dataclass
class Sample:
    """One (image, caption) pair as the shard holds it: the image still encoded."""

    image_bytes: bytes
    caption: str
    key: str
    shard: str
    meta: dict

    def decode(self) -> Image.Image:
        """The RGB image; UndecodableImageError naming the sample when its bytes are not a whole image."""
        try:
            image = Image.open(io.BytesIO(self.image_bytes))
            image.load()
            return image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise UndecodableImageError(f"sample {self.key} of {self.shard} ({len(self.image_bytes)} bytes): "
                                        f"image does not decode: {e}") from None


def list_shards(folder: str) -> list[str]:
    shards = sorted(glob.glob(os.path.join(folder, "*.tar")))
    if not shards:
        raise FileNotFoundError(f"no webdataset shards (*.tar) in {folder}: run the download_cc3m rule first")
    return shards


def shard_size(tar: str) -> int:
    """Samples in a shard: img2dataset's ``<shard>_stats.json`` ``successes``, else counted from the tar."""
    stats = tar[: -len(".tar")] + "_stats.json"
    if os.path.exists(stats):
        with open(stats) as f:
            return int(json.load(f)["successes"])
    return sum(1 for _ in wds.WebDataset(tar, shardshuffle=False, nodesplitter=None, workersplitter=None))


def shards_in_key_order(samples):
    """(shard url, its raw webdataset samples sorted by ``__key__``), shard by shard (``__url__``)."""
    shard, buffer = None, []
    for sample in samples:
        if sample.get("__url__") != shard and buffer:
            yield shard, sorted(buffer, key=lambda s: s["__key__"])
            buffer = []
        shard = sample.get("__url__")
        buffer.append(sample)
    if buffer:
        yield shard, sorted(buffer, key=lambda s: s["__key__"])


def in_key_order(samples):
    """Raw webdataset samples shard by shard, each shard sorted by ``__key__``."""
    for _, shard in shards_in_key_order(samples):
        yield from shard


class ShardStream(torch.utils.data.IterableDataset):
    """Iterable over the ``Sample``s of every shard, in the same order on every rank (images not decoded).

    A sample without image bytes or with a caption that is not UTF-8 is skipped here (every rank sees it the
    same way); one whose bytes do not decode is found by ``Sample.decode``, on the rank that trains on it."""

    def __init__(self, folder: str, image_key: str = "jpg", caption_key: str = "txt", holdout: int = 0,
                 shuffle_seed: int | None = None):
        self.shards = list_shards(folder)
        self.shuffle_seed, self.epoch = shuffle_seed, 0
        self.epochs_read: list[int] = []  # in this process, for the run's record
        self.image_key, self.caption_key = image_key, caption_key
        sizes = [shard_size(s) for s in self.shards]
        if holdout >= sizes[-1]:
            raise ValueError(f"{self.shards[-1]}: holds {sizes[-1]} samples, fewer than the {holdout} held out "
                             "for stage 1's alignment check")
        self.holdout = holdout
        self.last_shard_train = sizes[-1] - holdout  # raw samples of the last shard that training may read
        self.train_samples = sum(sizes) - holdout
        self.skipped = 0  # samples left out of the stream in this process (no image bytes, caption not UTF-8)

    def __len__(self) -> int:
        return self.train_samples

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration reads (its order, when shuffled)."""
        self.epoch = epoch

    def __iter__(self):
        if torch.utils.data.get_worker_info() is not None:
            # Each DataLoader worker would read the whole stream: the samples would repeat.
            raise RuntimeError("ShardStream is read in the training process (dataloader_num_workers 0): every "
                               "rank reads the whole stream and keeps its own micro-batches")
        shards = list(self.shards)
        order = None if self.shuffle_seed is None else random.Random(f"{self.shuffle_seed}:{self.epoch}")
        if order is not None:
            order.shuffle(shards)
        self.epochs_read.append(self.epoch)
        raw = wds.WebDataset(shards, shardshuffle=False, nodesplitter=None, workersplitter=None, empty_check=False)
        for url, samples in shards_in_key_order(raw):
            if self.holdout and url == self.shards[-1]:
                samples = samples[: self.last_shard_train]  # the held-out tail is never trained on
            if order is not None:
                order.shuffle(samples)
            for sample in samples:
                read = self._read(sample)
                if read is not None:
                    yield read

    def _read(self, sample: dict) -> Sample | None:
        key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
        try:
            image = sample[self.image_key]
            if not image:
                raise ValueError("empty image")
            caption = sample[self.caption_key].decode("utf-8")
        except (KeyError, ValueError) as e:
            self.skipped += 1
            log.warning("skipping sample %s of %s: %s (%d skipped so far)", key, url, e, self.skipped)
            return None
        meta = json.loads(sample["json"]) if "json" in sample else {}
        return Sample(image, caption, key, url, meta)


def held_out_samples(stream: ShardStream) -> list[Sample]:
    """The samples ``stream`` holds out (the last ``holdout`` of its last shard, in key order); one whose
    image does not decode is left out."""
    if not stream.holdout:
        return []
    raw = wds.WebDataset([stream.shards[-1]], shardshuffle=False, nodesplitter=None, workersplitter=None,
                         empty_check=False)
    tail = [s for s in (stream._read(r) for r in list(in_key_order(raw))[stream.last_shard_train:]) if s]
    decodable = []
    for sample in tail:
        try:
            sample.decode()
        except UndecodableImageError as e:
            log.warning("held-out %s", e)
            continue
        decodable.append(sample)
    return decodable
