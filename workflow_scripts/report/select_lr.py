"""Choose each LLM x strategy's learning rate on the selection benchmark (Flickr30k CIDEr in the paper).

The highest score wins; a tie goes to the larger learning rate (the paper sweeps LRs to find where each strategy
trains best; between equal scores the larger LR is the one that reached it in fewer effective updates, and it
keeps the choice deterministic). A cell without a finished, finite score is left out; a strategy with none at all
gets no selection (``lr: null``) and shows as missing in the tables.

``selection.mode: halving`` (successive halving, one rung): every LR first trains ``halving.fraction`` of its run
(``--rung`` picks, per LLM x strategy, the ``halving.keep`` best scores of those partial runs); only those continue
to the end, and the best of their final scores wins. Every LR still gets a score, from a cheaper partial run.

Entry: ``python -m workflow_scripts.report.select_lr --config-json J --results DIR --json OUT --md OUT``
(``--rung``: the halving rung's choice, ``--json`` only).
"""

from __future__ import annotations

import json
import math

from workflow_scripts import study
from workflow_scripts.io import write_json, write_text
from workflow_scripts.report import cli, paths


def best_lr(scores: dict[str, float | None], lr_values: dict[str, float]) -> str | None:
    """LR text with the highest finite score, ties to the larger LR; None when no score is usable."""
    usable = [(s, lr_values[lr], lr) for lr, s in scores.items() if s is not None and math.isfinite(s)]
    return max(usable)[2] if usable else None


def sweep_scores(config: dict, results: str, only_llm: str | None = None,
                 evalset: str = "eval") -> dict[str, dict[str, dict]]:
    """llm -> strategy -> LR text -> selection score (None where the result file is missing or the cell is in
    skip_cells); one LLM if given; ``evalset`` eval_rung: the scores at the halving rung."""
    bench, metric = selection_key(config)
    swept = set(study.swept_cells(config))
    out: dict = {}
    for cell in study.finetune_cells(config):
        if only_llm is not None and cell.llm != only_llm:
            continue
        metrics = (paths.read_json(paths.eval_metrics(results, cell.llm, cell.strategy, cell.lr, bench, evalset))
                   if cell in swept else None)
        score = None if metrics is None else metrics.get(metric)
        out.setdefault(cell.llm, {}).setdefault(cell.strategy, {})[cell.lr] = score
    return out


def selection_key(config: dict) -> tuple[str, str]:
    sel = config.get("selection", {})
    return sel.get("benchmark", "flickr30k"), sel.get("metric", "CIDEr")


def top_lrs(scores: dict[str, float | None], lr_values: dict[str, float], keep: int) -> list[str]:
    """The ``keep`` LRs with the highest finite scores (ties to the larger LR), best first."""
    usable = sorted(((s, lr_values[lr], lr) for lr, s in scores.items() if s is not None and math.isfinite(s)),
                    reverse=True)
    return [lr for _, _, lr in usable[:keep]]


def select_rung(config: dict, results: str) -> dict:
    """The halving rung: per LLM x strategy, the partial runs' scores and the LRs that continue."""
    halving = config["selection"]["halving"]
    lr_values = {study.lr_text(x): x for x in config["learning_rates"]}
    scores = sweep_scores(config, results, evalset="eval_rung")
    kept = {llm: {s: top_lrs(sc, lr_values, halving["keep"]) for s, sc in by.items()} for llm, by in scores.items()}
    return {"fraction": halving["fraction"], "keep": halving["keep"], "scores": scores, "kept": kept}


def select(config: dict, results: str, only_llm: str | None = None) -> dict:
    """The selection document: benchmark, metric, rule, and per LLM x strategy the chosen LR and all scores (in
    halving mode: the final scores of the LRs the rung kept, and every LR's rung score)."""
    bench, metric = selection_key(config)
    lr_values = {study.lr_text(x): x for x in config["learning_rates"]}
    halving = config.get("selection", {}).get("mode", "exact") == "halving"
    rung = paths.read_json(paths.rung_selection(results)) if halving else None
    if halving and rung is None:
        raise FileNotFoundError(f"{paths.rung_selection(results)}: selection.mode halving needs the rung's choice "
                                "(rule select_rung) first")
    chosen = {}
    for llm, by_strategy in sweep_scores(config, results, only_llm).items():
        chosen[llm] = {}
        for strategy, scores in by_strategy.items():
            if rung is not None:  # only the kept LRs trained to the end
                kept = rung["kept"][llm][strategy]
                scores = {lr: (s if lr in kept else None) for lr, s in scores.items()}
            lr = best_lr(scores, lr_values)
            chosen[llm][strategy] = {"lr": lr, "score": None if lr is None else scores[lr], "scores": scores}
            if rung is not None:
                chosen[llm][strategy]["rung_scores"] = rung["scores"][llm][strategy]
    rule = "highest score; ties to the larger LR"
    if rung is not None:
        rule = (f"successive halving: every LR trained {rung['fraction']:g} of its run, the {rung['keep']} best "
                f"continued to the end; {rule}")
    return {"benchmark": bench, "metric": metric, "rule": rule, "mode": "halving" if halving else "exact",
            "selected": chosen}


def markdown(doc: dict) -> str:
    lines = [f"# Learning rate chosen on {doc['benchmark']} {doc['metric']}", "",
             f"Rule: {doc['rule']}. Missing: the run has no finished result.", "",
             "| LLM | strategy | chosen LR | score |", "|---|---|---|---|"]
    for llm, by_strategy in doc["selected"].items():
        for strategy, sel in by_strategy.items():
            score = "—" if sel["score"] is None else f"{sel['score']:.2f}"
            lines.append(f"| {llm} | {strategy} | {sel['lr'] or '—'} | {score} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = cli.report_parser(__doc__)
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    ap.add_argument("--llm", default=None, help="only this LLM's sweep")
    ap.add_argument("--rung", action="store_true", help="the halving rung's choice (writes --json)")
    args = cli.parse(ap, argv)
    if args.rung:
        doc = select_rung(args.config, args.results)
        write_json(args.json, doc)
        print(json.dumps(doc["kept"], indent=1))
        return
    if not args.md:
        ap.error("--md is required")
    doc = select(args.config, args.results, args.llm)
    if args.json:
        write_json(args.json, doc)
    write_text(args.md, markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
