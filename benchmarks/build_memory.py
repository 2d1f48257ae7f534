"""Peak host memory of assembling the MLLM (``build_mllm``) against the bytes of its weights, at a scaled
LLaMA-2 shape with random weights, in bf16: today's build (meta-device shell, loaded towers moved in) against
the previous one (a full fp32 Llava random-initialised, cast, then loaded), each in a fresh process.

    .venv/bin/python benchmarks/build_memory.py                    # ~1B-parameter LLaMA + CLIP ViT-L/14
    .venv/bin/python benchmarks/build_memory.py --layers 4 --hidden 256   # small (what the tests run)

At the paper's 13B every rank builds its own copy before DeepSpeed shards it, so the ratio printed here times
26 GB (13B bf16 weights) is each rank's host peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def save_random(model_class, config, folder: Path) -> None:
    """A model of ``config`` with N(0, 0.02) bf16 weights, saved as safetensors (never initialised in fp32)."""
    import torch

    with torch.device("meta"):
        model = model_class(config)
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.save_pretrained(folder)


def write_models(root: Path, layers: int, hidden: int, intermediate: int, vocab: int) -> tuple[str, str]:
    """A LLaMA of the given shape and CLIP ViT-L/14 (the paper's tower), random bf16 weights, safetensors."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    from workflow_scripts.model.accounting import ARCH, _json
    from workflow_scripts.toyworld.toy_llm import train_tokenizer
    from workflow_scripts.toyworld.toy_vision import image_processor

    heads = max(1, hidden // 128)  # LLaMA's head width
    llm_cfg = LlamaConfig(**{**_json(ARCH / "llama2-7b.json"), "num_hidden_layers": layers, "hidden_size": hidden,
                             "intermediate_size": intermediate, "vocab_size": vocab,
                             "num_attention_heads": heads, "num_key_value_heads": heads})
    save_random(LlamaForCausalLM, llm_cfg, root / "llm")
    tok = train_tokenizer([f"a photo of shape {i} and colour {i % 7}" for i in range(400)], 300)
    tok.add_tokens([f"<filler_{i}>" for i in range(vocab - len(tok))])  # LLaMA's vocabulary size, so that
    # adding <image> grows the embeddings by one row as at full scale
    tok.save_pretrained(root / "llm")
    vis_cfg = CLIPVisionConfig(**{k: v for k, v in _json(ARCH / "clip-vit-large-patch14.json").items()
                                  if not k.startswith("_")})
    save_random(CLIPVisionModel, vis_cfg, root / "vision")
    image_processor(vis_cfg.image_size).save_pretrained(root / "vision")
    return str(root / "llm"), str(root / "vision")


def previous_build(llm_path: str, vision_path: str, dtype):
    """The build before the meta-device shell (kept here as the baseline): a full Llava constructed on the
    host in fp32 and random-initialised, cast, and the loaded weights copied in."""
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        CLIPVisionModel,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )

    from workflow_scripts.model.build import image_token_count

    llm = AutoModelForCausalLM.from_pretrained(llm_path, dtype=dtype)
    vision = CLIPVisionModel.from_pretrained(vision_path, dtype=dtype)
    llm.config.tie_word_embeddings = False
    config = LlavaConfig(vision_config=vision.config, text_config=llm.config, image_token_index=0,
                         image_seq_length=image_token_count(vision.config), projector_hidden_act="linear",
                         tie_word_embeddings=False)
    model = LlavaForConditionalGeneration(config).to(dtype)
    model.model.vision_tower.load_state_dict(vision.state_dict())
    model.model.language_model.load_state_dict(llm.model.state_dict())
    model.lm_head.load_state_dict(llm.lm_head.state_dict())
    model.resize_token_embeddings(len(AutoTokenizer.from_pretrained(llm_path)) + 1, mean_resizing=True)
    return model


def measure_one(which: str, llm_path: str, vision_path: str) -> dict:
    """In this (fresh) process: peak RSS growth of one build, and the bytes of the checkpoints it loads."""
    import torch

    from workflow_scripts.model.build import build_mllm
    from workflow_scripts.train.loop import peak_rss_bytes

    before = peak_rss_bytes()
    if which == "current":
        model, _ = build_mllm(llm_path, vision_path, dtype=torch.bfloat16)
    else:
        model = previous_build(llm_path, vision_path, torch.bfloat16)
    # Read every weight once, as moving the model to a GPU does: safetensors weights are memory-mapped and only
    # count in RSS once read.
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.sum()
    peak = peak_rss_bytes()
    weights = sum(f.stat().st_size for d in (llm_path, vision_path) for f in Path(d).glob("*.safetensors"))
    return {"build": which, "peak_rss_growth_bytes": peak - before, "weight_bytes": weights,
            "dtypes": sorted({str(p.dtype) for p in model.parameters()})}


def run(layers: int, hidden: int, intermediate: int, vocab: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        llm, vision = write_models(Path(tmp), layers, hidden, intermediate, vocab)
        rows = []
        for which in ("previous", "current"):
            out = subprocess.run([sys.executable, __file__, "--measure", which, llm, vision], check=True,
                                 capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for row in rows:
        row["peak_over_weights"] = row["peak_rss_growth_bytes"] / row["weight_bytes"]
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=5504)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--measure", nargs=3, metavar=("WHICH", "LLM", "VISION"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure_one(*args.measure)))
        return
    rows = run(args.layers, args.hidden, args.intermediate, args.vocab)
    print(f"LLaMA {args.layers}x{args.hidden} (intermediate {args.intermediate}, vocab {args.vocab}) "
          "+ CLIP ViT-L/14, bf16")
    print("| build | weights (GB) | peak RSS growth (GB) | peak / weights |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['build']} | {r['weight_bytes'] / 1e9:.2f} | {r['peak_rss_growth_bytes'] / 1e9:.2f} "
              f"| {r['peak_over_weights']:.2f} |")
    print(f"previous / current peak: {rows[0]['peak_rss_growth_bytes'] / rows[1]['peak_rss_growth_bytes']:.2f}x")


if __name__ == "__main__":
    main()
