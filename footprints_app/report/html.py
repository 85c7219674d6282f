"""HTML pieces of the report: escaping, links, tables, embedded images, the page.

Every value that reaches the page goes through :func:`esc` (HTML-escaped,
and absolute paths of the machine that ran the job scrubbed), so a region
or tile name such as ``<script>`` or ``"quoted"`` shows as text. Links are
relative to the report, so its folder can move; images are PNG data URIs,
so the page opens offline.

The page being built keeps two facts for the duration of one
:func:`footprints_app.report.build_report` call: the output folder (for
relative links and scrubbing) and the models already shown (each model's
card once per page).
"""

from __future__ import annotations

import base64
import html
import os
import re
import urllib.parse
from collections.abc import Iterable

ROOTS: list[str] = []  # the output folder being reported on (set by build_report)
SHOWN_MODELS: set[str] = set()  # each model's card once per page
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"<>|,;()\[\]]+/)*([^\s/'\"<>|,;()\[\]]+/)")


def scrub(text: str) -> str:
    """Paths under the output folder made relative; other absolute paths cut to their tail.

    Example: with root ``/runs/r1``, ``"read /runs/r1/masks/a.tif and
    /data/area/tiles/a.tif"`` -> ``"read masks/a.tif and .../tiles/a.tif"``
    (the last folder kept: it usually says what the file is).
    """
    for root in ROOTS:
        text = text.replace(root + "/", "").replace(root, ".")
    return _ABSOLUTE.sub(r".../\1", text)


def esc(value) -> str:
    """Any value as safe HTML text (escaped, quotes included; paths scrubbed)."""
    return html.escape(scrub(str(value)))


def relative(path: str, run_dir: str) -> str:
    """``path`` relative to the report's folder, with ``/`` separators."""
    return os.path.relpath(path, ROOTS[0] if ROOTS else run_dir).replace(os.sep, "/")


def link(run_dir: str, path: str, text: str | None = None) -> str:
    """A link to an output, relative to the report (the folder can move)."""
    rel = relative(path, run_dir)
    return f'<a href="{html.escape(urllib.parse.quote(rel))}">{esc(text or rel)}</a>'


def png_file(path: str, alt: str) -> str:
    """An ``<img>`` of a PNG file, embedded."""
    with open(path, "rb") as f:
        return img(f.read(), alt)


def img(png: bytes, alt: str, element_id: str | None = None) -> str:
    """An ``<img>`` of PNG bytes, embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    ident = f' id="{html.escape(element_id)}"' if element_id else ""
    return f'<img{ident} alt="{esc(alt)}" src="data:image/png;base64,{data}">'


class Raw(str):
    """HTML that :func:`table` puts in a cell as it is (a link): never user text."""


def table(header: Iterable[str], rows: Iterable[Iterable], css: str | None = None) -> str:
    """A table; cells are escaped unless they are :class:`Raw`."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, Raw) else esc(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    cls = f" class='{css}'" if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pct(x, digits: int = 2) -> str:
    """A share as a percentage (``-`` when unknown)."""
    return "-" if x is None else f"{x:.{digits}%}"


def num(x, digits: int = 3) -> str:
    """A number with ``digits`` decimals (``-`` when unknown)."""
    return "-" if x is None else f"{x:.{digits}f}"


def ok(flag) -> str:
    """``yes`` or ``NO``."""
    return "yes" if flag else "NO"


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1rem auto;max-width:1200px;
color:#222;padding:0 1rem}h1{font-size:1.5rem;margin:.3rem 0}h2{border-bottom:2px solid #4c78a8;
padding-bottom:.2rem;margin-top:2rem}table{border-collapse:collapse;margin:.6rem 0;
font-size:.9rem}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;
vertical-align:top}th{background:#eef2f7}img{max-width:100%;margin:.5rem 0;display:block}
code{background:#f3f3f3;padding:0 .2rem}.meta{color:#666;font-size:.85rem}
.banner{background:#b00020;color:#fff;padding:.5rem .8rem;border-radius:4px;margin:.6rem 0;
font-size:.85rem}.banner ul{margin:.3rem 0 0 1.1rem;padding:0}.banner li{margin:.15rem 0}
.links li{margin:.15rem 0}a{color:#1f5fa8}.banner a{color:#fff}
.hero{display:grid;grid-template-columns:minmax(280px,1fr) 2fr;gap:1rem;align-items:start}
.hero img{margin:0;max-height:860px;width:auto}
.facts{font-size:.95rem}.facts dt{color:#555;font-size:.8rem;margin-top:.45rem}
.facts dd{margin:0;font-weight:600}.facts dd.big{font-size:1.6rem}
.facts dd span{font-weight:400}.open{font-size:.85rem;margin-top:.6rem}
@media (max-width:900px){.hero{grid-template-columns:1fr}}
"""

# Lets a headless browser (and the tests) confirm every figure decoded and
# where the headline and the map sit on the first screen.
SCRIPT = """
window.addEventListener('load', function () {
  var body = document.body;
  var imgs = Array.prototype.slice.call(document.images);
  body.setAttribute('data-images-total', imgs.length);
  body.setAttribute('data-images-loaded',
    imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
  body.setAttribute('data-viewport', window.innerWidth + 'x' + window.innerHeight);
  ['headline', 'map'].forEach(function (id) {
    var el = document.getElementById(id);
    if (!el) { return; }
    var r = el.getBoundingClientRect();
    var x = window.scrollX, y = window.scrollY;
    body.setAttribute('data-' + id + '-box',
      [r.left + x, r.top + y, r.right + x, r.bottom + y].map(Math.round).join(','));
  });
});
"""


def page(title: str, parts: Iterable[str]) -> str:
    """The whole document: inline style and script, the parts in order."""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{STYLE}</style>"
        f"<script>{SCRIPT}</script></head><body>{''.join(parts)}</body></html>"
    )
