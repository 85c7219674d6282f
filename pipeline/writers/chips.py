"""Chip shards: ``PREFIX-00000-of-000NN.tfrecord[.gz]``, replacing older runs.

Beam's ``WriteToTFRecord`` with a fixed shard count groups every record by
shard before writing, and on the in-process DirectRunner that group is held
in memory: peak memory grew with the chip count. :class:`WriteChips` streams
instead, in two steps that hold no record:

1. every bundle appends each record, as it arrives, to one part file per
   shard (``PREFIX-parts.tmp-HEX/SSSSS-UUID.tfrecord``, TFRecord framing by Beam's
   own encoder, so the bytes are those ``WriteToTFRecord`` writes), and
   emits only the part paths;
2. one step per shard copies that shard's parts, in name order, into the
   shard under a temporary name (GZIP-compressed there when asked), renames
   it into place and deletes the parts.

A record's shard is ``crc32(record) % num_shards``, so a rerun puts every
chip in the same shard and the shards come out balanced. As with Beam's
sinks, a killed run leaves no shard that looks finished (only the parts
folder, which no shard glob matches and the next run's ``claim_output``
removes); shards of an earlier run with another
shard count are removed afterwards, so ``PREFIX-*`` always globs exactly one
complete set.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil
from apache_beam.pvalue import PCollection
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from footprints import contracts
from pipeline.ptransform import DataclassTransform
from pipeline.writers.files import RemoveStaleShards


def shard_glob(prefix: str) -> str:
    """The glob of every shard, plain or GZIP, written under ``prefix``."""
    return f"{prefix}-*-of-*.tfrecord*"


def shard_of(record: bytes, num_shards: int) -> int:
    """The shard a record goes to: the same for the same bytes in every run."""
    return zlib.crc32(record) % num_shards


def parts_folder(prefix: str) -> str:
    """A run's folder of part files: ``PREFIX-parts.tmp-HEX``.

    A temporary name of a prefix output, so the next run's ``claim_output``
    removes what a killed run left, and no shard glob matches it.
    """
    return f"{prefix}-parts.tmp-{uuid.uuid4().hex}"


class _WriteParts(beam.DoFn):
    """Appends each record to its shard's part file for this bundle; emits (shard, part)."""

    def __init__(self, parts_dir: str, num_shards: int):
        self.parts_dir = parts_dir
        self.num_shards = num_shards

    def start_bundle(self) -> None:
        """Starts the bundle with no part open (parts open on their first record)."""
        self._open: dict[int, tuple[str, Any]] = {}

    def process(self, record: bytes) -> Iterator[tuple[int, str]]:
        """Writes the record, framed as TFRecord, to its shard's part."""
        shard = shard_of(record, self.num_shards)
        if shard not in self._open:
            path = f"{self.parts_dir}/{shard:05d}-{uuid.uuid4().hex}.tfrecord"
            handle = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
            self._open[shard] = (path, handle)
        _TFRecordUtil.write_record(self._open[shard][1], record)
        return iter(())

    def finish_bundle(self) -> Iterator[WindowedValue]:
        """Closes the bundle's parts and emits where they are."""
        for shard, (path, handle) in sorted(self._open.items()):
            handle.close()
            yield WindowedValue((shard, path), GlobalWindow().max_timestamp(), (GlobalWindow(),))
        self._open = {}


def assemble_shard(
    shard: int, parts: list[tuple[int, str]], prefix: str, num_shards: int, compression: str
) -> str:
    """Concatenates one shard's parts into the shard (temporary name, then rename).

    Args:
        shard: The shard's index.
        parts: Every ``(shard, part path)`` of the run.
        prefix: The shards' path prefix.
        num_shards: How many shards the run writes.
        compression: ``none`` or ``gzip``.

    Returns:
        The shard's path. A shard no record went to is written empty.
    """
    final = contracts.shard_name(prefix, shard, num_shards, compression)
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    mine = sorted(path for s, path in parts if s == shard)
    kind = CompressionTypes.GZIP if compression == "gzip" else CompressionTypes.UNCOMPRESSED
    with FileSystems.create(tmp, compression_type=kind) as out:
        for path in mine:
            with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as part:
                shutil.copyfileobj(part, out, 1 << 20)
    if FileSystems.exists(final):
        FileSystems.delete([final])
    FileSystems.rename([tmp], [final])
    if mine:
        FileSystems.delete(mine)
    return final


def _remove_parts(files: list[str], parts_dir: str) -> list[str]:
    if FileSystems.exists(parts_dir):
        FileSystems.delete([parts_dir])
    return files


@beam.typehints.with_input_types(bytes)
@dataclasses.dataclass
class WriteChips(DataclassTransform):
    """Writes serialized chip records as a complete, sharded set, streaming.

    Attributes:
        prefix: Path prefix of the shards (``out/chips/area``).
        num_shards: Number of shards (fixed, so the names are predictable).
        compression: ``none`` or ``gzip``.

    Returns:
        One element: the sorted list of shard paths.
    """

    prefix: str
    num_shards: int = 4
    compression: str = "none"

    def expand(self, records: PCollection[bytes]) -> PCollection[list[str]]:
        """Writes the parts, assembles the shards, removes stale ones; returns the files."""
        contracts.shard_suffix(self.compression)  # an unknown compression fails here
        parts_dir = parts_folder(self.prefix)
        parts = beam.pvalue.AsList(
            records | "WriteParts" >> beam.ParDo(_WriteParts(parts_dir, self.num_shards))
        )
        files = (
            records.pipeline
            | "Shards" >> beam.Create(list(range(self.num_shards)))
            | "Assemble"
            >> beam.Map(assemble_shard, parts, self.prefix, self.num_shards, self.compression)
        )
        result: PCollection[list[str]] = (
            files
            | "ReplaceOlder" >> RemoveStaleShards(shard_glob(self.prefix))
            | "RemoveParts" >> beam.Map(_remove_parts, parts_dir)
        )
        return result
