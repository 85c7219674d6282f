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


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def score_histograms(scores_by_region: Mapping[str, np.ndarray],
                     regions: Mapping[str, Mapping], max_regions: int = 12) -> bytes:
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
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
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
        ax.set_title(f"{name}: {info.get('k', '?')} of {info.get('n', len(values))} "
                     f"residential{subtitle}", fontsize=9)
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


def mask_thumbnails(pairs: Sequence[tuple[str, str, str]], size: int = 256) -> bytes:
    """Masks over imagery: ``(name, raster path, mask path)`` per panel.

    Rasters are read decimated (``out_shape``), so a thumbnail of a large tile
    costs an overview read, not the whole tile.
    """
    import rasterio

    ncols = min(3, max(1, len(pairs)))
    nrows = max(1, math.ceil(len(pairs) / ncols))
    plt, fig, axes = _figure(nrows, ncols, (3.4 * ncols, 3.4 * nrows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (name, raster, mask) in zip(axes.flat, pairs):
        with rasterio.open(raster) as src:
            bands = [1, 2, 3] if src.count >= 3 else [1]
            img = src.read(bands, out_shape=(len(bands), size, size)).astype(np.float32)
        low, high = np.percentile(img, [1, 99])
        img = np.clip((img - low) / max(high - low, 1e-6), 0, 1)
        img = np.moveaxis(img, 0, -1)
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        with rasterio.open(mask) as src:
            prob = src.read(1, out_shape=(size, size)).astype(np.float32) / 255.0
        overlay = img.copy()
        building = prob >= 0.5
        overlay[building] = 0.45 * overlay[building] + 0.55 * np.array([1.0, 0.1, 0.1])
        ax.imshow(overlay)
        ax.set_title(name, fontsize=8)
    return _png(plt, fig)


def confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """A 2x2 (or NxN) confusion matrix with counts in the cells."""
    m = np.asarray(matrix)
    plt, fig, axes = _figure(1, 1, (3.6, 3.2))
    ax = axes[0, 0]
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("labelled by footprints", fontsize=8)
    ax.set_ylabel("truth", fontsize=8)
    return _png(plt, fig)
