"""Figures per LLM, labelled as the paper labels things (MM-Vicuna-7B, LayerNorm, LoRA, ...), legend outside the
plot, written as PNG (report, README) and as SVG and PDF (papers) beside it:

- ``sweep``: the selection score against the learning rate (log x-axis), one line per strategy, the chosen LR
  ringed. Missing runs are gaps in a line, never zeros.
- ``loss``: the stage-2 training loss against the step, one line per strategy at its chosen LR.

Entry: ``python -m workflow_scripts.report.figures --config-json J --results DIR --llm NAME --kind sweep|loss
--out PNG``.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402

from workflow_scripts import study  # noqa: E402
from workflow_scripts.model.strategies import get_strategy  # noqa: E402
from workflow_scripts.report import cli, paths  # noqa: E402

VECTOR_FORMATS = ("svg", "pdf")


def _save(fig, out: str) -> None:
    """``out`` (PNG) and its SVG/PDF siblings, each written to a temp name and renamed."""
    folder = os.path.dirname(out) or "."
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(out)[0]
    for path in [out] + [f"{stem}.{ext}" for ext in VECTOR_FORMATS]:
        ext = os.path.splitext(path)[1]
        tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{ext}")
        fig.savefig(tmp, bbox_inches="tight")
        os.replace(tmp, path)
    plt.close(fig)


def _legend_outside(ax) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def sweep_figure(config: dict, selection: dict, llm: str, out: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=150)
    lrs = sorted(config["learning_rates"])
    for strategy in config["strategies"]:
        sel = selection["selected"][llm][strategy]
        ys = [sel["scores"].get(study.lr_text(x)) for x in lrs]
        ax.plot(lrs, [float("nan") if y is None else y for y in ys], marker="o",
                label=get_strategy(strategy).display)
        if sel["lr"] is not None:
            ax.scatter([study.lr_from_text(config, sel["lr"])], [sel["score"]], s=160, facecolors="none",
                       edgecolors="black", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"{selection['benchmark']} {selection['metric']}")
    ax.set_title(f"{config['models'][llm]['label']}: learning-rate sweep (ringed: chosen)")
    ax.grid(True, which="both", alpha=0.3)
    _legend_outside(ax)
    _save(fig, out)


def loss_figure(config: dict, selection: dict, results: str, llm: str, out: str) -> None:
    """Training loss per step of each strategy at its chosen LR (a strategy without a finished run is left out
    and named in the legend as missing)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=150)
    for strategy in config["strategies"]:
        lr = selection["selected"][llm][strategy]["lr"]
        eff = paths.read_json(paths.efficiency(results, llm, strategy, lr)) if lr else None
        label = get_strategy(strategy).display
        if eff is None or not eff.get("loss_curve"):
            ax.plot([], [], label=f"{label} (missing)")
            continue
        steps, losses = zip(*eff["loss_curve"])
        ax.plot(steps, losses, linewidth=1.2, label=f"{label} (LR {lr})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{config['models'][llm]['label']}: stage-2 training loss at the chosen LR")
    ax.grid(True, alpha=0.3)
    _legend_outside(ax)
    _save(fig, out)


def main(argv=None) -> None:
    ap = cli.report_parser(__doc__)
    ap.add_argument("--llm", required=True)
    ap.add_argument("--kind", choices=("sweep", "loss"), default="sweep")
    ap.add_argument("--out", required=True)
    args = cli.parse(ap, argv)
    selection = paths.load_selection(args.results)
    if args.kind == "sweep":
        sweep_figure(args.config, selection, args.llm, args.out)
    else:
        loss_figure(args.config, selection, args.results, args.llm, args.out)


if __name__ == "__main__":
    main()
