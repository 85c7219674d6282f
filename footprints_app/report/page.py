"""The report's page, top-down: headline and map, tables per run, outputs, model details.

:func:`page` puts the named parts in order; each part returns its HTML
fragments (a list, empty when it has nothing to show). The sections
themselves are rendered by :mod:`.sections`.
"""

from __future__ import annotations

import os
import time

from footprints_app.report import discovery, facts, html, sections
from footprints_app.report.discovery import DEMO_SUMMARY, find_runs

Run = tuple[str, str]  # (kind, folder): "score" or "segment", and its folder


def page(output_dir: str, title: str | None) -> str:
    """The whole report of ``output_dir`` as one HTML document."""
    demo = discovery.read_json(os.path.join(output_dir, DEMO_SUMMARY))
    runs = find_runs(output_dir)
    warnings = sections.warnings_of(output_dir, runs, demo)  # in the order the runs were found
    main = main_run(runs)
    if main is not None:  # the headline's run first
        runs = [main] + [r for r in runs if r != main]
    parts = [
        *title_part(output_dir, title),
        *headline_part(output_dir, title, main, warnings, demo),
        *tables_part(output_dir, runs),
        *outputs_part(output_dir, runs),
        *details_part(runs, demo),
    ]
    return html.page(title or "footprints report", parts)


def main_run(runs: list[Run]) -> Run | None:
    """The run the headline speaks for: a segment run (buildings from imagery), else a score run."""
    for wanted in ("segment", "score"):
        for kind, folder in runs:
            if kind == wanted:
                return kind, folder
    return None


def title_part(output_dir: str, title: str | None) -> list[str]:
    """The heading, and the folder and time the report was built."""
    heading = title or "footprints run report"
    return [
        f"<h1>{html.esc(heading)}</h1>",
        f"<p class='meta'>{html.esc(os.path.basename(output_dir))}/ &middot; built "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}</p>",
    ]


def headline_part(
    output_dir: str, title: str | None, main: Run | None, warnings: list, demo: dict
) -> list[str]:
    """The headline and the map of the main run; without one, the warnings (and a note)."""
    if main is None:
        parts = [sections.banner(warnings)]
        if not demo:
            parts.append("<p>No run output (summary.json) was found in this folder.</p>")
        return parts
    kind, folder = main
    found = facts.headline(title or os.path.basename(output_dir), kind, folder)
    return [
        "<div class='hero'>"
        f"<section id='headline'>{sections.headline(found, warnings, folder)}</section>"
        f"<section>{sections.headline_map(folder, kind)}</section></div>"
    ]


def _label(folder: str, output_dir: str) -> str:
    rel = os.path.relpath(folder, output_dir)
    return "" if rel == "." else f" ({html.esc(rel)}/)"


def tables_part(output_dir: str, runs: list[Run]) -> list[str]:
    """Per run, the tables an analyst checks (per tile, per region), their figures, the errors."""
    parts = []
    for kind, folder in runs:
        label = _label(folder, output_dir)
        if kind == "segment":
            parts.append(f"<h2>Buildings found{label}: per tile</h2>")
            parts.append(sections.segment_tables(folder))
        if kind == "score" or discovery.summary(folder).get("scores"):
            what = "Residential classification" if kind == "score" else "Classified buildings"
            parts.append(f"<h2>{what}{label}: per region</h2>" + sections.region_table(folder))
            parts.append(sections.score_figures(folder))
        if kind == "segment":
            figures = sections.area_figures(folder)
            if figures:
                parts.append(f"<h2>The area against the truth, tile by tile{label}</h2>" + figures)
        parts.append(f"<h3>Rejected records{label}</h3>" + sections.errors_section(folder))
    return parts


def outputs_part(output_dir: str, runs: list[Run]) -> list[str]:
    """Relative links to every file each run wrote."""
    outputs = [(folder, sections.outputs_section(folder)) for _, folder in runs]
    if not any(links for _, links in outputs):
        return []
    parts = ["<h2>Outputs</h2>"]
    for folder, links in outputs:
        if links:
            parts.append(f"<h3>{html.esc(os.path.relpath(folder, output_dir))}/</h3>{links}")
    return parts


def details_part(runs: list[Run], demo: dict) -> list[str]:
    """For the ML engineer, last: the demo's stages and the models' cards."""
    details = []
    if demo:
        details.append("<h3>Demo stages, in pipeline order</h3>" + sections.demo_stages(demo))
    for kind, folder in runs:
        summary = discovery.summary(folder)
        model = (summary.get("inputs") or {}).get("model")
        if kind == "score":
            details.append(sections.model_section(model, "Classifier"))
        else:
            details.append(sections.model_section(model, "Segmenter"))
            scores = summary.get("scores")
            if isinstance(scores, dict):
                details.append(sections.model_section(scores.get("classifier"), "Classifier"))
    if not any(details):
        return []
    return ["<h2>Model details (for the ML engineer)</h2>" + "".join(details)]
