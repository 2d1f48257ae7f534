"""Stream (image, caption) samples from img2dataset's webdataset shards.

Shards are split by rank, then by DataLoader worker. Every rank yields the same number of samples (the
smallest rank's share, from img2dataset's per-shard stats), so no rank waits at the end of an epoch for
another. A sample whose image does not decode is skipped and counted, never fatal to a training job.

Within a shard, samples come in key order. img2dataset writes a shard in the order its download threads
finish, which differs from one download to the next; sorting makes the training order, and so stage 1's
connector, a function of the data alone. It holds one shard's encoded samples in memory (cc3m_per_shard).

With ``shuffle_seed``, each epoch reads this rank's shards, and the samples within each shard, in an order drawn
from (seed, epoch): LLaVA's stage 1 shuffles its data every epoch (a random sampler); the order of an epoch is
the same on a rerun and on a resume (Trainer calls ``set_epoch``). Without it, every epoch is in key order.

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


@dataclass
class Sample:
    image: Image.Image
    caption: str
    key: str
    meta: dict


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
    """Iterable over ``Sample``s of this rank's shards (``rank::world_size``), split again across workers."""

    def __init__(self, folder: str, rank: int = 0, world_size: int = 1, image_key: str = "jpg",
                 caption_key: str = "txt", holdout: int = 0, shuffle_seed: int | None = None):
        self.shards = list_shards(folder)
        self.shuffle_seed, self.epoch = shuffle_seed, 0
        self.epochs_read: list[int] = []  # in this process, for the run's record
        if world_size > len(self.shards):
            raise ValueError(f"{len(self.shards)} shards cannot feed {world_size} ranks: write smaller shards")
        self.rank, self.world_size = rank, world_size
        self.image_key, self.caption_key = image_key, caption_key
        sizes = [shard_size(s) for s in self.shards]
        if holdout >= sizes[-1]:
            raise ValueError(f"{self.shards[-1]}: holds {sizes[-1]} samples, fewer than the {holdout} held out "
                             "for stage 1's alignment check")
        self.holdout = holdout
        self.last_shard_train = sizes[-1] - holdout  # raw samples of the last shard that training may read
        sizes[-1] -= holdout
        self.per_rank = min(sum(sizes[r::world_size]) for r in range(world_size))
        self.skipped = 0  # in this process; each DataLoader worker counts its own

    def __len__(self) -> int:
        return self.per_rank

    def my_shards(self) -> list[str]:
        mine = self.shards[self.rank:: self.world_size]
        info = torch.utils.data.get_worker_info()
        return mine if info is None else mine[info.id:: info.num_workers]

    def _quota(self) -> int:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self.per_rank
        return self.per_rank // info.num_workers + (info.id < self.per_rank % info.num_workers)

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration reads (its order, when shuffled)."""
        self.epoch = epoch

    def __iter__(self):
        quota = self._quota()
        shards = self.my_shards()
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
                if quota <= 0:
                    return
                decoded = self._decode(sample)
                if decoded is not None:
                    quota -= 1
                    yield decoded

    def _decode(self, sample: dict) -> Sample | None:
        key, url = sample.get("__key__", "?"), sample.get("__url__", "?")
        try:
            image = Image.open(io.BytesIO(sample[self.image_key]))
            image.load()
            caption = sample[self.caption_key].decode("utf-8")
        except (KeyError, OSError, ValueError, Image.DecompressionBombError) as e:
            self.skipped += 1
            log.warning("skipping sample %s of %s: %s (%d skipped so far)", key, url, e, self.skipped)
            return None
        meta = json.loads(sample["json"]) if "json" in sample else {}
        return Sample(image.convert("RGB"), caption, key, meta)


def held_out_samples(stream: ShardStream) -> list[Sample]:
    """The samples ``stream`` holds out (the last ``holdout`` of its last shard, in key order), decoded; a sample
    whose image does not decode is left out."""
    if not stream.holdout:
        return []
    raw = wds.WebDataset([stream.shards[-1]], shardshuffle=False, nodesplitter=None, workersplitter=None,
                         empty_check=False)
    tail = list(in_key_order(raw))[stream.last_shard_train:]
    return [d for d in (stream._decode(s) for s in tail) if d is not None]
