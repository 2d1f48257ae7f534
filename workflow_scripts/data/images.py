"""Image loading and preprocessing: CLIP resize + centre crop (default) or LLaVA-1.5's ``pad``."""

from __future__ import annotations

from PIL import Image


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


def load_rgb(path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")
