"""Markdown and self-contained HTML of a :class:`Report` (``write.py`` writes them).

The HTML needs no server and no script: plain tables, PNGs embedded as base64 ``data:`` URIs,
so the one file can be mailed, attached to an MLflow run or opened from any disk. The markdown
links the PNGs by relative path (GitHub and MLflow's viewer show tables; images where the
folder is beside it). Both link the detail files written beside them (robustness.csv) by name.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from clear_ray.report.document import Report
from clear_ray.report.tables import Table
from clear_ray.search.results import markdown

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}caption{caption-side:bottom;color:#555}"
    "figure{display:inline-block;margin:0 1em 1em 0}img{max-width:520px}"
)


def to_markdown(report: Report, base: Path) -> str:
    """``base``: the folder the markdown is written to (images are linked relative to it)."""
    parts = [f"# {report.title}"]
    for section in report.sections:
        parts.append(f"## {section.heading}")
        parts.extend(section.lines)
        for table in section.tables:
            parts.append(markdown(table.header, table.rows))
            if table.caption:
                parts.append(f"*{table.caption}*")
        parts.extend(f"[{text}]({name})" for text, name in section.links)
        for caption, image in section.images:
            parts.append(f"![{caption}]({Path(os.path.relpath(image, base)).as_posix()})")
    return "\n\n".join(parts) + "\n"


def _html_table(table: Table) -> str:
    escape = html.escape
    head = "".join(f"<th>{escape(cell)}</th>" for cell in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows
    )
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_image(caption: str, image: Path) -> str:
    data = base64.b64encode(image.read_bytes()).decode("ascii")
    alt = html.escape(caption)
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
        f"<figcaption>{alt}</figcaption></figure>"
    )


def to_html(report: Report) -> str:
    title = html.escape(report.title)
    parts = [f"<h1>{title}</h1>"]
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts.extend(f"<p>{html.escape(line)}</p>" for line in section.lines)
        parts.extend(_html_table(table) for table in section.tables)
        parts.extend(
            f'<p><a href="{html.escape(name)}">{html.escape(text)}</a></p>'
            for text, name in section.links
        )
        parts.extend(_html_image(caption, image) for caption, image in section.images)
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
