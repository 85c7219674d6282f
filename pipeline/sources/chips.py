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
record is dead-lettered alone instead of failing its batch in the model or a
later stage. Every field is checked here, where the record is read, and
nowhere later: the record must parse as a chip record
(``footprints.contracts.decode_chip``: required features, types, labels,
UTF-8 text); its image (and mask) must have a plausible, complete PNG or JPEG
header and trailer, and declare no more than ``max_pixels`` pixels (the
decode limit: the model's decoder allocates what the header declares, so a
1 MiB PNG declaring 20000 x 20000 pixels would take gigabytes); its polygon
must be WKB of a polygon and its CRS one pyproj knows. Each failure is a dead
letter with its own :class:`~footprints.errors.Reason`.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import struct
import zlib
from collections.abc import Iterator
from typing import BinaryIO, Protocol

import apache_beam as beam
import google_crc32c
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics
from apache_beam.pvalue import DoOutputsTuple, PBegin, TaggedOutput

from footprints import contracts
from footprints.contracts import Chip, ErrorRecord, Rejected
from footprints.errors import ContractError, Reason
from pipeline.ptransform import DataclassTransform
from pipeline.settings.score import MAX_CHIP_PIXELS
from pipeline.values import LocatedRecord

NAMESPACE = contracts.METRICS_SCORE
READ_STAGE = "read"
VALIDATE_STAGE = "validate"

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
# A record longer than this is taken as a corrupt length even if its CRC
# matches by chance; chips are kilobytes.
_MAX_RECORD_BYTES = 1 << 30


class ShardDamage(Rejected):
    """A TFRecord shard cannot be read past ``offset``.

    Attributes:
        offset: Byte offset of the damaged record (uncompressed stream).
        reason: ``truncated_shard``, ``corrupt_shard`` or ``unreadable_shard``.
    """

    def __init__(self, offset: int, reason: Reason, detail: str) -> None:
        super().__init__(reason, f"{reason} at byte {offset}: {detail}")
        self.offset = offset
        self.detail = detail


def masked_crc32c(data: bytes) -> int:
    """The masked CRC32C that TFRecord framing stores."""
    crc: int = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


class ByteStream(Protocol):
    """What :func:`iter_tfrecords` reads: a binary stream (a file, a ``GzipFile``, ``BytesIO``)."""

    def read(self, size: int, /) -> bytes:
        """At most ``size`` bytes; fewer at the end of the stream, none after it."""
        ...


def _read_exactly(f: ByteStream, n: int) -> bytes:
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


def iter_tfrecords(f: ByteStream) -> Iterator[tuple[int, bytes]]:
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
            raise ShardDamage(offset, Reason.UNREADABLE_SHARD, str(exc)) from exc
        if not header:
            return
        if len(header) < 12:
            raise ShardDamage(
                offset,
                Reason.TRUNCATED_SHARD,
                f"the file ends inside a record header ({len(header)} of 12 bytes)",
            )
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise ShardDamage(
                offset, Reason.CORRUPT_SHARD, "the record length fails its CRC32C check"
            )
        if length > _MAX_RECORD_BYTES:
            raise ShardDamage(offset, Reason.CORRUPT_SHARD, f"implausible record length {length}")
        try:
            body = _read_exactly(f, length + 4)
        except (EOFError, OSError, zlib.error) as exc:
            raise ShardDamage(offset, Reason.UNREADABLE_SHARD, str(exc)) from exc
        if len(body) < length + 4:
            raise ShardDamage(
                offset, Reason.TRUNCATED_SHARD, f"the file ends inside a record of {length} bytes"
            )
        data = body[:length]
        (data_crc,) = _FOOTER.unpack_from(body, length)
        if masked_crc32c(data) != data_crc:
            raise ShardDamage(
                offset, Reason.CORRUPT_SHARD, "the record data fails its CRC32C check"
            )
        yield offset, data
        offset += 16 + length


def open_shard(path: str) -> BinaryIO | io.BufferedIOBase:
    """Opens a shard for :func:`iter_tfrecords`, decompressing ``*.gz``.

    Python's ``gzip`` is used over the raw file rather than Beam's
    ``CompressedFile`` because it reports a truncated stream as an error
    (``EOFError``) instead of a silent early end, which would hide damage.
    """
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if contracts.compression_of(path) == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if hasattr(raw, "peek"):
        return raw
    # Beam declares BinaryIO; a stream without peek() is a raw one, which BufferedReader takes.
    return io.BufferedReader(raw, buffer_size=1 << 20)  # type: ignore[type-var]


def read_shard(path: str) -> Iterator[LocatedRecord | ErrorRecord]:
    """All records of one shard, then an :class:`ErrorRecord` if it is damaged."""
    suffix = " (uncompressed stream)" if contracts.compression_of(path) == "gzip" else ""
    try:
        with open_shard(path) as f:
            for offset, data in iter_tfrecords(f):
                yield LocatedRecord(path, f"offset {offset}", data)
    except ShardDamage as damage:
        yield damage.to_error(
            path,
            READ_STAGE,
            record=f"offset {damage.offset}{suffix}",
            hint=(
                "the records before this offset were scored, the rest of "
                "the shard was skipped. Rewrite the shard from its source (for example "
                "rerun `footprints prepare`) and score it again."
            ),
        )
    except OSError as exc:
        yield ErrorRecord(
            source=path,
            record="offset 0",
            stage=READ_STAGE,
            error=Reason.UNREADABLE_SHARD,
            message=f"cannot open the shard: {exc}; check that it exists and is readable",
        )


class ReadShardFn(beam.DoFn):
    """Reads one shard per input path; dead letters go to the ``errors`` output."""

    ERRORS = contracts.ERRORS

    def __init__(self) -> None:
        self._records = Metrics.counter(NAMESPACE, "records_read")
        self._bytes = Metrics.counter(NAMESPACE, "bytes_read")
        self._shards = Metrics.counter(NAMESPACE, "shards_read")
        self._damaged = Metrics.counter(NAMESPACE, "shards_damaged")

    def process(self, path: str) -> Iterator[LocatedRecord | TaggedOutput[str, ErrorRecord]]:
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

    def expand(self, pbegin: PBegin) -> DoOutputsTuple:
        """Matches the shards, spreads them over workers and reads them."""
        outputs: DoOutputsTuple = (
            pbegin
            | "Match" >> fileio.MatchFiles(self.pattern)
            | "Path" >> beam.Map(lambda metadata: metadata.path)
            # Spread shards over workers before the expensive per-shard work.
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShard"
            >> beam.ParDo(ReadShardFn()).with_outputs(ReadShardFn.ERRORS, main="records")
        )
        return outputs


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
            chip = validate_chip(item)
            if isinstance(chip, Chip) and chip.wkb is not None and chip.crs:
                return chip.crs
            if seen >= max_records:
                return None
    return None


# --------------------------------------------------------------------------
# Validation before batching
# --------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_SOI = b"\xff\xd8\xff"


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
    if image.startswith(_JPEG_SOI):
        if not image.rstrip(b"\x00").endswith(b"\xff\xd9"):
            return "the JPEG is truncated (no end-of-image marker)"
        return None
    return f"the image is neither PNG nor JPEG (starts with {image[:8]!r})"


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic), which
# hold the frame's size; 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(image: bytes) -> tuple[int, int]:
    # Walk the marker segments (0xFF, marker, 2-byte length) to the first SOF.
    pos = 2
    while pos + 4 <= len(image):
        if image[pos] != 0xFF:
            raise ValueError(f"the JPEG has no marker at byte {pos}")
        marker = image[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", image, pos + 2)
        if marker in _JPEG_SOF:
            if pos + 9 > len(image) or length < 7:
                break
            height, width = struct.unpack_from(">HH", image, pos + 5)
            return int(width), int(height)
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        pos += 2 + length
    raise ValueError("the JPEG has no frame header (SOF marker) before its image data")


def image_size(image: bytes) -> tuple[int, int]:
    """``(width, height)`` that a PNG or JPEG declares, read from its header only.

    PNG: the ``IHDR`` chunk; JPEG: the first start-of-frame marker, found by
    walking the marker segments. Microseconds, no decode: Pillow's parser
    gives the same sizes (the tests compare) but costs about 150 us a chip,
    a twentieth of what scoring the chip costs. Call it on images
    :func:`image_problem` accepted.

    Raises:
        ValueError: if the JPEG has no readable frame header.
    """
    if image.startswith(_PNG_SIGNATURE):
        width, height = struct.unpack_from(">II", image, 16)
        return int(width), int(height)
    return _jpeg_size(image)


@functools.lru_cache(maxsize=256)
def crs_problem(crs: str) -> str | None:
    """Why pyproj cannot use ``crs``, or None (cached: a run has few distinct CRSs)."""
    import pyproj

    try:
        pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as exc:
        return f"footprint/crs {crs!r} is not a CRS pyproj knows ({exc})"
    return None


def polygon_problem(wkb: bytes) -> tuple[Reason, str] | None:
    """``(reason, why)`` when ``wkb`` is not WKB of a polygon or multipolygon, else None."""
    import shapely

    try:
        geometry = shapely.from_wkb(wkb)
    except (shapely.errors.GEOSException, ValueError, TypeError) as exc:
        return Reason.INVALID_GEOMETRY, f"footprint/wkb is not WKB ({exc})"
    if geometry is None or geometry.geom_type not in ("Polygon", "MultiPolygon"):
        kind = "nothing" if geometry is None else geometry.geom_type
        return Reason.NOT_A_POLYGON, f"footprint/wkb holds {kind}, not a polygon"
    if geometry.is_empty:  # no centroid, no ring to orient
        return Reason.MISSING_GEOMETRY, f"footprint/wkb holds an empty {geometry.geom_type}"
    return None


def _error(located: LocatedRecord, record: str, reason: Reason, message: str) -> ErrorRecord:
    return ErrorRecord(
        source=located.source, record=record, stage=VALIDATE_STAGE, error=reason, message=message
    )


def _pixels_problem(what: str, data: bytes, max_pixels: int) -> tuple[Reason, str] | None:
    """``(reason, why)`` when an image or mask is not a PNG/JPEG within the decode limit."""
    problem = image_problem(data)
    if problem is not None:
        return Reason.UNDECODABLE_IMAGE, f"{what}: {problem}"
    try:
        width, height = image_size(data)
    except ValueError as exc:
        return Reason.UNDECODABLE_IMAGE, f"{what}: {exc}"
    if width * height > max_pixels:
        return Reason.IMAGE_TOO_LARGE, (
            f"{what} declares {width} x {height} = {width * height:,} pixels, more than the "
            f"decode limit of {max_pixels:,} (--max-chip-pixels); cut smaller chips, or raise "
            "--max-chip-pixels if chips this large are meant (decoding one takes about "
            f"{width * height * 16 / 2**20:,.0f} MiB)"
        )
    return None


def validate_chip(located: LocatedRecord, max_pixels: int = MAX_CHIP_PIXELS) -> Chip | ErrorRecord:
    """Checks every field of one record; returns the chip or its dead letter.

    In order: the record parses as a chip record (required features, types,
    label, UTF-8 text: ``invalid_record``); the image, and the mask when there
    is one, are complete PNG/JPEG (``undecodable_image``) declaring at most
    ``max_pixels`` pixels (``image_too_large``); the polygon is WKB
    (``invalid_geometry``) of a polygon (``not_a_polygon``) that is not
    empty (``missing_geometry``); the CRS is one pyproj knows
    (``invalid_crs``). A chip that passes cannot fail a later stage because
    of one of its fields.

    Args:
        located: The serialized record and where it was read.
        max_pixels: The decode limit (``--max-chip-pixels``).

    Returns:
        The decoded :class:`~footprints.contracts.Chip`, or an
        :class:`ErrorRecord` naming the source, the record (its id when it
        has one, else its position) and the reason.
    """
    try:
        chip = contracts.decode_chip(located.record)
    except ContractError as exc:
        return _error(
            located,
            located.position,
            Reason.INVALID_RECORD,
            f"{exc}. Write chip records with footprints.contracts.encode_chip "
            "or `footprints prepare`.",
        )
    where = f" ({located.position})" if located.position else ""
    fid = chip.footprint_id
    problem = _pixels_problem("the image", chip.image, max_pixels)
    if problem is None and chip.mask is not None:
        if not chip.mask.startswith(_PNG_SIGNATURE):
            problem = Reason.UNDECODABLE_IMAGE, "the mask (image/mask) is not a PNG"
        else:
            problem = _pixels_problem("the mask (image/mask)", chip.mask, max_pixels)
    if problem is not None:
        reason, why = problem
        fix = (
            ""
            if reason == Reason.IMAGE_TOO_LARGE
            else ". Re-encode the chip image (and mask) as PNG or JPEG."
        )
        return _error(located, fid, reason, f"{why}{where}{fix}")
    if chip.wkb is not None:
        bad_polygon = polygon_problem(chip.wkb)
        if bad_polygon is not None:
            reason, why = bad_polygon
            return _error(
                located,
                fid,
                reason,
                f"{why}{where}. Write the footprint as WKB of a polygon (shapely's "
                "`geometry.wkb`), or leave footprint/wkb out.",
            )
    if chip.crs is not None:
        bad_crs = crs_problem(chip.crs)
        if bad_crs is not None:
            return _error(
                located,
                fid,
                Reason.INVALID_CRS,
                f"{bad_crs}{where}. Write it as an EPSG code such as EPSG:26915, or as WKT.",
            )
    return chip
