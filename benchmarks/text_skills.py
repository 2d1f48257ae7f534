"""Can the toy base LLM answer questions about a scene it reads in words? The premise of the study, in miniature.

The paper treats LLM -> MLLM as domain adaptation: the LLM already answers such questions from text, and tuning
moves that skill to image input. The toy LLM pretrains on scenes shown in words where an image would be
(``world.scene_document``). This asks it, greedily, the demo's short-answer questions about fresh scenes shown
the same way, and prints the share answered right per kind of question, next to the best answer that ignores the
scene. A kind at the guess here is a skill the LLM does not bring to stage 2: the images cannot unlock it there.

    .venv/bin/python benchmarks/text_skills.py                       # after `make demo` (the toy LLM)
    .venv/bin/python benchmarks/text_skills.py --llm OTHER_LLM --scenes 300
    # the same questions to the LLM as stage 1 left it (the MLLM asked in text only, no image):
    .venv/bin/python benchmarks/text_skills.py --connector results/demo/pretrain/toy-vicuna/connector.safetensors

Stage 1 that trains LLM groups (``stage1.trains``) can erase the skill before stage 2 begins; ``--connector``
shows it, ``--strategy``/``--delta`` add a stage-2 cell.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import numpy as np
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from workflow_scripts.data.conversation import generation_prompt
from workflow_scripts.evaluate.run import read_config
from workflow_scripts.model.trained import build_trained
from workflow_scripts.toyworld import formats
from workflow_scripts.toyworld import language as lang
from workflow_scripts.toyworld.scenes import sample_scenes


def questions(scenes, rng) -> list[tuple[str, str, str]]:
    """(kind, prompt text, short answer): every question of each scene's pool and an existence question answered
    yes and one answered no (as balanced as POPE)."""
    out = []
    for scene in scenes:
        pool = lang.qa_pool(scene, rng) + [lang.exists_qa(scene, rng, answer_yes=yes) for yes in (True, False)]
        for qa in pool:
            out.append((qa.kind, f"{lang.scene_in_words(scene)}\n{qa.question}{formats.SHORT_ANSWER}", qa.short))
    return out


@torch.no_grad()
def answer(model, tokenizer, prompts: list[str], batch_size: int = 32) -> list[str]:
    """Greedy answers, left-padded batches, cut at the end of the turn."""
    tokenizer.padding_side = "left"
    out = []
    for i in range(0, len(prompts), batch_size):
        batch = tokenizer([generation_prompt("vicuna_v1", p) for p in prompts[i:i + batch_size]],
                          return_tensors="pt", padding=True)
        ids = model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        out += [t.strip().rstrip(".").lower() for t in
                tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--llm", default="resources/toy/models/llm")
    ap.add_argument("--scenes", type=int, default=150)
    ap.add_argument("--connector", help="stage-1 safetensors: ask the MLLM stage 1 left (text only)")
    ap.add_argument("--strategy", help="with --delta: a stage-2 cell's strategy")
    ap.add_argument("--delta", help="a stage-2 cell's delta.safetensors")
    ap.add_argument("--vision", default="resources/toy/models/vision")
    ap.add_argument("--config", default="config/demo.yaml", help="model keys (vision, connector) for --connector")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if (args.strategy is None) != (args.delta is None) or (args.delta and not args.connector):
        ap.error("--strategy and --delta go together, with the --connector the cell was trained from")
    torch.set_num_threads(args.threads)
    if args.connector:
        config = read_config(argparse.Namespace(config=args.config, config_json=None))
        model, processor = build_trained(args.llm, args.vision, config, args.connector, args.strategy, args.delta)
        tokenizer, model = processor.tokenizer, model.eval()
    else:
        tokenizer = AutoTokenizer.from_pretrained(args.llm)
        model = LlamaForCausalLM.from_pretrained(args.llm).eval()
    asked = questions(sample_scenes(99, "text_skills", args.scenes, 0), np.random.default_rng(5))
    given = answer(model, tokenizer, [p for _, p, _ in asked])
    right, truths, yes = defaultdict(list), defaultdict(Counter), defaultdict(list)
    for (kind, _, truth), said in zip(asked, given):
        right[kind].append(said == truth)
        truths[kind][truth] += 1
        yes[kind].append(said == "yes")
    asked_of = " + ".join(x for x in (args.llm, args.connector, args.delta) if x)
    print(f"\n{asked_of}: short answers about a scene shown in words ({args.scenes} fresh scenes)")
    print(f"{'question':16s} {'n':>5s} {'right %':>8s} {'guess %':>8s} {'said yes %':>10s}")
    for kind in sorted(right):
        guess = 100 * truths[kind].most_common(1)[0][1] / len(right[kind])
        said_yes = f"{100 * np.mean(yes[kind]):10.1f}" if set(truths[kind]) <= {"yes", "no"} else ""
        print(f"{kind:16s} {len(right[kind]):5d} {100 * np.mean(right[kind]):8.1f} {guess:8.1f} {said_yes}")


if __name__ == "__main__":
    main()
