"""Image loading and preprocessing: CLIP resize + centre crop (default) or LLaVA-1.5's ``pad``."""

from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError


class BadImageError(ValueError):
    """An image file that is empty, not an image, or cannot be decoded; the message names the file."""


def expand_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Paste the image centred on a square canvas of the background colour (LLaVA-1.5's ``pad``)."""
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def preprocess(images: list[Image.Image], processor, aspect: str = "crop"):
    """Pixel tensor (N, 3, H, W) from RGB images; ``pad`` squares them with the processor's mean colour first."""
    if aspect == "pad":
        mean = tuple(int(round(255 * m)) for m in processor.image_mean)
        images = [expand_to_square(im, mean) for im in images]
    elif aspect != "crop":
        raise ValueError(f"image_aspect must be crop or pad, got {aspect!r}")
    return processor(images=images, return_tensors="pt")["pixel_values"]


def blank_like(image: Image.Image, image_processor) -> Image.Image:
    """A blank image of ``image``'s size in the processor's mean colour, so it normalises to zeros (the blind
    and text-priors controls)."""
    mean = tuple(int(round(255 * m)) for m in image_processor.image_mean)
    return Image.new("RGB", image.size, mean)


def check_image(path) -> None:
    """Cheap check (header only) that ``path`` is an image: catches empty files and non-images named .jpg.
    Damage further into the file only shows when decoding (``load_rgb``)."""
    try:
        with Image.open(path) as im:
            if im.size[0] < 1 or im.size[1] < 1:
                raise BadImageError(f"{path}: image has no pixels")
    except (UnidentifiedImageError, OSError) as e:
        size = os.path.getsize(path) if os.path.exists(path) else None
        raise BadImageError(f"{path}: not a readable image ({size} bytes): {e}") from None


def load_rgb(path) -> Image.Image:
    """Decode to RGB; an undecodable file (empty, truncated, not an image) raises BadImageError naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise BadImageError(f"{path}: cannot decode image: {e}") from None
