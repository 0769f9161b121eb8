"""One self-contained HTML page for a report: plots embedded as base64 PNG, tables inline.

Opens in any browser from the file system, with no server and nothing to fetch (a
cluster's login node, a laptop after ``scp``). A small inline script counts the plots
that decoded and writes the count into ``<body data-plots-loaded="N">`` — what the
test checks in a real headless browser.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; border: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; } td, th { padding: 3px 8px; border: 1px solid #ddd; }
th { background: #f4f4f4; } td { text-align: right; } td:first-child { text-align: left; }
"""
SCRIPT = """
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.plotsLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
});
"""


@dataclass(frozen=True)
class Section:
    heading: str
    plot: Path | None = None
    table: pd.DataFrame | None = None


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_html(path: Path, title: str, summary: str, sections: list[Section]) -> Path:
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(summary)}</p>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.plot is not None:
            body.append(_image(section.plot))
        if section.table is not None and not section.table.empty:
            table = section.table.astype(object).where(section.table.notna(), "")
            body.append(table.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>{''.join(body)}</body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path
