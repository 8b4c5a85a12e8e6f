"""The results: one table on the terminal (rich), one JSON document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.harness import Figure, MeasureResult


def _number(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.2f}×"
    if unit in ("ms", "s"):
        return f"{value:,.3f} {unit}" if value < 10 else f"{value:,.1f} {unit}"
    if unit == "µs":
        return f"{value:,.0f} µs"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit in ("/s", "tps"):
        return f"{value:,.0f}{'/s' if unit == '/s' else ' tps'}"
    return f"{value:,.0f}"


def _status(figure: Figure) -> str:
    holds = figure.holds()
    if holds is None:
        return ""
    return "[green]holds[/green]" if holds else "[red]MISS[/red]"


def table(results: list[MeasureResult], title: str) -> Table:
    out = Table(title=title, show_lines=False)
    for column, justify in (("measure", "left"), ("figure", "left"), ("median", "right"),
                            ("spread (min–max)", "right"), ("n", "right"), ("target", "left"),
                            ("", "left")):  # fmt: skip
        out.add_column(column, justify=justify)  # type: ignore[arg-type]
    for result in results:
        for index, figure in enumerate(result.figures):
            if not figure.samples:
                out.add_row(result.name if index == 0 else "", figure.name, "–", "", "0", "", "")
                continue
            stat = figure.stat
            spread = (
                f"{_number(stat.low, figure.unit)} – {_number(stat.high, figure.unit)}"
                if len(stat.samples) > 1
                else ""
            )
            out.add_row(
                result.name if index == 0 else "",
                figure.name + (f" [dim]({figure.note})[/dim]" if figure.note else ""),
                _number(stat.median, figure.unit),
                spread,
                str(len(stat.samples)),
                figure.target or "",
                _status(figure),
            )
        out.add_section()
    return out


def markdown(results: list[MeasureResult]) -> str:
    """The same table as Markdown, for docs/performance.md."""
    lines = ["| measure | figure | median | spread (min–max) | n | target | |",
             "|---|---|--:|--:|--:|---|---|"]  # fmt: skip
    for result in results:
        for index, figure in enumerate(result.figures):
            if not figure.samples:
                continue
            stat = figure.stat
            spread = (
                f"{_number(stat.low, figure.unit)} – {_number(stat.high, figure.unit)}"
                if len(stat.samples) > 1
                else ""
            )
            holds = figure.holds()
            lines.append(
                f"| {result.name if index == 0 else ''} | {figure.name}"
                f"{f' ({figure.note})' if figure.note else ''} | "
                f"{_number(stat.median, figure.unit)} | {spread} | {len(stat.samples)} | "
                f"{(figure.target or '').replace('<=', '≤').replace('>=', '≥')} | "
                f"{'' if holds is None else ('holds' if holds else '**miss**')} |"
            )
    return "\n".join(lines) + "\n"


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def print_table(results: list[MeasureResult], title: str) -> None:
    Console(width=160).print(table(results, title))
