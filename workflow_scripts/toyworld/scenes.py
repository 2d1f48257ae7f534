"""Scenes of 1-4 coloured shapes on a 2x2 grid, sampled from a seeded generator and rendered with PIL.

Shapes co-occur with a fixed partner and have unequal base rates, so POPE's "popular" and "adversarial"
negative sampling differ from "random" as they do on COCO.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
SHAPE_RATES = (0.26, 0.22, 0.18, 0.14, 0.11, 0.09)  # base rates: "popular" objects exist
PARTNER = {"circle": "square", "square": "circle", "triangle": "diamond",
           "diamond": "triangle", "star": "cross", "cross": "star"}
PARTNER_RATE = 0.5  # chance that a further shape is the first shape's partner
COLOURS = {"red": (215, 40, 40), "green": (40, 165, 60), "blue": (40, 80, 220),
           "yellow": (235, 200, 30), "purple": (140, 60, 170), "orange": (245, 135, 30)}
SIZES = ("small", "large")
CELLS = ("top left", "top right", "bottom left", "bottom right")
BACKGROUND = (250, 250, 250)
RADIUS = {"large": 0.40, "small": 0.28}  # radius / cell width: large enough for the toy CLIP to tell kinds apart


@dataclass(frozen=True)
class Shape:
    """One shape: what it is and where it sits (``cell`` indexes ``CELLS``; jitter in 1/100 of a cell)."""

    kind: str
    colour: str
    size: str
    cell: int
    jitter: tuple[int, int] = (0, 0)

    @property
    def position(self) -> str:
        return CELLS[self.cell]

    def phrase(self, with_size: bool = True) -> str:
        """'large red circle' (or 'red circle')."""
        return f"{self.size} {self.colour} {self.kind}" if with_size else f"{self.colour} {self.kind}"


@dataclass(frozen=True)
class Scene:
    """A scene: a unique id (also the image id) and its shapes in reading order of their cells."""

    scene_id: int
    shapes: tuple[Shape, ...]

    def kinds(self) -> set[str]:
        return {s.kind for s in self.shapes}

    def count(self, kind: str) -> int:
        return sum(s.kind == kind for s in self.shapes)

    def of_kind(self, kind: str) -> list[Shape]:
        return [s for s in self.shapes if s.kind == kind]


def sample_scene(rng: np.random.Generator, scene_id: int) -> Scene:
    """Draw one scene: 1-4 shapes in distinct cells; later shapes favour the first one's partner."""
    n = int(rng.integers(1, 5))
    cells = sorted(int(c) for c in rng.permutation(len(CELLS))[:n])
    kinds: list[str] = []
    for _ in range(n):
        if kinds and rng.random() < PARTNER_RATE:
            kinds.append(PARTNER[kinds[0]])
        else:
            kinds.append(str(rng.choice(SHAPES, p=SHAPE_RATES)))
    shapes = tuple(
        Shape(kind=k, colour=str(rng.choice(list(COLOURS))), size=str(rng.choice(SIZES)), cell=c,
              jitter=(int(rng.integers(-12, 13)), int(rng.integers(-12, 13))))
        for k, c in zip(kinds, cells)
    )
    return Scene(scene_id=scene_id, shapes=shapes)


def _polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if kind == "square":
        r *= 0.85
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    if kind == "diamond":
        return [(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)]
    if kind == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        return pts
    if kind == "cross":
        w = r * 0.35
        return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
                (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
                (cx - r, cy - w), (cx - w, cy - w)]
    raise ValueError(f"unknown shape kind {kind!r}")


def render(scene: Scene, image_size: int) -> Image.Image:
    """Draw the scene as an RGB image of ``image_size`` pixels square."""
    image = Image.new("RGB", (image_size, image_size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    half = image_size / 2
    for s in scene.shapes:
        row, col = divmod(s.cell, 2)
        cx = (col + 0.5 + s.jitter[0] / 100) * half
        cy = (row + 0.5 + s.jitter[1] / 100) * half
        r = half * RADIUS[s.size]
        fill = COLOURS[s.colour]
        if s.kind == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.polygon(_polygon(s.kind, cx, cy, r), fill=fill)
    return image


def sample_scenes(seed: int, pool: str, count: int, first_id: int) -> list[Scene]:
    """``count`` scenes for one named pool; the pool name keys its own random stream so pools are independent."""
    rng = pool_rng(seed, pool)
    return [sample_scene(rng, first_id + i) for i in range(count)]


def pool_rng(seed: int, pool: str) -> np.random.Generator:
    """The random stream of one named pool, keyed by a stable integer per name (Python's hash() is salted per
    process)."""
    return np.random.default_rng([seed, zlib.crc32(pool.encode())])
