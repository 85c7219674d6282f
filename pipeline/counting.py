"""Counts that reconcile, computed inside the pipeline.

Every job ends with ``input == written + errors`` in its summary. Beam's
metrics would give the same numbers on most runners, but their delivery
differs (committed vs attempted, and some portable runners report none), so
the counts that must reconcile are computed as data: every counted
PCollection is counted per bundle under its name (one small dict per bundle,
so a runner that keeps what a combine waits for, as the in-process
DirectRunner does, keeps a few dicts rather than a tag per element), the
partial counts are flattened into one stream and merged by one global
combine (:func:`count_all`), which gives the one dict that the summary
writer receives. Per-stage Beam counters are kept as
well, for progress and monitoring.
"""

from __future__ import annotations

import collections
import functools
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeAlias

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.transforms import combiners
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue


class _CountBundle(beam.DoFn):
    """Counts a bundle's elements by ``name_of(element)``; emits one dict at its end."""

    def __init__(self, name_of: Callable[[Any], Any]) -> None:
        self._name_of = name_of

    def start_bundle(self) -> None:
        """Starts the bundle's counts at zero."""
        self._counts: collections.Counter[str] = collections.Counter()

    def process(self, element: Any) -> None:
        """Counts ``element`` under its name (or adds the ``{name: n}`` it stands for)."""
        name = self._name_of(element)
        if isinstance(name, str):
            self._counts[name] += 1
        else:
            self._counts.update(name)

    def finish_bundle(self) -> Iterator[WindowedValue]:
        """Emits the bundle's ``{name: count}`` (nothing for an empty bundle)."""
        if self._counts:
            yield GlobalWindows.windowed_value(dict(self._counts))


class _CountByName(beam.CombineFn):
    """Sums partial ``{name: count}`` dicts; every name is present, 0 if its stream is empty."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = names

    def create_accumulator(self) -> dict[str, int]:
        return dict.fromkeys(self._names, 0)

    def add_input(self, acc: dict[str, int], part: Mapping[str, int]) -> dict[str, int]:
        for name, n in part.items():
            acc[name] = acc.get(name, 0) + n
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, int]]) -> dict[str, int]:
        each = iter(accs)
        total = next(each)
        for acc in each:
            for name, n in acc.items():
                total[name] = total.get(name, 0) + n
        return total

    def extract_output(self, acc: dict[str, int]) -> dict[str, int]:
        return dict(sorted(acc.items()))


def _named(name: str, _: Any) -> str:
    return name


def _str_of(name_of: Callable[[Any], Any], element: Any) -> str:
    return str(name_of(element))


def count_all(
    pipeline: beam.Pipeline,
    pcolls: Mapping[str, PCollection[Any]],
    label: str = "Counts",
    keyed: Mapping[str, tuple[PCollection[Any], Callable[[Any], Any]]] | None = None,
    weighted: Mapping[str, tuple[PCollection[Any], Callable[[Any], Mapping[str, int]]]]
    | None = None,
) -> PCollection[dict[str, int]]:
    """Counts each PCollection; returns a singleton PCollection ``{name: count}``.

    Example: ``count_all(p, {"chips": chips, "errors": errors})`` gives one
    element like ``{"chips": 97, "errors": 3}`` (0 for an empty PCollection).

    Args:
        pipeline: The pipeline (the flatten needs it when ``pcolls`` is empty).
        pcolls: Name -> PCollection; each name is present, 0 when empty.
        label: Prefix of the transforms' labels.
        keyed: Streams whose elements each count under a name of their own:
            ``{"reasons": (errors, lambda e: f"reason:{e.error}")}`` adds
            ``reason:nodata: 2, ...``; such a name is present only when
            counted at least once.
        weighted: Streams whose elements each stand for several counts:
            ``{"empty": (runs, lambda r: {"windows_planned": r.count})}``
            adds each run's ``count`` to ``windows_planned`` (summed with
            the same name's other counts).

    One transform per PCollection (a per-bundle count) and one global
    combine over their flattened partial counts, rather than a
    ``Count.Globally`` per PCollection or a ``CombinePerKey`` over the names:
    a count per PCollection added about five transforms each (half of a large
    job's graph and most of its start-up time on DirectRunner), and a
    per-name ``CombinePerKey`` a shuffle.
    """
    parts = [
        pcoll | f"{label}.Tag.{name}" >> beam.ParDo(_CountBundle(functools.partial(_named, name)))
        for name, pcoll in pcolls.items()
    ]
    parts += [
        pcoll | f"{label}.Tag.{name}" >> beam.ParDo(_CountBundle(functools.partial(_str_of, f)))
        for name, (pcoll, f) in (keyed or {}).items()
    ]
    parts += [
        pcoll | f"{label}.Tag.{name}" >> beam.ParDo(_CountBundle(f))
        for name, (pcoll, f) in (weighted or {}).items()
    ]
    result: PCollection[dict[str, int]] = (
        parts
        | f"{label}.All" >> beam.Flatten(pipeline=pipeline)
        | f"{label}.Count" >> beam.CombineGlobally(_CountByName(tuple(pcolls)))
    )
    return result


def count_by(
    pcoll: PCollection[Any], key_fn: Callable[[Any], object], label: str
) -> PCollection[dict[str, int]]:
    """A singleton ``{key: count}`` of ``key_fn(element)`` over ``pcoll``."""
    result: PCollection[dict[str, int]] = (
        pcoll
        | f"{label}.Key" >> beam.Map(lambda x: (str(key_fn(x)), 1))
        | f"{label}.Sum" >> beam.CombinePerKey(sum)
        | f"{label}.ToDict" >> combiners.ToDict()
        | f"{label}.Sorted" >> beam.Map(lambda d: dict(sorted(d.items())))
    )
    return result


#: Buckets the ids are spread over, so that no one worker merges every id.
ID_BUCKETS = 256
#: Ids buffered as Python strings before they are packed (per bucket and bundle).
_PACK_EVERY = 1024


class _IdPack(NamedTuple):
    """A bucket's distinct ids, sorted and compressed, with the counts of the repeated ones.

    Attributes:
        n: How many distinct ids ``blob`` holds.
        blob: zlib of the ids' UTF-8 byte lengths (uint32) followed by their
            bytes, in sorted order.
        extra: ``{id: count - 1}`` of the ids seen more than once.
    """

    n: int
    blob: bytes
    extra: dict[str, int]


def _encode_ids(ids: Any) -> bytes:
    """A sorted Arrow string array, compressed: lengths, then bytes (see :class:`_IdPack`).

    Our own layout rather than an Arrow IPC stream with zstd buffers: IPC
    compresses the offsets as they are, and one bucket's share of a million
    ``fp-00012345`` ids took 5.9 B an id that way against 3.8 here (parcel-style
    ids 8.4 against 6.8; UUIDs 21 either way).
    """
    import numpy as np

    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32)[
        ids.offset : ids.offset + len(ids) + 1
    ]
    data = ids.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    body = data.slice(start, end - start).to_pybytes() if data is not None else b""
    return zlib.compress(np.diff(offsets).astype(np.uint32).tobytes() + body, 1)


def _decode_ids(pack: _IdPack) -> Any:
    """The Arrow string array of a pack's ids."""
    import numpy as np
    import pyarrow as pa

    raw = zlib.decompress(pack.blob)
    lengths = np.frombuffer(raw, dtype=np.uint32, count=pack.n)
    offsets = np.zeros(pack.n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(
        pack.n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(raw[4 * pack.n :])
    )


#: An :class:`_IdCountsFn` accumulator: buffered ids, and packs of decreasing size.
_IdAcc: TypeAlias = tuple[list[str], list[_IdPack]]


class _IdCountsFn(beam.CombineFn):
    """Counts of each id, held as sorted, compressed id lists (:class:`_IdPack`).

    Every distinct id has to be kept until all are merged, and the
    in-process runner keeps every accumulator that waits for its shuffle.
    A dict costs about 300 B an id there; packed Arrow strings their bytes
    plus 12 (151 MiB of a 1M-chip score run); sorted and compressed, ids
    like ``fp-00012345`` cost about 4 B (UUIDs about 21), which keeps a
    1M-chip run's memory within the scale goal (docs/scale.md). Packs of
    about equal size are merged as they are made, so each id is repacked
    about log2(ids / _PACK_EVERY) times.
    """

    def create_accumulator(self) -> _IdAcc:
        """Buffered ids, and packs of decreasing size."""
        return [], []

    def add_input(self, acc: _IdAcc, element: str) -> _IdAcc:
        """Buffers one id; packs the buffer when it is full."""
        buffer, packs = acc
        buffer.append(element)
        if len(buffer) < _PACK_EVERY:
            return acc
        packs = [*packs, self._pack(buffer, [])]
        while len(packs) > 1 and 2 * packs[-1].n >= packs[-2].n:
            packs[-2:] = [self._pack([], packs[-2:])]
        return [], packs

    @staticmethod
    def _count(buffer: list[str], packs: list[_IdPack]) -> tuple[Any, dict[str, int]]:
        """The sorted distinct ids of the buffer and the packs, and ``{id: count - 1}``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        extra: collections.Counter[str] = collections.Counter()
        for pack in packs:
            extra.update(pack.extra)
        arrays = [_decode_ids(pack) for pack in packs]
        if buffer:
            arrays.append(pa.array(buffer, pa.string()))
        counted = pc.value_counts(pa.concat_arrays(arrays))
        order = pc.sort_indices(counted.field("values"))
        ids, counts = counted.field("values").take(order), counted.field("counts").take(order)
        repeated = pc.greater(counts, 1)
        if pc.any(repeated).as_py():
            more = zip(
                ids.filter(repeated).to_pylist(), counts.filter(repeated).to_pylist(), strict=True
            )
            extra.update({i: n - 1 for i, n in more})
        return ids, dict(extra)

    @classmethod
    def _pack(cls, buffer: list[str], packs: list[_IdPack]) -> _IdPack:
        """One pack of the buffered ids and the given packs (at least one id among them)."""
        ids, extra = cls._count(buffer, packs)
        return _IdPack(len(ids), _encode_ids(ids), extra)

    def merge_accumulators(self, accumulators: Iterable[_IdAcc]) -> _IdAcc:
        """Packs every accumulator's ids into one pack."""
        buffer: list[str] = []
        packs: list[_IdPack] = []
        for b, p in accumulators:
            buffer.extend(b)
            packs.extend(p)
        return [], [self._pack(buffer, packs)] if buffer or packs else []

    def compact(self, acc: _IdAcc) -> _IdAcc:
        """One pack, before the accumulator is shuffled."""
        buffer, packs = acc
        return ([], [self._pack(buffer, packs)]) if buffer or len(packs) > 1 else acc

    def extract_output(self, acc: _IdAcc) -> list[tuple[str, int]]:
        """The ids seen more than once, with their counts, sorted."""
        buffer, packs = acc
        if not buffer and not packs:
            return []
        _, extra = self._count(buffer, packs)  # counted, not packed again
        return [(i, n + 1) for i, n in sorted(extra.items())]


def _bucket(footprint_id: str) -> tuple[int, str]:
    return zlib.crc32(footprint_id.encode("utf-8")) % ID_BUCKETS, footprint_id


def repeated_ids(ids: PCollection[str], label: str = "Repeated") -> PCollection[tuple[str, int]]:
    """``(id, count)`` for every id in ``ids`` seen more than once.

    The ids are spread over :data:`ID_BUCKETS` keys by a stable hash and
    counted per bucket in sorted, compressed id lists (:class:`_IdCountsFn`), so
    the check costs a few bytes an id instead of a shuffle entry per id.

    Args:
        ids: A PCollection of id strings.
        label: Prefix of the stage names.
    """
    result: PCollection[tuple[str, int]] = (
        ids
        | f"{label}Bucket" >> beam.Map(_bucket)
        | f"{label}Count"
        >> beam.CombinePerKey(
            _IdCountsFn()  # type: ignore[no-untyped-call]  # Beam's CombineFn.__init__ is unannotated
        )
        | f"{label}Ids" >> beam.FlatMap(lambda kv: kv[1])
    )
    return result
