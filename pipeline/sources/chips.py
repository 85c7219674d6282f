"""Reading chip shards: TFRecord framing that survives damaged files.

Beam's ``ReadFromTFRecord`` raises on the first truncated or corrupted record
and the whole job fails with it. A scoring run over thousands of shards
should instead score everything that can be read and say exactly what could
not. So chip shards are read here by a small framing reader of our own:

* :func:`iter_tfrecords` walks the TFRecord framing (``uint64 length``,
  ``uint32 masked CRC32C of length``, ``data``, ``uint32 masked CRC32C of
  data``), checks both checksums with the C implementation of CRC32C, and
  stops at the first damage, which it reports as a :class:`ShardDamage` with
  the byte offset (in the uncompressed stream for GZIP shards).
* :class:`ReadChipRecords` is the Beam source: ``MatchFiles`` →
  ``Reshuffle`` (so shards spread over workers) → one :class:`ReadShardFn`
  call per shard, which emits ``(source, offset, record)`` triples and a dead
  letter per damaged shard. Parallelism is per shard; TFRecord has no sync
  markers, so a shard cannot be split safely without a resync heuristic.

A measurement on this project's chips (``benchmarks/score.py --readers``)
found this reader faster than iterating ``tf.data.TFRecordDataset`` eagerly,
whose per-element Python overhead dominates for small records, and, unlike
``tf.data``, it gives the offset of each record and of the damage.

:func:`validate_chip` is the cheap check that runs before batching, so a bad
record is dead-lettered alone instead of failing its batch in the model: the
record must parse as a chip record (``footprints.contracts.decode_chip``) and
its image must have a plausible, complete PNG or JPEG header and trailer.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import struct
import zlib
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import google_crc32c
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from footprints import contracts
from footprints.contracts import Chip, ErrorRecord
from footprints.errors import ContractError
from pipeline.ptransform import DataclassTransform

NAMESPACE = "score"
READ_STAGE = "read"
VALIDATE_STAGE = "validate"

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
# A record longer than this is taken as a corrupt length even if its CRC
# matches by chance; chips are kilobytes.
_MAX_RECORD_BYTES = 1 << 30


class ShardDamage(Exception):
    """A TFRecord shard cannot be read past ``offset``.

    Attributes:
        offset: Byte offset of the damaged record (uncompressed stream).
        reason: ``truncated_shard``, ``corrupt_shard`` or ``unreadable_shard``.
    """

    def __init__(self, offset: int, reason: str, detail: str):
        super().__init__(f"{reason} at byte {offset}: {detail}")
        self.offset = offset
        self.reason = reason
        self.detail = detail


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


def masked_crc32c(data: bytes) -> int:
    """The masked CRC32C that TFRecord framing stores."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _read_exactly(f, n: int) -> bytes:
    # GzipFile.read may return short reads before EOF on some streams.
    data = f.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def iter_tfrecords(f) -> Iterator[tuple[int, bytes]]:
    """Yields ``(offset, record)`` from a TFRecord stream, checking CRCs.

    Args:
        f: A binary file object over the uncompressed TFRecord stream.

    Raises:
        ShardDamage: at the first truncated or corrupted record; records
            before it have been yielded.
    """
    offset = 0
    while True:
        try:
            header = _read_exactly(f, 12)
        except (EOFError, OSError, zlib.error) as exc:
            raise ShardDamage(offset, "unreadable_shard", str(exc)) from exc
        if not header:
            return
        if len(header) < 12:
            raise ShardDamage(
                offset,
                "truncated_shard",
                f"the file ends inside a record header ({len(header)} of 12 bytes)",
            )
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise ShardDamage(offset, "corrupt_shard", "the record length fails its CRC32C check")
        if length > _MAX_RECORD_BYTES:
            raise ShardDamage(offset, "corrupt_shard", f"implausible record length {length}")
        try:
            body = _read_exactly(f, length + 4)
        except (EOFError, OSError, zlib.error) as exc:
            raise ShardDamage(offset, "unreadable_shard", str(exc)) from exc
        if len(body) < length + 4:
            raise ShardDamage(
                offset, "truncated_shard", f"the file ends inside a record of {length} bytes"
            )
        data = body[:length]
        (data_crc,) = _FOOTER.unpack_from(body, length)
        if masked_crc32c(data) != data_crc:
            raise ShardDamage(offset, "corrupt_shard", "the record data fails its CRC32C check")
        yield offset, data
        offset += 16 + length


def open_shard(path: str):
    """Opens a shard for :func:`iter_tfrecords`, decompressing ``*.gz``.

    Python's ``gzip`` is used over the raw file rather than Beam's
    ``CompressedFile`` because it reports a truncated stream as an error
    (``EOFError``) instead of a silent early end, which would hide damage.
    """
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if contracts.compression_of(path) == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return io.BufferedReader(raw, buffer_size=1 << 20) if not hasattr(raw, "peek") else raw


def read_shard(path: str) -> Iterator[LocatedRecord | ErrorRecord]:
    """All records of one shard, then an :class:`ErrorRecord` if it is damaged."""
    suffix = " (uncompressed stream)" if contracts.compression_of(path) == "gzip" else ""
    try:
        with open_shard(path) as f:
            for offset, data in iter_tfrecords(f):
                yield LocatedRecord(path, f"offset {offset}", data)
    except ShardDamage as damage:
        yield ErrorRecord(
            source=path,
            record=f"offset {damage.offset}{suffix}",
            stage=READ_STAGE,
            error=damage.reason,
            message=(
                f"{damage}; the records before this offset were scored, the rest of "
                "the shard was skipped. Rewrite the shard from its source (for example "
                "rerun `footprints prepare`) and score it again."
            ),
        )
    except OSError as exc:
        yield ErrorRecord(
            source=path,
            record="offset 0",
            stage=READ_STAGE,
            error="unreadable_shard",
            message=f"cannot open the shard: {exc}; check that it exists and is readable",
        )


class ReadShardFn(beam.DoFn):
    """Reads one shard per input path; dead letters go to the ``errors`` output."""

    ERRORS = "errors"

    def __init__(self):
        self._records = beam.metrics.Metrics.counter(NAMESPACE, "records_read")
        self._bytes = beam.metrics.Metrics.counter(NAMESPACE, "bytes_read")
        self._shards = beam.metrics.Metrics.counter(NAMESPACE, "shards_read")
        self._damaged = beam.metrics.Metrics.counter(NAMESPACE, "shards_damaged")

    def process(self, path: str):
        """Yields the shard's chip records, and an error per damaged one."""
        self._shards.inc()
        for item in read_shard(path):
            if isinstance(item, ErrorRecord):
                self._damaged.inc()
                yield beam.pvalue.TaggedOutput(self.ERRORS, item)
            else:
                self._records.inc()
                self._bytes.inc(len(item.record))
                yield item


@dataclasses.dataclass
class ReadChipRecords(DataclassTransform):
    """Reads chip shards matching a glob, surviving damaged shards.

    Attributes:
        pattern: A glob of shards (``chips/*.tfrecord*``), local or any Beam
            filesystem; ``*.gz`` shards are read as GZIP.

    Returns:
        A ``DoOutputsTuple`` with the main output of :class:`LocatedRecord`
        and ``errors``: one :class:`ErrorRecord` per damaged shard.
    """

    pattern: str

    ERRORS = ReadShardFn.ERRORS

    def expand(self, pbegin):
        """Matches the shards, spreads them over workers and reads them."""
        return (
            pbegin
            | "Match" >> fileio.MatchFiles(self.pattern)
            | "Path" >> beam.Map(lambda metadata: metadata.path)
            # Spread shards over workers before the expensive per-shard work.
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShard"
            >> beam.ParDo(ReadShardFn()).with_outputs(ReadShardFn.ERRORS, main="records")
        )


def peek_crs(paths: list[str], max_records: int = 100) -> str | None:
    """The CRS of the first chip (in the first shards) that carries a polygon.

    Used before the job starts to decide whether ``scores/`` gets GeoParquet
    metadata, which is fixed per file when the write begins. Reads at most
    ``max_records`` records in total; damaged shards and bad records are
    skipped here (the job reports them).
    """
    seen = 0
    for path in paths:
        for item in read_shard(path):
            if isinstance(item, ErrorRecord):
                break
            seen += 1
            try:
                chip = contracts.decode_chip(item.record)
            except ContractError:
                continue
            if chip.wkb is not None and chip.crs:
                return chip.crs
            if seen >= max_records:
                return None
    return None


# --------------------------------------------------------------------------
# Validation before batching
# --------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def image_problem(image: bytes) -> str | None:
    """Why ``image`` cannot be a complete PNG or JPEG, or None if it looks fine.

    Only the header and trailer are checked (microseconds, no pixel decode):
    the PNG signature, a valid ``IHDR`` chunk with its CRC and the ``IEND``
    trailer; the JPEG start-of-image and end-of-image markers. A truncated
    file fails the trailer check. Damage inside the pixel data is found by the
    model's decoder; the inference step then isolates the record.
    """
    if image.startswith(_PNG_SIGNATURE):
        if len(image) < 8 + 25 + 12:
            return "the PNG is too short to hold its header"
        length, kind = struct.unpack_from(">I4s", image, 8)
        if kind != b"IHDR" or length != 13:
            return "the PNG does not start with an IHDR chunk"
        (crc,) = struct.unpack_from(">I", image, 8 + 8 + 13)
        if zlib.crc32(image[12 : 12 + 4 + 13]) != crc:
            return "the PNG header fails its CRC check"
        width, height, depth, color = struct.unpack_from(">IIBB", image, 16)
        if width == 0 or height == 0:
            return f"the PNG is {width}x{height} pixels"
        if depth not in (1, 2, 4, 8, 16) or color not in (0, 2, 3, 4, 6):
            return f"the PNG has bit depth {depth} and colour type {color}"
        if not image.rstrip(b"\x00").endswith(_PNG_IEND):
            return "the PNG is truncated (no IEND chunk at the end)"
        return None
    if image.startswith(b"\xff\xd8\xff"):
        if not image.rstrip(b"\x00").endswith(b"\xff\xd9"):
            return "the JPEG is truncated (no end-of-image marker)"
        return None
    return f"the image is neither PNG nor JPEG (starts with {image[:8]!r})"


def validate_chip(located: LocatedRecord) -> Chip | ErrorRecord:
    """Checks one record against the chip contract and its image header.

    Returns:
        The decoded :class:`~footprints.contracts.Chip`, or an
        :class:`ErrorRecord` naming the source, the record (its id when it
        has one, else its position) and the reason.
    """
    try:
        chip = contracts.decode_chip(located.record)
    except ContractError as exc:
        return ErrorRecord(
            source=located.source,
            record=located.position,
            stage=VALIDATE_STAGE,
            error="invalid_record",
            message=(
                f"{exc}. Write chip records with footprints.contracts.encode_chip "
                "or `footprints prepare`."
            ),
        )
    problem = image_problem(chip.image)
    if problem is not None:
        return ErrorRecord(
            source=located.source,
            record=chip.footprint_id,
            stage=VALIDATE_STAGE,
            error="undecodable_image",
            message=(f"{problem} ({located.position}). Re-encode the chip image as PNG or JPEG."),
        )
    return chip
