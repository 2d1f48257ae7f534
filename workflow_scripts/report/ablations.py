"""Ablation tables: the data-type ablation (one instruct record type, or a random sample of the same size, vs
the whole set) and the connector ablation (LayerNorm tuning with / without the connector, the connector alone).
Both at the LR chosen for the ablation's base strategy.

Entry: ``python -m workflow_scripts.report.ablations --config-json J --results DIR --ablation data_type``.
"""

from __future__ import annotations

from functools import partial

from workflow_scripts.io import write_text
from workflow_scripts.report import cli, paths
from workflow_scripts.report.render import RENDERERS, Table, to_markdown
from workflow_scripts.report.tables import BENCH_COLUMNS, scores, shown


def columns_for(benchmarks: list[str]) -> list[tuple[str, str, str]]:
    return [c for c in BENCH_COLUMNS if c[1] in benchmarks]


def data_type_table(config: dict, results: str, selection: dict) -> Table:
    spec = config["ablations"]["data_type"]
    cols = columns_for(spec["benchmarks"])
    table = Table(f"Data-type ablation: {shown(spec['strategy'])} on {spec['subset_size']:,} records of one type",
                  ["LLM", "subset", "records", "LR"] + [c[0] for c in cols])
    for llm, model in config["models"].items():
        lr = selection["selected"][llm][spec["strategy"]]["lr"]
        for subset in spec["subsets"]:
            records = "all" if subset == "full" else spec["subset_size"]
            cells = (scores(cols, partial(paths.data_subset_metrics, results, llm, spec["strategy"], subset, lr))
                     if lr else [None] * len(cols))
            table.rows.append([model["label"], subset, records, lr] + cells)
    table.notes = ["full: the main sweep's run at the chosen LR; random: any record type.",
                   "— : the run has not finished or failed."]
    return table


def connector_table(config: dict, results: str, selection: dict) -> Table:
    spec = config["ablations"]["connector"]
    cols = columns_for(spec["benchmarks"])
    table = Table(f"Connector ablation at the LR chosen for {shown(spec['base'])}",
                  ["LLM", "strategy", "trainable %", "LR"] + [c[0] for c in cols], digits={"trainable %": 3})
    for llm, model in config["models"].items():
        lr = selection["selected"][llm][spec["base"]]["lr"]
        for strategy in spec["strategies"]:
            eff = paths.read_json(paths.efficiency(results, llm, strategy, lr)) if lr else None
            cells = scores(cols, partial(paths.eval_metrics, results, llm, strategy, lr)) if lr else [None] * len(cols)
            table.rows.append([model["label"], shown(strategy), eff["parameters"]["trainable_pct"] if eff else None, lr]
                              + cells)
    table.notes = ["— : the run has not finished or failed."]
    return table


BUILDERS = {"data_type": data_type_table, "connector": connector_table}


def main(argv=None) -> None:
    ap = cli.report_parser(__doc__)
    ap.add_argument("--ablation", required=True, choices=sorted(BUILDERS))
    args = cli.parse(ap, argv)
    selection = paths.load_selection(args.results)
    table = BUILDERS[args.ablation](args.config, args.results, selection)
    for ext, render in RENDERERS.items():
        write_text(paths.table(args.results, f"ablation_{args.ablation}", ext), render(table))
    print(to_markdown(table))


if __name__ == "__main__":
    main()
