"""Keys that name a tile and a window of a tile, carried through every stage.

A segmentation job fans each tile out into windows, runs the model on them,
and groups them back by tile. Two small values name those things:

* :class:`TileKey` -- one raster tile (its ``scene`` name, unique in a run);
* :class:`WindowKey` -- one model window of a tile: ``(scene, row, col,
  size)`` where ``row``/``col`` are the tile-pixel offsets of the window's
  top-left corner (negative when the window hangs over the tile's top or
  left edge) and ``size`` is the window's height and width.

Both are frozen and hashable, sort deterministically, and have their own
deterministic coders, registered with Beam's coder registry, so grouping by
them gives the same bytes -- and so the same grouping -- on every runner and
worker (a pickled dataclass would not be deterministic, and Beam refuses such
keys in ``GroupByKey``).

Example:
    >>> WindowKey("tile_0_1", -16, 48, 64).tile
    TileKey(scene='tile_0_1')
"""

from __future__ import annotations

import dataclasses
import struct

import apache_beam as beam
from apache_beam.coders.typecoders import registry

_INTS = struct.Struct(">qqq")


@dataclasses.dataclass(frozen=True, order=True)
class TileKey:
    """One raster tile of a run.

    Attributes:
        scene: The tile's name, unique within a run (the file name without
            its extension, see :func:`footprints.tiles.scene_of`); masks are written as
            ``masks/<scene>.tif``.
    """

    scene: str

    def __post_init__(self) -> None:
        if not self.scene or "/" in self.scene:
            raise ValueError(f"scene {self.scene!r} must be a non-empty name without '/'")


@dataclasses.dataclass(frozen=True, order=True)
class WindowKey:
    """One model window of a tile.

    Attributes:
        scene: The tile's name (see :class:`TileKey`).
        row: Tile-pixel row of the window's top edge (may be negative).
        col: Tile-pixel column of the window's left edge (may be negative).
        size: Height and width of the window, pixels (the model's window size).
    """

    scene: str
    row: int
    col: int
    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"window size {self.size!r} must be positive")

    @property
    def tile(self) -> TileKey:
        """The key of the tile this window belongs to."""
        return TileKey(self.scene)

    def __str__(self) -> str:
        # Used as the ``record`` of dead letters: readable and greppable.
        return f"{self.scene}@r{self.row}c{self.col}s{self.size}"


def _encode_text(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw


def _decode_text(data: bytes) -> tuple[str, int]:
    (n,) = struct.unpack_from(">I", data, 0)
    return data[4 : 4 + n].decode("utf-8"), 4 + n


class TileKeyCoder(beam.coders.Coder):
    """Deterministic coder for :class:`TileKey`: the UTF-8 scene, length-prefixed."""

    def encode(self, value: TileKey) -> bytes:
        """Encodes the key as its length-prefixed UTF-8 scene."""
        return _encode_text(value.scene)

    def decode(self, encoded: bytes) -> TileKey:
        """Decodes what :meth:`encode` wrote."""
        return TileKey(_decode_text(encoded)[0])

    def is_deterministic(self) -> bool:
        """Always true: equal keys encode to equal bytes, so they can be grouped on."""
        return True

    def to_type_hint(self) -> type[TileKey]:
        """The type this coder encodes."""
        return TileKey


class WindowKeyCoder(beam.coders.Coder):
    """Deterministic coder for :class:`WindowKey`: the scene, then three big-endian int64."""

    def encode(self, value: WindowKey) -> bytes:
        """Encodes the key as its scene, then row, column and size."""
        return _encode_text(value.scene) + _INTS.pack(value.row, value.col, value.size)

    def decode(self, encoded: bytes) -> WindowKey:
        """Decodes what :meth:`encode` wrote."""
        scene, end = _decode_text(encoded)
        row, col, size = _INTS.unpack_from(encoded, end)
        return WindowKey(scene, row, col, size)

    def is_deterministic(self) -> bool:
        """Always true: equal keys encode to equal bytes, so they can be grouped on."""
        return True

    def to_type_hint(self) -> type[WindowKey]:
        """The type this coder encodes."""
        return WindowKey


# Registered at import: every module that builds or groups by these keys
# imports this one, on the driver and on workers alike.
registry.register_coder(TileKey, TileKeyCoder)
registry.register_coder(WindowKey, WindowKeyCoder)
