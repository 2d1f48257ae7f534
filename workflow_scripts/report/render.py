"""A small table type and its three renderings: Markdown (README, terminal), CSV (analysis), LaTeX (paper).

A cell is a number, a string, or None. None means the run behind the cell has not finished or failed, and shows
as "—" (Markdown), "--" (LaTeX) or an empty field (CSV) — never as a zero.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

MISSING_MD, MISSING_TEX = "—", "--"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    digits: dict[str, int] = field(default_factory=dict)  # column -> decimals (default 2)
    notes: list[str] = field(default_factory=list)

    def text(self, column: str, value, missing: str) -> str:
        if value is None:
            return missing
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:.{self.digits.get(column, 2)}f}"


def to_markdown(table: Table) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(table.text(c, v, MISSING_MD) for c, v in zip(table.columns, row)) + " |")
    if table.notes:
        lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if v is None else (round(v, 6) if isinstance(v, float) else v) for v in row])
    return buf.getvalue()


TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
               "{": r"\{", "}": r"\}", "—": "--", "×": r"$\times$", "~": r"\textasciitilde{}"}


def tex_escape(text: str) -> str:
    return "".join(TEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    spec = "l" * 2 + "r" * (len(table.columns) - 2)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(table.title)}}}",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(tex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    for row in table.rows:
        lines.append(" & ".join(tex_escape(table.text(c, v, MISSING_TEX)) for c, v in zip(table.columns, row))
                     + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


RENDERERS = {"md": to_markdown, "csv": to_csv, "tex": to_latex}
