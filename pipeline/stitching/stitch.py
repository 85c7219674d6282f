"""From window predictions to one tile's mask.

Each window's prediction is cropped to its core (the halo is dropped, see
:mod:`pipeline.stitching.windows`) and quantized to uint8 right away, so what
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

import dataclasses
import zlib
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from footprints.errors import Bug
from pipeline.keys import WindowKey
from pipeline.stitching.windows import Box, WindowPlan, count_windows

if TYPE_CHECKING:  # for annotations only: rasters imports this module's windows at run time
    from pipeline.sources.rasters import TileInfo

INFERRED = "inferred"
NODATA = "nodata"
FAILED = "failed"
#: Windows whose source blocks are all absent (sparse): never read nor inferred.
EMPTY = "empty"
STATUSES = (INFERRED, NODATA, FAILED, EMPTY)


def quantize(probability: np.ndarray) -> np.ndarray:
    """Maps probabilities in [0, 1] to uint8 0-255 (``round(p * 255)``)."""
    return np.clip(np.rint(np.asarray(probability, np.float32) * 255.0), 0, 255).astype(np.uint8)


def crop_core(prediction: np.ndarray, plan: WindowPlan) -> np.ndarray:
    """The part of a window's ``[size, size]`` prediction that is kept: its core."""
    return prediction[plan.core.slices_in(plan.window)]


@dataclasses.dataclass(frozen=True)
class CorePrediction:
    """What one window contributes to its tile's mask.

    Attributes:
        key: The window.
        core: The tile pixels it covers.
        status: ``inferred``, ``nodata`` (no valid pixel; not sent to the
            model) or ``failed`` (read or inference failed; see ``errors/``).
        probability: uint8 ``[core.height, core.width]`` when inferred.
        valid: Validity of the core's pixels; None means all valid (when
            inferred) or none valid (otherwise).
    """

    key: WindowKey
    core: Box
    status: str
    probability: np.ndarray | None = None
    valid: np.ndarray | None = None

    def __post_init__(self):
        if self.status not in STATUSES or self.status == EMPTY:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if (self.probability is None) != (self.status != INFERRED):
            raise ValueError(
                f"window {self.key}: a {self.status} window "
                f"{'needs' if self.status == INFERRED else 'has no'} probabilities"
            )

    # What the group-by-tile shuffles (and the DirectRunner holds in memory
    # until the tile is stitched) is the pickled core: its arrays travel
    # DEFLATE-compressed (level 1), the validity bit-packed. Probabilities
    # are mostly near 0 away from buildings, so this is a fraction of the
    # core's byte per pixel.
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.probability is not None:
            state["probability"] = zlib.compress(self.probability.tobytes(), 1)
        if self.valid is not None:
            state["valid"] = zlib.compress(np.packbits(self.valid).tobytes(), 1)
        return state

    def __setstate__(self, state: dict) -> None:
        shape = state["core"].shape
        if state["probability"] is not None:
            data = zlib.decompress(state["probability"])
            state["probability"] = np.frombuffer(data, np.uint8).reshape(shape).copy()
        if state["valid"] is not None:
            bits = np.frombuffer(zlib.decompress(state["valid"]), np.uint8)
            count = shape[0] * shape[1]
            state["valid"] = np.unpackbits(bits, count=count).reshape(shape).astype(bool)
        for name, value in state.items():
            object.__setattr__(self, name, value)

    @classmethod
    def inferred(
        cls, plan: WindowPlan, prediction: np.ndarray, valid: np.ndarray | None
    ) -> CorePrediction:
        """Crops a window's float prediction to its core and quantizes it."""
        return cls(plan.key, plan.core, INFERRED, quantize(crop_core(prediction, plan)), valid)

    @classmethod
    def missing(cls, plan: WindowPlan, status: str) -> CorePrediction:
        """A window that was not inferred (``nodata`` or ``failed``)."""
        return cls(plan.key, plan.core, status)


@dataclasses.dataclass(frozen=True)
class EmptyCores:
    """Windows of one tile row that the planner skipped: their source blocks are absent.

    One element stands for ``count`` windows, so a sparse tile's empty
    windows cost one element per row of windows, not one each.

    Attributes:
        key: The first skipped window of the row (unique, like a window's key).
        count: How many windows of the row were skipped.
    """

    key: WindowKey
    count: int
    status: str = EMPTY


@dataclasses.dataclass
class TileMask:
    """A tile's stitched mask.

    Attributes:
        tile: The tile (a :class:`footprints.tiles.TileInfo`).
        probability: uint8 ``[height, width]``, probability x 255.
        valid: bool ``[height, width]``, or None if every pixel is valid.
        windows: Windows by status (``inferred``, ``nodata``, ``failed``, ``empty``).
    """

    tile: TileInfo
    probability: np.ndarray
    valid: np.ndarray | None
    windows: dict[str, int]

    @property
    def skipped(self) -> bool:
        """True when no window was inferred: nothing to write."""
        return self.windows.get(INFERRED, 0) == 0


@dataclasses.dataclass(frozen=True)
class WrittenMask:
    """A tile's mask as the pipeline stitched it: a COG on disk.

    Attributes:
        tile: The tile (a :class:`footprints.tiles.TileInfo`).
        path: The mask's COG.
        masked: Whether the file has an internal mask (some pixels invalid).
        windows: Windows by status (``inferred``, ``nodata``, ``failed``, ``empty``).
    """

    tile: TileInfo
    path: str
    masked: bool
    windows: dict[str, int]


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

    def __init__(self, tile, size: int, halo: int):
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

    def __init__(self, tile, size: int, halo: int):
        super().__init__(tile, size, halo)
        self._probability = np.zeros((tile.height, tile.width), np.uint8)
        self._valid = np.zeros((tile.height, tile.width), bool)

    def _place(self, part: CorePrediction) -> None:
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


def stitch_tile(tile, predictions: Iterable[CorePrediction], size: int, halo: int) -> TileMask:
    """Stitches a tile from all its windows' cores, in any order (see :class:`TileStitcher`)."""
    stitcher = TileStitcher(tile, size, halo)
    for part in predictions:
        stitcher.add(part)
    return stitcher.result()
