"""A small table type and its renderings: Markdown (README, terminal), CSV (analysis), LaTeX (paper, booktabs,
notes as table footnotes) and HTML (the Snakemake report shows it inline, caption and notes included).

A cell is a number, a string, or None. None means the run behind the cell has not finished or failed, and shows
as "—" (Markdown), "--" (LaTeX) or an empty field (CSV) — never as a zero.
"""

from __future__ import annotations

import csv
import html
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
    lines += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:  # footnotes under the rule, as papers set them (needs only booktabs)
        lines += [r"\par\smallskip", r"\begin{minipage}{\linewidth}\footnotesize"]
        lines += [tex_escape(note) + r"\\" for note in table.notes]
        lines += [r"\end{minipage}"]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    """A standalone HTML page: the title as caption, the table, the notes below it."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(table.text(c, v, MISSING_MD))}</td>" for c, v in zip(table.columns, row))
                   + "</tr>\n" for row in table.rows)
    notes = "".join(f"<li>{esc(n)}</li>" for n in table.notes)
    style = ("body{font-family:sans-serif;font-size:14px} table{border-collapse:collapse} caption{font-weight:bold;"
             "text-align:left;padding:4px 0} th,td{padding:3px 8px;border-bottom:1px solid #ccc} "
             "td:nth-child(n+3),th:nth-child(n+3){text-align:right}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{esc(table.title)}</title>"
            f"<style>{style}</style></head><body>\n<table>\n<caption>{esc(table.title)}</caption>\n"
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"
            + (f"<ul>{notes}</ul>\n" if notes else "") + "</body></html>\n")


RENDERERS = {"md": to_markdown, "csv": to_csv, "tex": to_latex, "html": to_html}
