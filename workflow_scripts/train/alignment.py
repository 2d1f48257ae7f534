"""Stage 1's alignment check: does the caption loss depend on the image?

A connector that learned nothing useful still lowers the caption loss, because its bias and the LLM's text
priors predict the captions' common words. What only an aligned connector does is make the *right* image
help: on held-out samples, the caption loss with each caption's own image must be clearly below the loss with
the images shuffled among the captions (each caption paired with another sample's image).
"""

from __future__ import annotations

import torch

from workflow_scripts.train import distributed


class AlignmentError(RuntimeError):
    """Stage 1 finished, but its captions do not depend on their images."""


@torch.no_grad()
def caption_loss(model, items: list[dict], collator, batch_size: int = 32) -> float:
    """Mean next-token loss per supervised caption token over ``items`` (training items with pixel_values), on
    the model's device. Under N workers each rank scores every N-th item and the sums are added over ranks;
    every rank runs the same number of forwards (a ZeRO-3 forward is collective), a rank short of items repeats
    one with weight 0."""
    rank, world_size = distributed.world()
    mine = items[rank::world_size]
    per_rank = -(-len(items) // world_size)
    batches = -(-per_rank // batch_size)
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    total, tokens = 0.0, 0
    for b in range(batches):
        chunk = mine[b * batch_size: (b + 1) * batch_size]
        weight = 1 if chunk else 0
        batch = collator(chunk or items[:1])
        batch = {k: v.to(param.device, dtype=param.dtype if v.is_floating_point() else v.dtype)
                 for k, v in batch.items()}
        n = int((batch["labels"][:, 1:] != -100).sum())  # the loss averages over shifted labels
        total += weight * model(**batch).loss.float().item() * n
        tokens += weight * n
    model.train(was_training)
    total, tokens = distributed.sum_over_ranks([total, tokens])
    return total / tokens


def with_images_shuffled(items: list[dict]) -> list[dict]:
    """The same captions, each with the next item's image (a rotation: no caption keeps its own image)."""
    images = [it["pixel_values"] for it in items]
    return [{**it, "pixel_values": images[(i + 1) % len(items)]} for i, it in enumerate(items)]


def measure(model, items: list[dict], collator) -> dict:
    """Held-out caption loss with the real and with shuffled images, and the relative gap between them."""
    if len(items) < 2:
        raise AlignmentError(f"alignment check needs at least 2 held-out samples, got {len(items)}")
    real = caption_loss(model, items, collator)
    shuffled = caption_loss(model, with_images_shuffled(items), collator)
    return {"samples": len(items), "loss_real_images": real, "loss_shuffled_images": shuffled,
            "relative_gap": (shuffled - real) / shuffled}


def verdict(after: dict, min_gap: float | None) -> str | None:
    """None when the real images lower the held-out loss by at least ``min_gap`` (relative), or when ``min_gap``
    is None (measured, not enforced); else the reason."""
    if min_gap is None or after["relative_gap"] >= min_gap:
        return None
    return (f"stage 1 did not align the image to the text: on {after['samples']} held-out captions the loss with "
            f"their own images is {after['loss_real_images']:.4f}, with shuffled images "
            f"{after['loss_shuffled_images']:.4f} (relative gap {after['relative_gap']:.3f} < stage1.alignment."
            "min_gap {min_gap}). The captions do not depend on the images: check the vision path, the stage-1 "
            "learning rate and what stage 1 trains (stage1.trains)").replace("{min_gap}", str(min_gap))
