"""Scored batches parked on disk between the passes of the exact fraction.

The exact fraction reads every scored chip twice after the sketch (the
bracket pass, then the labelling pass), and both must wait for a side input
(the regions' plans, then their thresholds). A runner keeps a PCollection
that waits in its shuffle: Dataflow and Flink on disk, but the in-process
DirectRunner in memory, which made its peak memory grow with the chip count
(about 0.7 KB per chip: x1.76 from 100k to 1M chips, docs/scale.md).

So the scored batches are written once, as they leave the model, to Arrow
IPC streams (one file per bundle, the chips' metadata and scores as columns,
LZ4-compressed) in a folder the job owns, and only the file names wait for
the side inputs; each later pass streams the files back, one model batch at
a time. Arrow's stream format is written and read front to back (no footer,
no seeks), so it works through any Beam filesystem. A retried bundle leaves
an unreferenced file behind; :func:`remove_spill` deletes the whole folder
when the last pass is done, and a folder left by a killed run is deleted by
the next run that uses it.

Every value round-trips exactly (strings, ``None``, int labels, float32
scores), so the labels are those of the in-memory passes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import BinaryIO

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from footprints.contracts import METRICS_SCORE
from pipeline.values import ChipMeta, ScoredBatch

#: Columns of a spill file: the :class:`ChipMeta` fields, in order, then the score.
SCHEMA = pa.schema(
    [
        ("footprint_id", pa.string()),
        ("region", pa.string()),
        ("label", pa.int64()),
        ("wkb", pa.binary()),
        ("crs", pa.string()),
        ("source", pa.string()),
        ("position", pa.string()),
        ("score", pa.float32()),
    ]
)
_META_FIELDS = tuple(ChipMeta._fields)
_SUFFIX = ".arrows"
_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def to_record_batch(batch: ScoredBatch) -> pa.RecordBatch:
    """A scored batch as one Arrow record batch of :data:`SCHEMA`."""
    columns = [list(column) for column in zip(*batch.metas, strict=True)] or [
        [] for _ in _META_FIELDS
    ]
    arrays = [
        pa.array(values, type=SCHEMA.field(name).type)
        for name, values in zip(_META_FIELDS, columns, strict=True)
    ]
    arrays.append(pa.array(batch.scores, type=pa.float32()))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def from_record_batch(record_batch: pa.RecordBatch) -> ScoredBatch:
    """The scored batch that :func:`to_record_batch` wrote."""
    columns = [record_batch.column(name).to_pylist() for name in _META_FIELDS]
    metas = tuple(ChipMeta(*fields) for fields in zip(*columns, strict=True))
    return ScoredBatch(metas, record_batch.column("score").to_numpy(zero_copy_only=False))


def read_spill(path: str) -> Iterator[ScoredBatch]:
    """The scored batches of one spill file, in the order they were written."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for record_batch in pa.ipc.open_stream(f):
            yield from_record_batch(record_batch)


class SpillBatchesFn(beam.DoFn):
    """Writes each bundle's scored batches to one new file; outputs its path.

    The path is output when the bundle finishes, so only complete files are
    read back; an attempt that fails leaves its file unnamed, for
    :func:`remove_spill`.
    """

    def __init__(self, directory: str):
        self._directory = directory
        self._spilled = Metrics.counter(METRICS_SCORE, "records_spilled")

    def start_bundle(self) -> None:
        """No file yet: one is opened by the bundle's first batch."""
        self._path: str | None = None
        self._file: BinaryIO | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def process(self, batch: ScoredBatch) -> tuple[()]:
        """Appends one batch to the bundle's file."""
        if self._writer is None:
            self._path = FileSystems.join(self._directory, uuid.uuid4().hex + _SUFFIX)
            self._file = FileSystems.create(
                self._path, compression_type=CompressionTypes.UNCOMPRESSED
            )
            self._writer = pa.ipc.new_stream(self._file, SCHEMA, options=_OPTIONS)
        self._writer.write_batch(to_record_batch(batch))
        self._spilled.inc(batch.size)
        return ()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        """Closes the bundle's file and outputs its path."""
        if self._writer is None:
            return
        self._writer.close()
        if self._file is not None:
            self._file.close()
        path, self._writer, self._file, self._path = self._path, None, None, None
        yield GlobalWindows.windowed_value(path)


def remove_spill(directory: str, *_done: object) -> str:
    """Deletes the spill folder and everything in it (also a killed run's files).

    Extra arguments are ignored: they are the side inputs that make the
    pipeline call this only after the last pass.
    """
    files = FileSystems.match([FileSystems.join(directory, "*")])[0].metadata_list
    if files:
        FileSystems.delete([m.path for m in files])
    if FileSystems.exists(directory):  # a local folder; object stores have none left
        FileSystems.delete([directory])
    return directory


def default_spill_dir(temp_location: str | None) -> str:
    """A new spill folder under ``temp_location``, else under the local temp folder.

    The local temp folder only suits runners whose workers share this
    machine's disk; a distributed job passes a folder on shared storage
    (``footprints score`` uses ``OUTPUT/.spill``).
    """
    import tempfile

    base = temp_location or tempfile.gettempdir()
    return FileSystems.join(base, f"footprints-spill-{uuid.uuid4().hex[:12]}")


__all__ = [
    "SCHEMA",
    "SpillBatchesFn",
    "default_spill_dir",
    "from_record_batch",
    "read_spill",
    "remove_spill",
    "to_record_batch",
]
