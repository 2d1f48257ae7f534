"""Copy a generated table into README.md between ``<!-- demo-table1:start -->`` and ``<!-- demo-table1:end -->``,
so the README's example output is the demo's real output, never typed by hand.

Entry: ``python -m workflow_scripts.report.readme README.md results/tables/table1_main.md``.
"""

from __future__ import annotations

import sys

from workflow_scripts.io import write_text

START, END = "<!-- demo-table1:start -->", "<!-- demo-table1:end -->"


def splice(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise ValueError(f"README needs exactly one {START} ... {END} block")
    head, rest = readme.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{table.strip()}\n{END}{tail}"


def main(argv=None) -> None:
    readme_path, table_path = (argv or sys.argv[1:])[:2]
    with open(readme_path) as f, open(table_path) as g:
        write_text(readme_path, splice(f.read(), g.read()))


if __name__ == "__main__":
    main()
