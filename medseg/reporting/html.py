"""Self-contained HTML: inline CSS and JavaScript, images as base64 data URIs.

Pages built here load nothing from the network (no CDN scripts, fonts or styles),
so a report opens offline, from a USB stick or an e-mail attachment.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Cell", "esc", "img_tag", "number_cell", "page", "stats_cell", "table"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1280px;margin:0 auto;padding:1.2rem 2rem 3rem}
h1{font-size:1.6rem;margin:.4rem 0}h2{font-size:1.25rem;margin-top:2rem;border-bottom:2px solid #d9dde5;
padding-bottom:.25rem}h3{font-size:1.05rem;margin:1.2rem 0 .4rem}
.meta{color:#5a6273;font-size:.9rem}.meta code{background:#eceff4;padding:0 .25rem;border-radius:3px}
pre{background:#1f2430;color:#e6e9ef;padding:.8rem;border-radius:6px;overflow:auto;font-size:.82rem;max-height:28rem}
table{border-collapse:collapse;font-size:.86rem;margin:.5rem 0;background:#fff}
th,td{border:1px solid #d9dde5;padding:.25rem .5rem;text-align:right;vertical-align:top}
th:first-child,td:first-child,td.text,th.text{text-align:left}
th{background:#eef1f6;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#dde3ee}
th.asc::after{content:" \\25B2";font-size:.7em}th.desc::after{content:" \\25BC";font-size:.7em}
tr.boundary td{background:#fff7e0}tr.boundary td:first-child{border-left:4px solid #f0a500}
td.better{color:#11772d;font-weight:600}td.worse{color:#b3261e;font-weight:600}
td.inf{color:#b3261e}small{color:#5a6273}
.scroll{max-height:34rem;overflow:auto;display:inline-block;max-width:100%}
figure{margin:.6rem 0 1.4rem}figure img{max-width:100%;height:auto;border:1px solid #d9dde5;background:#000}
figcaption{font-size:.88rem;color:#3a4150;margin-top:.2rem}
.note{background:#fff4d6;border-left:4px solid #f0a500;padding:.4rem .8rem;font-size:.9rem}
details summary{cursor:pointer;color:#2b5fb3}
.viewer{height:24rem;background:#000;border:1px solid #d9dde5;margin:.4rem 0}
.viewer canvas{width:100%;height:100%;display:block}
.viewer-bar{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;font-size:.9rem}
.swatch{display:inline-block;width:.8em;height:.8em;border:1px solid #888;vertical-align:middle}
"""

_SORT_JS = """
(function(){
  function key(cell){
    var v = cell.getAttribute('data-v');
    if (v === null) { return {n: false, s: cell.textContent.trim().toLowerCase()}; }
    if (v === 'inf') { return {n: true, x: Infinity}; }
    if (v === '-inf') { return {n: true, x: -Infinity}; }
    var x = parseFloat(v);
    return {n: true, x: isNaN(x) ? NaN : x};
  }
  function compare(a, b){
    if (a.n && b.n) {
      if (isNaN(a.x)) { return isNaN(b.x) ? 0 : 1; }
      if (isNaN(b.x)) { return -1; }
      return a.x < b.x ? -1 : (a.x > b.x ? 1 : 0);
    }
    var s = String(a.n ? a.x : a.s), t = String(b.n ? b.x : b.s);
    return s.localeCompare(t, undefined, {numeric: true});
  }
  function sortBy(table, index, th){
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = !th.classList.contains('asc');
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(c){
      c.classList.remove('asc', 'desc');
    });
    th.classList.add(asc ? 'asc' : 'desc');
    rows.sort(function(r1, r2){
      var c = compare(key(r1.cells[index]), key(r2.cells[index]));
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  }
  document.addEventListener('DOMContentLoaded', function(){
    Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function(table){
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th, index){
        th.title = 'click to sort';
        th.addEventListener('click', function(){ sortBy(table, index, th); });
      });
    });
  });
})();
"""


def esc(text: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(text), quote=True)


def img_tag(png: bytes, alt: str, width: int | None = None) -> str:
    """An ``<img>`` embedding PNG bytes as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    size = f' width="{int(width)}"' if width else ""
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}"{size}>'


@dataclass(frozen=True)
class Cell:
    """A table cell: shown text (already HTML), sort value and CSS class."""

    html: str
    sort: str | None = None
    css: str | None = None


def number_cell(value: float | None, digits: int = 4, css: str | None = None) -> Cell:
    """A numeric cell sorted by value; infinities shown as ``inf``, missing values as ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell("n/a", "nan", css)
    if math.isinf(value):
        return Cell("inf", "inf" if value > 0 else "-inf", "inf" if css is None else f"{css} inf")
    return Cell(f"{value:.{digits}f}", repr(float(value)), css)


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[Cell | str]],
    sortable: bool = False,
    row_classes: Sequence[str | None] | None = None,
    table_id: str | None = None,
) -> str:
    """An HTML table; ``sortable`` adds click-to-sort headers (inline script in :func:`page`)."""
    attrs = ' class="sortable"' if sortable else ""
    if table_id:
        attrs += f' id="{esc(table_id)}"'
    out = [f"<table{attrs}><thead><tr>"]
    out.extend(f"<th>{esc(h)}</th>" for h in header)
    out.append("</tr></thead><tbody>")
    for n, row in enumerate(rows):
        css = row_classes[n] if row_classes else None
        out.append(f'<tr class="{esc(css)}">' if css else "<tr>")
        for cell in row:
            c = cell if isinstance(cell, Cell) else Cell(esc(cell), None, "text")
            attr = (f' data-v="{esc(c.sort)}"' if c.sort is not None else "") + (
                f' class="{esc(c.css)}"' if c.css else ""
            )
            out.append(f"<td{attr}>{c.html}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML document."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style>"
        f"<script>{_SORT_JS}</script></head>\n"
        f"<body><main>{body}</main></body></html>\n"
    )


def stats_cell(stats: dict | None, digits: int) -> Cell:
    """A table cell for summary statistics: mean ± std, with median and range below (n/a if none)."""
    if not stats or stats.get("mean") is None:
        n_inf = (stats or {}).get("n_nonfinite", 0)
        return Cell(f"n/a{f' <small>({n_inf} inf)</small>' if n_inf else ''}", "nan")
    text = f"{stats['mean']:.{digits}f}"
    if stats.get("std") is not None:
        text += f" ± {stats['std']:.{digits}f}"
    details = []
    if stats.get("n_finite", 0) > 1:
        details.append(
            f"median {stats['median']:.{digits}f} [{stats['min']:.{digits}f}, {stats['max']:.{digits}f}]"
        )
    if stats.get("n_nonfinite"):
        details.append(f"{stats['n_nonfinite']} inf left out")
    small = f"<br><small>{esc('; '.join(details))}</small>" if details else ""
    return Cell(f"{esc(text)}{small}", repr(float(stats["mean"])))
