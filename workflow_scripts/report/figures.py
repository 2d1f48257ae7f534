"""One figure per LLM: the selection score against the learning rate (log x-axis), one line per strategy,
the chosen LR ringed. Missing runs are gaps in a line, never zeros.

Entry: ``python -m workflow_scripts.report.figures --config-json J --results DIR --llm NAME --out PNG``.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402

from workflow_scripts import study  # noqa: E402
from workflow_scripts.report import cli, paths  # noqa: E402


def sweep_figure(config: dict, selection: dict, llm: str, out: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    lrs = sorted(config["learning_rates"])
    for strategy in config["strategies"]:
        sel = selection["selected"][llm][strategy]
        ys = [sel["scores"].get(study.lr_text(x)) for x in lrs]
        ax.plot(lrs, [float("nan") if y is None else y for y in ys], marker="o", label=strategy)
        if sel["lr"] is not None:
            ax.scatter([study.lr_from_text(config, sel["lr"])], [sel["score"]], s=160, facecolors="none",
                       edgecolors="black", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"{selection['benchmark']} {selection['metric']}")
    ax.set_title(f"{config['models'][llm]['label']}: LR sweep (ringed: chosen)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    tmp = os.path.join(os.path.dirname(out) or ".", f".{os.path.basename(out)}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)


def main(argv=None) -> None:
    ap = cli.report_parser(__doc__)
    ap.add_argument("--llm", required=True)
    ap.add_argument("--out", required=True)
    args = cli.parse(ap, argv)
    selection = paths.load_selection(args.results)
    sweep_figure(args.config, selection, args.llm, args.out)


if __name__ == "__main__":
    main()
