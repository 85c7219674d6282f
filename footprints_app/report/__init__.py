"""``report.html``: what happened in a run, for the analyst who uses it, in one offline file.

The report is built after a run from what the run wrote (the output
contracts: ``summary.json``, ``classified/``, ``scores/``, ``errors/``,
``masks/``, ``footprints/``, ``truth/``, ``stac/``, and ``export/`` when
``footprints export`` ran), never from pipeline internals, so it can be
rebuilt at any time with ``footprints report DIR`` and it works for runs
made on any runner. When a summary lists the files its run wrote
(``files``), only those are read. Figures are PNGs embedded as data URIs
and the styles are inline: the file opens offline, from a laptop, a bucket
download or an e-mail.

It reads top-down, the analyst's questions first:

1. **The headline** (``id="headline"``): the area, its extent in lon/lat,
   its size, the imagery date, the buildings found, the residential share
   per region, the warnings (a red banner: the runs' ``warnings`` and any
   model whose card says ``quality.weak``), and where to open the results
   (``classified/``, the GeoPackage, ``stac/``). Beside it **the map**
   (``id="map"``): the imagery, the masks and the buildings coloured in the
   classes of the exported QGIS style, with lon/lat ticks and a scale bar.
   Both fit the first screen of a laptop browser.
2. **The tables**: per region (target, achieved, what the model expects),
   per tile (counts, and the measures against the truth when one was
   given), then the figures that explain them (score distributions, the
   area against the truth, a panel per tile), and the rejected records.
3. **The outputs**: relative links to every file, so the folder can move.
4. **For the ML engineer**, last: the demo's stages with their raw values
   (in pipeline order), the models' cards, reliability diagrams and
   training curves.

The parts: :mod:`.discovery` finds the runs and their files, :mod:`.facts`
computes the headline, :mod:`.page` puts the page's parts in the order
above, :mod:`.sections` renders each section,
:mod:`.maps` and :mod:`.plots` draw the figures, :mod:`.html` escapes and
assembles. Text from the data (region and tile names, messages) is always
escaped: HTML-escaped on the page, and drawn by matplotlib with math text
and TeX off. No absolute path of the machine that ran it is written.
"""

from __future__ import annotations

import os

from footprints_app.report import html, page
from footprints_app.report.discovery import DEMO_SUMMARY, find_runs, run_files
from footprints_app.report.sections import mask_coverage

REPORT_FILE = "report.html"

__all__ = [
    "DEMO_SUMMARY",
    "REPORT_FILE",
    "build_report",
    "find_runs",
    "mask_coverage",
    "run_files",
]


def build_report(output_dir: str, title: str | None = None) -> str:
    """Writes ``output_dir/report.html`` and returns its path."""
    import matplotlib

    output_dir = os.path.abspath(output_dir)
    html.ROOTS[:] = [output_dir]
    html.SHOWN_MODELS.clear()
    try:
        # Names from the data (regions, tiles) are drawn as plain text: no math, no TeX.
        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
            html_page = page.page(output_dir, title)
    finally:
        html.ROOTS.clear()
    path = os.path.join(output_dir, REPORT_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(html_page)
    os.replace(tmp, path)
    return path
