"""From window predictions to one tile's mask.

Each window's prediction is cropped to its core (the halo is dropped, see
:mod:`pipeline.windows`) and quantized to uint8 right away, so what
is shuffled to the tile's stitcher is one byte per tile pixel -- the size of
the final mask -- whatever the window size, halo or test-time augmentation.
The cores of a tile partition it, so stitching is placing them: no blending,
no weights, and the result does not depend on the order windows arrive in.

Every planned window reaches the stitcher, predicted or not (all nodata, or
failed to read or infer), so the stitcher can check that none is missing and
the summary can reconcile ``planned == inferred + nodata + failed + empty``.
Windows whose source blocks were never written (a sparse GeoTIFF) are not even
made into elements: the planner reports each row's run of them as one
:class:`EmptyCores`, so a tile that declares 200000 x 200000 pixels but holds
a few blocks costs elements in proportion to its blocks. A tile none of whose
windows was inferred is not written (an entirely-nodata tile is skipped and
counted).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from footprints.errors import Bug
from footprints.tiles import TileInfo
from pipeline.keys import WindowKey
from pipeline.values import INFERRED, STATUSES, CorePrediction, EmptyCores, TileMask
from pipeline.windows import Box, count_windows


class StitchError(Bug):
    """Windows of a tile are missing or overlap: a bug, not a user error."""


class CoreTally:
    """Checks the windows of one tile as their cores arrive, and hands each core on to be placed.

    The bookkeeping every stitcher shares: each planned window arrives once
    (or is counted in an :class:`EmptyCores` of its row), none is missing,
    and how many were inferred, nodata, failed or empty.
    Subclasses place the inferred cores (:meth:`_place`): in memory
    (:class:`TileStitcher`) or straight into a file
    (:class:`pipeline.stitching.cog.MaskFileStitcher`).

    Args:
        tile: The tile (needs ``height``, ``width``, ``scene``).
        size: The window size the tile was planned with.
        halo: The halo it was planned with.
    """

    def __init__(self, tile: TileInfo, size: int, halo: int):
        self.tile = tile
        self._expected = count_windows(tile.height, tile.width, size, halo)
        self._bounds = Box(0, 0, tile.height, tile.width)
        self._counts: Counter[str] = Counter()
        self._seen: set[WindowKey] = set()
        self._arrived = 0

    def add(self, part: CorePrediction | EmptyCores) -> None:
        """Places one window's core (or records that it, or a run of them, was not inferred)."""
        if part.key in self._seen:
            raise StitchError(f"window {part.key} of {self.tile.scene!r} arrived twice")
        self._seen.add(part.key)
        count = part.count if isinstance(part, EmptyCores) else 1
        self._counts[part.status] += count
        self._arrived += count
        if isinstance(part, CorePrediction) and part.status == INFERRED:
            self._place(part)

    def _place(self, part: CorePrediction) -> None:
        # Abstract: TileStitcher places the core in memory, MaskFileStitcher in its file.
        raise NotImplementedError(f"{type(self).__name__} must say where cores go")

    @property
    def windows(self) -> dict[str, int]:
        """Windows by status so far (``inferred``, ``nodata``, ``failed``, ``empty``)."""
        return {status: self._counts.get(status, 0) for status in STATUSES}

    def check_complete(self) -> None:
        """Raises StitchError if windows are missing."""
        if self._arrived != self._expected:
            raise StitchError(
                f"tile {self.tile.scene!r} got {self._arrived} windows, planned {self._expected}"
            )


class TileStitcher(CoreTally):
    """Places the cores of one tile's windows into its mask in memory, as they arrive.

    For small tiles and tests; the pipeline streams cores into a file instead
    (:class:`pipeline.stitching.cog.MaskFileStitcher`), so its memory does
    not grow with the tile.
    """

    def __init__(self, tile: TileInfo, size: int, halo: int):
        super().__init__(tile, size, halo)
        self._probability = np.zeros((tile.height, tile.width), np.uint8)
        self._valid = np.zeros((tile.height, tile.width), bool)

    def _place(self, part: CorePrediction) -> None:
        # add() places inferred cores only, and an inferred core has probabilities.
        assert part.probability is not None
        rows, cols = part.core.slices_in(self._bounds)
        self._probability[rows, cols] = part.probability
        self._valid[rows, cols] = True if part.valid is None else part.valid

    def result(self) -> TileMask:
        """The stitched mask; pixels of windows not inferred are invalid.

        Raises:
            StitchError: if windows are missing.
        """
        self.check_complete()
        valid: np.ndarray | None = self._valid
        if self._valid.all():
            valid = None
        else:
            # Invalid pixels are masked in the file; zeros there also compress best.
            self._probability[~self._valid] = 0
        return TileMask(self.tile, self._probability, valid, self.windows)


def stitch_tile(
    tile: TileInfo, predictions: Iterable[CorePrediction], size: int, halo: int
) -> TileMask:
    """Stitches a tile from all its windows' cores, in any order (see :class:`TileStitcher`)."""
    stitcher = TileStitcher(tile, size, halo)
    for part in predictions:
        stitcher.add(part)
    return stitcher.result()
