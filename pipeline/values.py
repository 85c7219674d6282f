"""The values that cross ``pipeline/``'s stages, and the mask encoding: its ground floor.

A stage's output is the next stage's input, so what travels between them is
defined here, below both, not in the module of the stage that makes it:

* scoring: :class:`LocatedRecord` (a serialized chip record and where it was
  read), :class:`ChipMeta` (everything of a chip but its image, riding beside
  the record through inference) and :class:`ScoredBatch` (one model batch of
  scores, as columns);
* segmentation: :class:`WindowInput` (a window ready for the model),
  :class:`CorePrediction` and :class:`EmptyCores` (what each window gives its
  tile's mask, by status), :class:`TileMask` (a stitched tile) and
  :class:`WrittenMask` (its COG on disk);
* the mask encoding every reader and writer of masks shares: probabilities
  quantized to uint8 (:func:`quantize`, scale :data:`PROBABILITY_SCALE`), the
  binary mask at ``p >= threshold`` (:func:`threshold_uint8`,
  :func:`binary_mask`) and the bands' names.

Window geometry (:class:`~pipeline.windows.Box`,
:class:`~pipeline.windows.WindowPlan`) is :mod:`pipeline.windows`, on the
same floor; tiles are :class:`footprints.tiles.TileInfo`.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from footprints import contracts
from footprints.contracts import Chip
from footprints.tiles import TileInfo
from pipeline.keys import WindowKey
from pipeline.windows import Box, WindowPlan

# --------------------------------------------------------------------------
# Scoring: chip records, their metadata, scored batches
# --------------------------------------------------------------------------


class LocatedRecord(NamedTuple):
    """A serialized chip record and where it came from.

    Attributes:
        source: The shard (or other input) the record was read from.
        position: Where in ``source``: ``"offset 1234"`` for shards, or any
            string the caller chooses; used in dead letters.
        record: The serialized ``tf.train.Example``.
    """

    source: str
    position: str
    record: bytes


class ChipMeta(NamedTuple):
    """What travels with a record through inference: everything but the image.

    Plain primitives in a tuple, so Beam's fast coder encodes it between
    stages without pickling.
    """

    footprint_id: str
    region: str
    label: int | None
    wkb: bytes | None
    crs: str | None
    source: str
    position: str

    @classmethod
    def of(cls, chip: Chip, located: LocatedRecord) -> ChipMeta:
        """The metadata of a validated chip; chips without a region get the default."""
        return cls(
            chip.footprint_id,
            chip.region or contracts.DEFAULT_REGION,
            chip.label,
            chip.wkb,
            chip.crs,
            located.source,
            located.position,
        )


class ScoredBatch(NamedTuple):
    """Scored chips of one model batch, as columns.

    Attributes:
        metas: The chips' :class:`ChipMeta`, in batch order.
        scores: float32 scores (finite), one per meta.
    """

    metas: tuple[ChipMeta, ...]
    scores: np.ndarray

    @property
    def size(self) -> int:
        """Number of chips in the batch."""
        return len(self.metas)

    @property
    def footprint_ids(self) -> list[str]:
        """Footprint ids of the batch's chips, in order."""
        return [m.footprint_id for m in self.metas]

    def by_region(self) -> dict[str, np.ndarray]:
        """Positions of the batch's chips per region, ascending."""
        groups: dict[str, list[int]] = {}
        for i, meta in enumerate(self.metas):
            groups.setdefault(meta.region, []).append(i)
        return {r: np.asarray(idx, dtype=np.intp) for r, idx in groups.items()}

    def take(self, positions: Sequence[int] | np.ndarray) -> ScoredBatch:
        """The sub-batch at ``positions``."""
        return ScoredBatch(tuple(self.metas[i] for i in positions), self.scores[positions])


# --------------------------------------------------------------------------
# Segmentation: windows, their cores, tile masks
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WindowInput:
    """One window ready for the model, with what stitching needs of it.

    Attributes:
        plan: The window and its core.
        source: The tile's file (for dead letters).
        valid: Validity of the core's pixels, or None if all are valid.
    """

    plan: WindowPlan
    source: str
    valid: np.ndarray | None


INFERRED = "inferred"
NODATA = "nodata"
FAILED = "failed"
#: Windows whose source blocks are all absent (sparse): never read nor inferred.
EMPTY = "empty"
STATUSES = (INFERRED, NODATA, FAILED, EMPTY)


def quantize(probability: np.ndarray) -> np.ndarray:
    """Maps probabilities in [0, 1] to uint8 0-255 (``round(p * 255)``)."""
    scaled: np.ndarray = np.clip(
        np.rint(np.asarray(probability, np.float32) * 255.0), 0, 255
    ).astype(np.uint8)
    return scaled


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

    def __post_init__(self) -> None:
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
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.probability is not None:
            state["probability"] = zlib.compress(self.probability.tobytes(), 1)
        if self.valid is not None:
            state["valid"] = zlib.compress(np.packbits(self.valid).tobytes(), 1)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
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


# --------------------------------------------------------------------------
# The mask encoding: uint8 probabilities and the binary band
# --------------------------------------------------------------------------

#: The bands of a mask COG, and the scale of its probability band.
PROBABILITY_BAND = "building_probability"
PROBABILITY_SCALE = 1 / 255
BINARY_BAND = "building"


def binary_mask(probability: np.ndarray, threshold: float) -> np.ndarray:
    """1 where ``probability`` (uint8, x255) is at least ``threshold`` (in [0, 1])."""
    return (probability >= threshold_uint8(threshold)).astype(np.uint8)


def threshold_uint8(threshold: float) -> int:
    """The uint8 level that ``p >= threshold`` maps to, after ``quantize``."""
    return int(np.ceil(threshold * 255.0 - 1e-9))
