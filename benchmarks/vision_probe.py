"""Does the frozen toy vision tower see what the benchmarks ask about? Linear probes on its features.

The demo's MLLMs answer without using the image (docs/miniature.md). This separates the two places
that could be at fault: if a linear classifier on the frozen CLIP features (the layer the connector reads, patch
tokens) recovers each cell's colour and shape, the information reaches the connector's input, and what fails is
the language side learning to use it.

    .venv/bin/python benchmarks/vision_probe.py      # after `make demo` (needs resources/toy/models/vision)
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import CLIPVisionModel

from workflow_scripts.toyworld.scenes import CELLS, COLOURS, SHAPES, render, sample_scenes
from workflow_scripts.toyworld.toy_vision import image_processor


@torch.no_grad()
def features(model, processor, scenes, image_size: int, layer: int) -> torch.Tensor:
    """The patch tokens of ``layer`` (CLS dropped, as the connector reads them), flattened per image."""
    pixels = processor(images=[render(s, image_size) for s in scenes], return_tensors="pt")["pixel_values"]
    hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states[layer][:, 1:]
    return hidden.reshape(len(scenes), -1)


def cell_labels(scenes, cell: int, attribute: str) -> torch.Tensor:
    """0 for an empty cell, else 1 + the index of the shape's colour or kind."""
    names = list(COLOURS) if attribute == "colour" else list(SHAPES)
    out = []
    for scene in scenes:
        shape = next((s for s in scene.shapes if s.cell == cell), None)
        out.append(0 if shape is None else 1 + names.index(getattr(shape, attribute)))
    return torch.tensor(out)


def probe(x_train, y_train, x_test, y_test, classes: int, steps: int = 300) -> tuple[float, float]:
    """(test accuracy of an L2-regularised softmax probe, accuracy of always guessing the train majority)."""
    weight = torch.zeros(x_train.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(x_train @ weight + bias, y_train) + 1e-3 * weight.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = ((x_test @ weight + bias).argmax(1) == y_test).float().mean().item()
    majority = (y_test == torch.bincount(y_train, minlength=classes).argmax()).float().mean().item()
    return accuracy, majority


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vision", default="resources/toy/models/vision")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--layer", type=int, default=-2, help="vision.feature_layer of the config")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--test", type=int, default=500)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = CLIPVisionModel.from_pretrained(args.vision).eval()
    processor = image_processor(args.image_size)
    # Fresh scenes from their own pools: none of them is in the world the models were trained on.
    train, test = sample_scenes(7, "probe_train", args.train, 0), sample_scenes(7, "probe_test", args.test, 10**6)
    x_train = features(model, processor, train, args.image_size, args.layer)
    x_test = features(model, processor, test, args.image_size, args.layer)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-5
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    rows = []
    for attribute in ("colour", "kind"):
        for cell, name in enumerate(CELLS):
            acc, majority = probe(x_train, cell_labels(train, cell, attribute), x_test,
                                  cell_labels(test, cell, attribute), 7)
            rows.append({"question": f"{attribute} in the {name} cell (or empty)", "probe": acc,
                         "majority": majority})
    for kind in SHAPES:
        acc, majority = probe(x_train, torch.tensor([int(kind in s.kinds()) for s in train]), x_test,
                              torch.tensor([int(kind in s.kinds()) for s in test]), 2)
        rows.append({"question": f"is there a {kind}", "probe": acc, "majority": majority})
    print(f"{'question':40s} {'probe':>7s} {'majority':>9s}")
    for r in rows:
        print(f"{r['question']:40s} {r['probe']:7.3f} {r['majority']:9.3f}")
    print(json.dumps({"vision": args.vision, "layer": args.layer, "train": args.train, "test": args.test,
                      "rows": rows}))


if __name__ == "__main__":
    main()
