"""The paper's tables from result files: Table 1 (benchmarks at the chosen LR, with control rows), Table 2
(efficiency), and the LR sweep. Each is written as Markdown, CSV and LaTeX under ``results/tables/``.

Entry: ``python -m workflow_scripts.report.tables --config-json J --results DIR``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import partial

from workflow_scripts import study
from workflow_scripts.io import write_text
from workflow_scripts.model.strategies import LLM_GROUPS, get_strategy
from workflow_scripts.report import cli, paths
from workflow_scripts.report.render import RENDERERS, Table, to_markdown

# Table 1's benchmark columns: header, benchmark, metric key in its metrics.json. Scores as the paper reports
# them (MME totals, VQAv2 accuracy %, CIDEr x100, POPE F1 % averaged over the three splits). MME-P8 is the
# perception sum of the authors' sibling code (8 subtasks: landmark and artwork left out, max 1600).
BENCH_COLUMNS = [("MME-P", "mme", "perception"), ("MME-P8", "mme", "perception_8"), ("MME-C", "mme", "cognition"),
                 ("VQAv2", "vqav2", "accuracy"),
                 ("MSCOCO", "coco", "CIDEr"), ("Flickr30k", "flickr30k", "CIDEr"), ("POPE", "pope", "f1_mean")]
TABLE_NAMES = ("table1_main", "table2_efficiency", "lr_sweep", "vqav2_question_types")
GIB = 1024 ** 3


def shown(strategy: str) -> str:
    """A strategy as tables show it: the paper's name (LayerNorm, LoRA, Attn. QV Proj., ...)."""
    return get_strategy(strategy).display


def bench_columns(config: dict) -> list[tuple[str, str, str]]:
    return [c for c in BENCH_COLUMNS if c[1] in config["benchmarks"]]


def scores(columns: list[tuple[str, str, str]], metrics_path) -> list:
    """The benchmark cells of one row; ``metrics_path(bench)`` gives the file (a missing file: None). A score on
    a deliberately partial benchmark carries its count: "71.20 (150/2374)"."""
    out = []
    for _, bench, key in columns:
        metrics = paths.read_json(metrics_path(bench))
        value = None if metrics is None else metrics.get(key)
        size = (metrics or {}).get("size", {})
        if value is not None and size.get("partial"):
            value = f"{value:.2f} ({size['items']}/{size['expected']})"
        out.append(value)
    return out


def no_image_guess_cells(columns: list[tuple[str, str, str]], metrics_path) -> list:
    """The best no-image guess per benchmark (recorded by every evaluation; read from the stage-1 control's):
    "n/a" where a benchmark has none (captioning)."""
    out = []
    for _, bench, key in columns:
        metrics = paths.read_json(metrics_path(bench))
        out.append(None if metrics is None else (metrics.get("no_image_guess") or {}).get(key, "n/a"))
    return out


def blind_cell(config: dict, selection: dict, llm: str) -> tuple[str, str | None]:
    """The model the blind control runs: the first strategy of the config at its chosen LR."""
    strategy = config["strategies"][0]
    return strategy, selection["selected"][llm][strategy]["lr"]


def trainable_pct(results: str, llm: str, strategy: str, lr: str | None, analytic: dict) -> float | None:
    """Trainable share of the whole MLLM: as measured by the run, else from the analytic parameter table."""
    eff = paths.read_json(paths.efficiency(results, llm, strategy, lr)) if lr else None
    if eff is not None:
        return eff["parameters"]["trainable_pct"]
    row = analytic.get((llm, strategy))
    return None if row is None else float(row["trainable_pct"])


def read_param_table(results: str) -> dict[tuple[str, str], dict]:
    path = paths.param_table(results)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {(r["llm"], r["strategy"]): r for r in csv.DictReader(f)}


def stage1_trained(config: dict) -> str:
    """What stage 1 trained, as the control row names it: 'connector', 'connector + norms', 'connector + LLM'."""
    trains = config.get("stage1", {}).get("trains", ["connector"])
    if set(LLM_GROUPS) <= set(trains):
        return " + ".join([g for g in trains if g not in LLM_GROUPS] + ["LLM"])
    return " + ".join(trains)


@dataclass(frozen=True)
class Row:
    """One row of Table 1 for one LLM: its name, LR and trainable share, and where its evaluations are
    (``metrics(bench)``: a metrics.json path; ``guess``: read the no-image guess those files record)."""

    name: str
    lr: str | None
    trainable: float | str | None
    metrics: object
    guess: bool = False


def rows_of(config: dict, results: str, selection: dict, llm: str, analytic: dict) -> list[Row]:
    """Table 1's rows for ``llm`` in order: the best no-image guess, stage 1 only, blind, text priors, then every
    strategy at its chosen LR (``lr`` None: not chosen yet, its cells are missing). ``analytic``: the parameter
    table (``read_param_table``), read once per table."""
    stage1 = partial(paths.stage1_metrics, results, llm)
    rows = [Row("best no-image guess", "n/a", "n/a", stage1, guess=True),
            Row(f"stage 1 only ({stage1_trained(config)})", "n/a", "n/a", stage1)]
    strategy, lr = blind_cell(config, selection, llm)
    rows.append(Row(f"blind ({shown(strategy)}, blank images)", lr, "n/a",
                    partial(paths.eval_metrics, results, llm, strategy, lr, evalset="eval_blind")))
    for strategy in config.get("controls", {}).get("text_priors", []):
        lr = selection["selected"][llm][strategy]["lr"]
        rows.append(Row(f"text priors ({shown(strategy)}, blank images in training and test)", lr, "n/a",
                        partial(paths.eval_metrics, results, llm, strategy, lr, evalset="eval_text_priors")))
    for strategy in config["strategies"]:
        lr = selection["selected"][llm][strategy]["lr"]
        rows.append(Row(shown(strategy), lr, trainable_pct(results, llm, strategy, lr, analytic),
                        partial(paths.eval_metrics, results, llm, strategy, lr)))
    return rows


def table1(config: dict, results: str, selection: dict) -> Table:
    table = Table("Table 1: benchmarks at the learning rate chosen on "
                  f"{selection['benchmark']} {selection['metric']}",
                  ["LLM", "strategy", "LR", "trainable %"] + [c[0] for c in bench_columns(config)],
                  digits={"trainable %": 3})
    columns, analytic = bench_columns(config), read_param_table(results)
    for llm, model in config["models"].items():
        for row in rows_of(config, results, selection, llm, analytic):
            if row.lr is None:
                cells = [None] * len(columns)
            else:
                cells = (no_image_guess_cells if row.guess else scores)(columns, row.metrics)
            table.rows.append([model["label"], row.name, row.lr, row.trainable] + cells)
    table.notes = ["columns: MME-P, MME-P8 (the 8-subtask sum) and MME-C are MME sums of 100 x (accuracy + acc+) per "
                   "subtask; VQAv2 is accuracy (%); MSCOCO and Flickr30k are CIDEr (x 100); POPE is F1 (%), the mean "
                   "of its random, popular and adversarial splits.",
                   "— : the run has not finished or failed; 0.00 is a real score.",
                   "best no-image guess: per VQAv2 question type the training set's most common answer; \"yes\" "
                   "everywhere on MME and POPE (balanced: the best constant answer).",
                   "blind: the first strategy's model at its chosen LR with every image blank — what text alone gets.",
                   "text priors: the strategy trained and tested with every image blank, at its chosen LR — what the "
                   "instruct text alone teaches; the honest baseline for that strategy's row."]
    if not config.get("controls", {}).get("text_priors"):
        table.notes.pop()
    if config.get("reference_models"):
        table.rows += reference_rows(config, results, columns)
        table.notes.append("released checkpoint / published / difference: calibration (reference_models), the "
                           "study's evaluation of a released model beside its published number; n/a: no published "
                           "number for that column. Tolerances and sources: tables/calibration.md.")
    return table


def reference_rows(config: dict, results: str, columns: list[tuple[str, str, str]]) -> list[list]:
    """Per reference model: our score, the published one and the difference, in the columns it has a published
    number for ("n/a" elsewhere; None where its evaluation has not finished)."""
    from workflow_scripts.report.calibration import published_value

    rows = []
    for name, ref in config["reference_models"].items():
        ours, published, diff = [], [], []
        for _, bench, key in columns:
            spec = ref["published"].get(bench)
            if spec is None or spec["metric"] != key:
                ours.append("n/a"), published.append("n/a"), diff.append("n/a")
                continue
            metrics = paths.read_json(paths.reference_metrics(results, name, bench))
            value = None if metrics is None else metrics.get(key)
            try:
                target = published_value(results, {**spec, "bench": bench})[0]
            except OSError:  # a cell standing in for the published number has not been evaluated yet
                target = None
            ours.append(value), published.append(target)
            diff.append(None if value is None or target is None else value - target)
        for what, cells in (("released checkpoint, our evaluation", ours), ("published", published),
                            ("difference", diff)):
            rows.append([ref["label"], what, "n/a", "n/a"] + cells)
    return rows


def vqav2_question_types(config: dict, results: str, selection: dict) -> Table:
    """VQAv2 accuracy per question type for Table 1's rows: where a model reads the picture (colour questions
    above the blind and text-priors rows) and where it answers from the question alone (at the no-image guess).
    The columns are the question types the evaluation recorded; each header carries its question count."""
    table = Table("VQAv2 accuracy per question type (Table 1's rows)", ["LLM", "strategy", "LR"])
    if "vqav2" not in config["benchmarks"]:
        table.notes = ["VQAv2 is not among this config's benchmarks."]
        return table
    found: dict[str, dict] = {}
    for llm, model in config["models"].items():
        for row in rows_of(config, results, selection, llm, analytic={}):  # no trainable % column here
            metrics = paths.read_json(row.metrics("vqav2")) if row.lr is not None else None
            if metrics is not None and row.guess:
                metrics = metrics.get("no_image_guess")
            types = (metrics or {}).get("by_question_type", {})
            for qtype, cell in types.items():
                found.setdefault(qtype, cell)
            table.rows.append([model["label"], row.name, row.lr, types])
    order = sorted(found)
    table.columns += [f"{t} ({found[t]['questions']})" for t in order]
    table.rows = [r[:3] + [r[3][t]["accuracy"] if t in r[3] else None for t in order] for r in table.rows]
    table.notes = ["— : the run has not finished or failed, or its evaluation predates per-type scores.",
                   "(n): questions of that type in the evaluated subset; types as the annotations' question_type."]
    return table


def reduction(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or not b else f"{100 * (1 - a / b):.1f} %"


def table2(config: dict, results: str, selection: dict) -> Table:
    analytic = read_param_table(results)
    table = Table("Table 2: efficiency of stage-2 finetuning at the chosen LR",
                  ["LLM", "strategy", "trainable params", "trainable %", "peak memory GiB (measured)", "measured on",
                   "memory GiB (analytic, per GPU)", "step time s"], digits={"trainable %": 3, "step time s": 3})
    for llm, model in config["models"].items():
        measured = {}
        for strategy in config["strategies"]:
            lr = selection["selected"][llm][strategy]["lr"]
            eff = paths.read_json(paths.efficiency(results, llm, strategy, lr)) if lr else None
            row = analytic.get((llm, strategy))
            params = (eff["parameters"]["trainable_params"] if eff else
                      int(row["trainable_params"]) if row else None)
            memory = eff["peak_memory_bytes"] / GIB if eff and eff.get("peak_memory_bytes") else None
            measured[strategy] = (params, memory, eff["step_time_s"] if eff else None)
            table.rows.append([model["label"], shown(strategy), params,
                               trainable_pct(results, llm, strategy, lr, analytic),
                               memory, eff.get("peak_memory_kind") if eff else None,
                               float(row["total_gib"]) if row else None, measured[strategy][2]])
        if "layernorm" in measured and "lora" in measured:
            (p_ln, m_ln, t_ln), (p_lo, m_lo, t_lo) = measured["layernorm"], measured["lora"]
            table.notes.append(f"{model['label']}: LayerNorm tuning trains {reduction(p_ln, p_lo)} fewer parameters"
                               f" than LoRA, with {reduction(m_ln, m_lo)} less peak memory and "
                               f"{reduction(t_ln, t_lo)} shorter steps.")
    table.notes.append("peak memory: torch.cuda.max_memory_allocated on GPU, peak RSS of the process on CPU.")
    return table


def tensors_changed(results: str, llm: str, strategy: str, lr: str) -> str | None:
    """"changed/trainable" tensors of a finished cell (None: no result, or written before this was recorded)."""
    eff = paths.read_json(paths.efficiency(results, llm, strategy, lr))
    changed = (eff or {}).get("tensors_changed")
    return None if changed is None else f"{changed['changed']}/{changed['trainable']}"


def lr_sweep(config: dict, results: str, selection: dict) -> Table:
    """Scores per LR, then per LLM x strategy how many trainable tensors each cell's training changed."""
    lrs = [study.lr_text(x) for x in config["learning_rates"]]
    table = Table(f"LR sweep: {selection['benchmark']} {selection['metric']} per learning rate",
                  ["LLM", "strategy"] + lrs + ["chosen LR"])
    changed_rows, no_ops = [], []
    for llm, model in config["models"].items():
        for strategy in config["strategies"]:
            sel = selection["selected"][llm][strategy]
            table.rows.append([model["label"], shown(strategy)] + [sel["scores"].get(lr) for lr in lrs] + [sel["lr"]])
            changed = [tensors_changed(results, llm, strategy, lr) for lr in lrs]
            changed_rows.append([model["label"], f"{shown(strategy)}: tensors changed"] + changed + [None])
            no_ops += [f"{llm}/{strategy}/{lr}" for lr, c in zip(lrs, changed)
                       if c and c.split("/")[0] != c.split("/")[1]]
    table.rows += changed_rows
    table.notes = [f"chosen: {selection['rule']}.",
                   "tensors changed: of the trainable tensors, how many differ (bit for bit) from their values before "
                   "training. Below all, updates rounded away in the weights' precision (bf16 on GPUs: a norm near 1 "
                   "ignores steps under 2^-8) and the cell trained less than it seems."]
    if no_ops:
        table.notes.append(f"cells where some trainable tensors did not change: {', '.join(no_ops)}.")
    if selection.get("mode") == "halving":
        table.notes.append("successive halving: a — is an LR stopped at the rung (its partial-run score is in "
                           "selection/best_lr.json, rung_scores).")
    return table


def build(config: dict, results: str) -> dict[str, Table]:
    selection = paths.load_selection(results)
    return {"table1_main": table1(config, results, selection), "table2_efficiency": table2(config, results, selection),
            "lr_sweep": lr_sweep(config, results, selection),
            "vqav2_question_types": vqav2_question_types(config, results, selection)}


def write(tables: dict[str, Table], results: str) -> None:
    for name, table in tables.items():
        for ext, render in RENDERERS.items():
            write_text(paths.table(results, name, ext), render(table))


def main(argv=None) -> None:
    ap = cli.report_parser(__doc__)
    args = cli.parse(ap, argv)
    tables = build(args.config, args.results)
    write(tables, args.results)
    print(to_markdown(tables["table1_main"]))


if __name__ == "__main__":
    main()
