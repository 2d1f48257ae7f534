"""Copy generated tables into README.md, each between ``<!-- demo:NAME:start -->`` and ``<!-- demo:NAME:end -->``
(NAME: the table file's name without ``.md``), so the README's example output is the demo's real output, never
typed by hand.

Entry: ``python -m workflow_scripts.report.readme README.md results/demo/tables/table1_main.md [more tables]``.
"""

from __future__ import annotations

import os
import sys

from workflow_scripts.io import write_text


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of table ``name``'s block."""
    return f"<!-- demo:{name}:start -->", f"<!-- demo:{name}:end -->"


def splice(readme: str, table: str, name: str) -> str:
    """``readme`` with the text between table ``name``'s markers replaced by ``table``."""
    start, end = markers(name)
    if readme.count(start) != 1 or readme.count(end) != 1 or readme.index(start) > readme.index(end):
        raise ValueError(f"README needs exactly one {start} ... {end} block")
    head, rest = readme.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{table.strip()}\n{end}{tail}"


def main(argv=None) -> None:
    readme_path, *table_paths = argv or sys.argv[1:]
    with open(readme_path) as f:
        text = f.read()
    for path in table_paths:  # every block is checked before the README is rewritten
        with open(path) as g:
            text = splice(text, g.read(), os.path.basename(path).removesuffix(".md"))
    write_text(readme_path, text)


if __name__ == "__main__":
    main()
