"""How many stage-2 steps does a toy cell need before its answers depend on the picture?

Trains one cell of the demo (its stage-1 weights, data and code path: ``train/finetune.py``, then
``evaluate/run.py``) for each step budget, and prints its VQAv2 accuracy per question type with the real images
and with blank ones, next to the best no-image guess. A question type where real beats blank is one the model
reads from the picture; one where both sit at the guess is answered from the question alone. Then POPE: its
accuracy with real and blank images, and the share of images whose present and absent objects got one answer
(``question_blind``): near 100 % with accuracy at 50 %, the answers follow the picture but not the question.

    .venv/bin/python benchmarks/grounding_budget.py                    # after `make demo`; ~3 min on 2 cores
    .venv/bin/python benchmarks/grounding_budget.py --strategy layernorm --lr 3.0e-3 --steps 60 240
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile

from workflow_scripts import study
from workflow_scripts.evaluate import run as evaluate
from workflow_scripts.train import finetune


def train(config: dict, args, steps: int, out: str) -> str:
    """The cell's delta after ``steps`` steps (the demo's stage 2 with only max_steps changed)."""
    config = copy.deepcopy(config)
    config["stage2"]["max_steps"] = steps
    delta = os.path.join(out, "delta.safetensors")
    finetune.main(["--llm", args.llm, "--vision", args.vision, "--connector", args.connector,
                   "--instruct-json", study.data_path(config, "instruct_json"),
                   "--images", study.data_path(config, "instruct_images"), "--template", "vicuna_v1",
                   "--strategy", args.strategy, "--lr", str(args.lr), "--config-json", json.dumps(config),
                   "--checkpoints", os.path.join(out, "checkpoints"), "--delta", delta,
                   "--efficiency", os.path.join(out, "efficiency.json"), "--threads", str(args.threads)])
    return delta


def metrics(config: dict, args, delta: str, out: str, bench: str, blind: bool) -> dict:
    """``bench``'s metrics of the cell (``blind``: every image blank)."""
    folder = os.path.join(out, bench, "blind" if blind else "real")
    evaluate.main(["--bench", bench, "--config-json", json.dumps(config), "--template", "vicuna_v1",
                   "--llm", args.llm, "--vision", args.vision, "--connector", args.connector,
                   "--strategy", args.strategy, "--delta", delta, "--out-dir", folder,
                   "--threads", str(args.threads)] + (["--blind"] if blind else []))
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.load(f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="config/demo.yaml")
    ap.add_argument("--llm", default="resources/toy/models/llm")
    ap.add_argument("--vision", default="resources/toy/models/vision")
    ap.add_argument("--connector", default="results/demo/pretrain/toy-vicuna/connector.safetensors")
    ap.add_argument("--strategy", default="finetune")
    ap.add_argument("--lr", type=float, default=1.0e-3)
    ap.add_argument("--steps", type=int, nargs="+", default=[60, 240])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    config = evaluate.read_config(argparse.Namespace(config=args.config, config_json=None))
    results, pope = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for steps in args.steps:
            out = os.path.join(tmp, str(steps))
            delta = train(config, args, steps, out)
            results[steps] = {blind: metrics(config, args, delta, out, "vqav2", blind) for blind in (False, True)}
            pope[steps] = {blind: metrics(config, args, delta, out, "pope", blind) for blind in (False, True)}
    guess = results[args.steps[0]][False]["no_image_guess"]["by_question_type"]
    header = f"{'question type':22s} {'n':>4s} {'guess':>6s}" + "".join(
        f" {f'{s} steps':>10s} {'blank':>6s}" for s in args.steps)
    print(f"\n{args.strategy} at lr {args.lr}, VQAv2 accuracy per question type\n{header}")
    for qtype, cell in results[args.steps[0]][False]["by_question_type"].items():
        line = f"{qtype:22s} {cell['questions']:4d} {guess.get(qtype, {}).get('accuracy', float('nan')):6.1f}"
        for s in args.steps:
            real, blank = (results[s][b]["by_question_type"][qtype]["accuracy"] for b in (False, True))
            line += f" {real:10.1f} {blank:6.1f}"
        print(line)
    overall = "".join(f" {results[s][False]['accuracy']:10.1f} {results[s][True]['accuracy']:6.1f}"
                      for s in args.steps)
    print(f"{'all':22s} {results[args.steps[0]][False]['questions']:4d} "
          f"{results[args.steps[0]][False]['no_image_guess']['accuracy']:6.1f}{overall}")

    print("\nPOPE per split: accuracy with real / blank images, and % of images answered blind to the question")
    print(f"{'split':22s}" + "".join(f" {f'{s} steps':>10s} {'blank':>6s} {'q-blind':>7s}" for s in args.steps))
    for split in pope[args.steps[0]][False]["splits"]:
        line = f"{split:22s}"
        for s in args.steps:
            real, blank = (pope[s][b]["splits"][split] for b in (False, True))
            line += f" {real['accuracy']:10.1f} {blank['accuracy']:6.1f} {real['question_blind']:7.1f}"
        print(line)


if __name__ == "__main__":
    main()
