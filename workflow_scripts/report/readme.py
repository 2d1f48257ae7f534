"""Copy generated tables into README.md, each between ``<!-- RUN:NAME:start -->`` and ``<!-- RUN:NAME:end -->``
(RUN: ``demo`` unless ``--run`` names another, e.g. ``demo_seed43``; NAME: the table file's name without
``.md``), so the README's example output is a run's real output, never typed by hand.

Entry: ``python -m workflow_scripts.report.readme [--run RUN] README.md results/demo/tables/table1_main.md [...]``.
"""

from __future__ import annotations

import argparse
import os

from workflow_scripts.io import write_text


def markers(name: str, run: str = "demo") -> tuple[str, str]:
    """The start and end markers of run ``run``'s table ``name``."""
    return f"<!-- {run}:{name}:start -->", f"<!-- {run}:{name}:end -->"


def splice(readme: str, table: str, name: str, run: str = "demo") -> str:
    """``readme`` with the text between the markers of run ``run``'s table ``name`` replaced by ``table``."""
    start, end = markers(name, run)
    if readme.count(start) != 1 or readme.count(end) != 1 or readme.index(start) > readme.index(end):
        raise ValueError(f"README needs exactly one {start} ... {end} block")
    head, rest = readme.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{table.strip()}\n{end}{tail}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", default="demo", help="which run's blocks: the RUN of the markers")
    ap.add_argument("readme")
    ap.add_argument("tables", nargs="+")
    args = ap.parse_args(argv)
    with open(args.readme) as f:
        text = f.read()
    for path in args.tables:  # every block is checked before the README is rewritten
        with open(path) as g:
            text = splice(text, g.read(), os.path.basename(path).removesuffix(".md"), args.run)
    write_text(args.readme, text)


if __name__ == "__main__":
    main()
