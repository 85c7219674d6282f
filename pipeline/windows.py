"""Pixel boxes and the plan of a tile's model windows.

A segmenter sees ``size x size`` windows. Near a window's edge it sees only
part of its receptive field (the rest is the model's own zero padding), so
its output there differs from what it would give with the whole tile as
context: stitching raw windows side by side leaves seams. The plan avoids
them with a *halo*: the tile is cut into *cores* of ``size - 2 * halo``
pixels, and each core is predicted from a window that holds it with at least
``halo`` pixels of real context on every side that is not the tile's own
edge. Only the core of each prediction is kept, and the cores partition the
tile, so the stitched mask equals the model applied to the whole tile in one
pass wherever the model's receptive radius is at most ``halo``.

Windows are placed inside the tile wherever the tile is large enough (the
last row and column of windows are shifted inward rather than hanging over
the edge), so padding -- and model time spent on padding -- happens only for
tiles smaller than a window. Cores that would get the same window are merged
into one, so a tile smaller than a window is one window.

Reads are *block-aligned*: the part of a window inside the tile is widened to
the tile's internal block grid (per axis, where a block is not larger than a
window), so GDAL decodes whole blocks and its block cache serves the
neighbouring windows; the window is then cut from the read and padded in
numpy (``reflect``) where it hangs over the tile's edge. Boundless reads
would do the padding in GDAL but bypass its block cache.

Example (one axis: a 100-pixel tile, 64-pixel windows, halo 16, so
32-pixel cores)::

    >>> [(w.start, w.core_start, w.core_stop) for w in plan_axis(100, 64, 16)]
    [(0, 0, 32), (16, 32, 64), (36, 64, 100)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

from pipeline.keys import WindowKey

if TYPE_CHECKING:
    from rasterio.windows import Window

#: How windows that hang over a tile's edge are filled: mirrored tile pixels,
#: which keep image statistics near the edge closer to the interior's than
#: zeros would.
PAD_MODE: Final = "reflect"

#: The ``np.pad`` modes :func:`cut_and_pad` passes on.
PadMode = Literal["constant", "edge", "reflect", "symmetric", "wrap"]


@dataclasses.dataclass(frozen=True, order=True)
class Box:
    """A rectangle of pixels: top-left ``(row, col)`` and ``height`` x ``width``.

    Coordinates are tile pixels; ``row``/``col`` may be negative for windows
    hanging over the tile's top or left edge.
    """

    row: int
    col: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height < 0 or self.width < 0:
            raise ValueError(f"box {self!r} has a negative size")

    @property
    def bottom(self) -> int:
        """First row below the box."""
        return self.row + self.height

    @property
    def right(self) -> int:
        """First column right of the box."""
        return self.col + self.width

    @property
    def empty(self) -> bool:
        """Whether the box has no pixels."""
        return self.height == 0 or self.width == 0

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``, as numpy shapes go."""
        return self.height, self.width

    def intersect(self, other: Box) -> Box:
        """The overlap of two boxes (an empty box where they do not overlap)."""
        row, col = max(self.row, other.row), max(self.col, other.col)
        bottom = max(min(self.bottom, other.bottom), row)
        right = max(min(self.right, other.right), col)
        return Box(row, col, bottom - row, right - col)

    def contains(self, other: Box) -> bool:
        """Whether ``other`` lies wholly inside this box."""
        return (
            self.row <= other.row
            and self.col <= other.col
            and other.bottom <= self.bottom
            and other.right <= self.right
        )

    def slices_in(self, outer: Box) -> tuple[slice, slice]:
        """Numpy slices that select this box from an array covering ``outer``."""
        if not outer.contains(self):
            raise ValueError(f"{self!r} is not inside {outer!r}")
        r, c = self.row - outer.row, self.col - outer.col
        return slice(r, r + self.height), slice(c, c + self.width)

    def to_window(self) -> Window:
        """The rasterio ``Window`` of this box."""
        from rasterio.windows import Window

        return Window(self.col, self.row, self.width, self.height)


@dataclasses.dataclass(frozen=True)
class AxisWindow:
    """One window along one axis: ``[start, start + size)`` predicts ``[core_start, core_stop)``."""

    start: int
    core_start: int
    core_stop: int


def plan_axis(extent: int, size: int, halo: int) -> list[AxisWindow]:
    """Plans windows along one axis of ``extent`` pixels.

    Args:
        extent: Tile height or width, pixels (at least 1).
        size: Window size, pixels.
        halo: Context kept on each side of a core; ``size - 2 * halo`` >= 1.

    Returns:
        Windows whose cores partition ``[0, extent)``, in order; each core has
        at least ``halo`` pixels of its window on each side, or its window
        reaches the tile's edge on that side.
    """
    core = size - 2 * halo
    if extent < 1 or core < 1 or halo < 0:
        raise ValueError(f"cannot plan windows of {size} with halo {halo} over {extent} pixels")
    # Windows start at ``core_start - halo``, clamped so that they lie inside
    # the tile when it is large enough; a window larger than the tile is
    # flush with the tile's end and hangs over its start.
    lowest = min(0, extent - size)
    planned: list[AxisWindow] = []
    for core_start in range(0, extent, core):
        core_stop = min(core_start + core, extent)
        start = max(min(core_start - halo, extent - size), lowest)
        if planned and planned[-1].start == start:
            # The clamp gave this core the previous core's window: one
            # prediction serves both, so merge the cores.
            planned[-1] = AxisWindow(start, planned[-1].core_start, core_stop)
        else:
            planned.append(AxisWindow(start, core_start, core_stop))
    return planned


@dataclasses.dataclass(frozen=True)
class WindowPlan:
    """One model window of a tile and the core of it that is kept.

    Attributes:
        key: The window (scene, top-left row/col in tile pixels, size).
        core: The pixels of the tile this window's prediction is kept for.
    """

    key: WindowKey
    core: Box

    @property
    def window(self) -> Box:
        """The window, halo included, in tile pixels."""
        return Box(self.key.row, self.key.col, self.key.size, self.key.size)


def plan_windows(scene: str, height: int, width: int, size: int, halo: int) -> list[WindowPlan]:
    """Plans the model windows of a ``height`` x ``width`` tile.

    Example: a 100 x 40 tile with 64-pixel windows and halo 16 gives 3 x 1
    windows; the single column of windows starts at col -24 (a 40-pixel wide
    tile fits in one window, which hangs 24 pixels over its left edge).

    A list of every window: for small tiles and tests. The pipeline plans a
    row of windows at a time (:func:`plan_row`), so a tile that declares a
    huge size is never one list of windows.
    """
    return [
        plan
        for row in plan_axis(height, size, halo)
        for plan in plan_row(scene, row, width, size, halo)
    ]


def plan_row(scene: str, row: AxisWindow, width: int, size: int, halo: int) -> Iterator[WindowPlan]:
    """The windows of one row of a plan (``row`` from ``plan_axis(height, ...)``), west to east."""
    for c in plan_axis(width, size, halo):
        yield WindowPlan(
            WindowKey(scene, row.start, c.start, size),
            Box(
                row.core_start,
                c.core_start,
                row.core_stop - row.core_start,
                c.core_stop - c.core_start,
            ),
        )


def count_windows(height: int, width: int, size: int, halo: int) -> int:
    """How many windows :func:`plan_windows` gives, without building them."""
    return len(plan_axis(height, size, halo)) * len(plan_axis(width, size, halo))


def _align_axis(start: int, stop: int, block: int, extent: int, size: int) -> tuple[int, int]:
    if block < 1 or block > size:
        # A block larger than a window (a whole-width strip) would make every
        # read decode and copy far more than it needs; GDAL still decodes
        # whole blocks internally, so read just the window.
        return start, stop
    return (start // block) * block, min(-(-stop // block) * block, extent)


def read_box(window: Box, height: int, width: int, block_shape: tuple[int, int]) -> Box:
    """The block-aligned box to read for ``window`` from a ``height`` x ``width`` tile.

    Args:
        window: The model window, in tile pixels (may hang over the edges).
        height: Tile height.
        width: Tile width.
        block_shape: The tile's internal block (rows, cols), e.g. (256, 256)
            for a tiled GeoTIFF or (rows_per_strip, width) for a striped one.

    Returns:
        A box inside the tile that contains ``window``'s part inside the
        tile, widened to whole blocks along each axis whose block is not
        larger than the window.
    """
    inside = window.intersect(Box(0, 0, height, width))
    if inside.empty:
        raise ValueError(f"window {window!r} does not overlap the {height} x {width} tile")
    r0, r1 = _align_axis(inside.row, inside.bottom, block_shape[0], height, window.height)
    c0, c1 = _align_axis(inside.col, inside.right, block_shape[1], width, window.width)
    return Box(r0, c0, r1 - r0, c1 - c0)


def cut_and_pad(
    read: np.ndarray,
    read_at: Box,
    window: Box,
    height: int,
    width: int,
    mode: PadMode = PAD_MODE,
    **pad_kwargs: Any,
) -> np.ndarray:
    """Cuts ``window`` out of pixels read at ``read_at``, padding beyond the tile.

    Args:
        read: Pixels shaped ``[rows, cols, ...]`` covering ``read_at``.
        read_at: The box ``read`` was read from (see :func:`read_box`).
        window: The window wanted, in tile pixels.
        height: Tile height.
        width: Tile width.
        mode: ``numpy.pad`` mode for the part of the window outside the tile.
        **pad_kwargs: Passed to ``numpy.pad`` (``constant_values=False`` for masks).

    Returns:
        An array shaped ``[window.height, window.width, ...]``.
    """
    inside = window.intersect(Box(0, 0, height, width))
    part = read[inside.slices_in(read_at)]
    pads = [
        (inside.row - window.row, window.bottom - inside.bottom),
        (inside.col - window.col, window.right - inside.right),
    ]
    if not any(a or b for a, b in pads):
        return part
    pads += [(0, 0)] * (part.ndim - 2)
    return np.pad(part, pads, mode=mode, **pad_kwargs)
