"""The report's figures, as PNG bytes (matplotlib, Agg backend, no display).

Each function takes plain data (Arrow tables, dicts, file paths) and returns
PNG bytes, so the figures are tested without a browser and the HTML module
only embeds them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np


def _figure(nrows: int, ncols: int, size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    return plt, fig, axes


def _png(plt, fig, tight: bool = True) -> bytes:
    buf = io.BytesIO()
    if tight:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def score_histograms(
    scores_by_region: Mapping[str, np.ndarray],
    regions: Mapping[str, Mapping],
    max_regions: int = 12,
) -> bytes:
    """One histogram of scores per region, with the chosen threshold and the target.

    Args:
        scores_by_region: Region -> array of scores.
        regions: Region -> summary entry (``n``, ``k``, ``threshold``,
            ``target_fraction``, ``achieved_fraction``).
        max_regions: Regions shown (largest first); the table lists them all.
    """
    names = sorted(scores_by_region, key=lambda r: (-len(scores_by_region[r]), r))
    names = names[:max_regions] or ["(no scores)"]
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    plt, fig, axes = _figure(nrows, ncols, (4.2 * ncols, 2.8 * nrows))
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    # The grid can have more panels than regions; the spare ones stay blank.
    for ax, name in zip(axes.flat, names, strict=False):
        values = scores_by_region.get(name, np.array([]))
        info = regions.get(name, {})
        ax.hist(values, bins=np.linspace(0, 1, 41), color="#4c78a8")
        threshold = info.get("threshold")
        if threshold is not None:
            ax.axvline(threshold, color="#e45756", lw=2, label=f"threshold {threshold:.3f}")
            ax.legend(loc="upper center", fontsize=8)
        target = info.get("target_fraction")
        achieved = info.get("achieved_fraction")
        subtitle = ""
        if target is not None and achieved is not None:
            subtitle = f"\ntarget {target:.1%}, achieved {achieved:.1%}"
        ax.set_title(
            f"{name}: {info.get('k', '?')} of {info.get('n', len(values))} residential{subtitle}",
            fontsize=9,
        )
        ax.set_xlabel("score (probability residential)", fontsize=8)
        ax.set_ylabel("footprints", fontsize=8)
    return _png(plt, fig)


def coverage_bars(coverage: Mapping[str, float]) -> bytes:
    """Share of each tile's pixels labelled building, one bar per tile."""
    names = sorted(coverage)
    plt, fig, axes = _figure(1, 1, (max(4.0, 0.45 * len(names) + 2), 3.0))
    ax = axes[0, 0]
    ax.bar(range(len(names)), [coverage[n] * 100 for n in names], color="#54a24b")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("building pixels (%)")
    ax.set_title("mask coverage per tile", fontsize=9)
    return _png(plt, fig)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """A 2x2 (or NxN) confusion matrix with counts in the cells."""
    m = np.asarray(matrix)
    plt, fig, axes = _figure(1, 1, (3.6, 3.2))
    ax = axes[0, 0]
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(
            j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black"
        )
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("labelled by footprints", fontsize=8)
    ax.set_ylabel("truth", fontsize=8)
    return _png(plt, fig)


def reliability_diagram(
    reliability: Mapping[str, Sequence],
    ece: float | None = None,
    ece_uncalibrated: float | None = None,
) -> bytes:
    """Fraction of residential footprints against mean score, per score bin.

    Args:
        reliability: The model card's ``quality.reliability``: ``bin_edges``
            (n + 1), ``mean_score``, ``fraction_positive`` and ``count`` (n
            each; empty bins may hold None).
        ece: Expected calibration error of the scores the model serves.
        ece_uncalibrated: The same before calibration, if known.
    """
    edges = np.asarray(reliability.get("bin_edges") or [], dtype=float)
    mean = np.asarray(
        [np.nan if v is None else v for v in reliability.get("mean_score") or []], dtype=float
    )
    frac = np.asarray(
        [np.nan if v is None else v for v in reliability.get("fraction_positive") or []],
        dtype=float,
    )
    count = np.asarray([v or 0 for v in reliability.get("count") or []], dtype=float)
    plt, fig, axes = _figure(1, 2, (8.4, 3.4))
    ax, hist = axes[0, 0], axes[0, 1]
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="perfectly calibrated")
    used = (count > 0) & np.isfinite(mean) & np.isfinite(frac)
    if used.any():
        ax.plot(mean[used], frac[used], marker="o", color="#4c78a8", label="model")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean score in bin (what the model says)", fontsize=8)
    ax.set_ylabel("share residential (what it is)", fontsize=8)
    parts = [
        f"ECE {ece:.3f}" if ece is not None else None,
        f"before calibration {ece_uncalibrated:.3f}" if ece_uncalibrated is not None else None,
    ]
    ax.set_title(
        "reliability on the validation split"
        + ("\n" + ", ".join(p for p in parts if p) if any(parts) else ""),
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    if len(edges) == len(count) + 1 and len(count):
        hist.bar(
            edges[:-1],
            count,
            width=np.diff(edges),
            align="edge",
            color="#72b7b2",
            edgecolor="white",
            label="footprints per bin",
        )
        hist.legend(fontsize=8)
    hist.set_xlabel("score", fontsize=8)
    hist.set_ylabel("footprints", fontsize=8)
    hist.set_title("scores per bin", fontsize=9)
    return _png(plt, fig)


def tile_iou_bars(ious: Mapping[str, float | None]) -> bytes:
    """Pixel IoU per tile, one bar each (tiles without a union left empty)."""
    names = sorted(ious)
    plt, fig, axes = _figure(1, 1, (max(4.0, 0.45 * len(names) + 2), 3.0))
    ax = axes[0, 0]
    values = [ious[n] if ious[n] is not None else 0.0 for n in names]
    ax.bar(range(len(names)), values, color="#4c78a8", label="pixel IoU")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("pixel IoU")
    ax.legend(fontsize=8)
    ax.set_title("building IoU per tile against the truth", fontsize=9)
    return _png(plt, fig)
