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
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue


class _CountBundle(beam.DoFn):
    """Counts a bundle's elements by ``name_of(element)``; emits one dict at its end."""

    def __init__(self, name_of: Callable[[Any], str]):
        self._name_of = name_of

    def start_bundle(self) -> None:
        """Starts the bundle's counts at zero."""
        self._counts: collections.Counter[str] = collections.Counter()

    def process(self, element: Any) -> None:
        """Counts ``element`` under its name."""
        self._counts[self._name_of(element)] += 1

    def finish_bundle(self) -> Iterator[WindowedValue]:
        """Emits the bundle's ``{name: count}`` (nothing for an empty bundle)."""
        if self._counts:
            yield GlobalWindows.windowed_value(dict(self._counts))


class _CountByName(beam.CombineFn):
    """Sums partial ``{name: count}`` dicts; every name is present, 0 if its stream is empty."""

    def __init__(self, names: tuple[str, ...]):
        self._names = names

    def create_accumulator(self):
        return dict.fromkeys(self._names, 0)

    def add_input(self, acc, part: Mapping[str, int]):
        for name, n in part.items():
            acc[name] = acc.get(name, 0) + n
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        total = next(accs)
        for acc in accs:
            for name, n in acc.items():
                total[name] = total.get(name, 0) + n
        return total

    def extract_output(self, acc):
        return dict(sorted(acc.items()))


def _named(name: str, _: Any) -> str:
    return name


def _str_of(name_of: Callable[[Any], Any], element: Any) -> str:
    return str(name_of(element))


def count_all(
    pipeline: beam.Pipeline,
    pcolls: Mapping[str, beam.PCollection],
    label: str = "Counts",
    keyed: Mapping[str, tuple[beam.PCollection, Callable[[Any], str]]] | None = None,
) -> beam.PCollection:
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
    return (
        parts
        | f"{label}.All" >> beam.Flatten(pipeline=pipeline)
        | f"{label}.Count" >> beam.CombineGlobally(_CountByName(tuple(pcolls)))
    )


def count_by(pcoll: beam.PCollection, key_fn, label: str) -> beam.PCollection:
    """A singleton ``{key: count}`` of ``key_fn(element)`` over ``pcoll``."""
    return (
        pcoll
        | f"{label}.Key" >> beam.Map(lambda x: (str(key_fn(x)), 1))
        | f"{label}.Sum" >> beam.CombinePerKey(sum)
        | f"{label}.ToDict" >> beam.combiners.ToDict()
        | f"{label}.Sorted" >> beam.Map(lambda d: dict(sorted(d.items())))
    )


#: Buckets the ids are spread over, so that no one worker merges every id.
ID_BUCKETS = 256
#: Ids buffered as Python strings before they are packed into Arrow arrays.
_PACK_EVERY = 4096


class _IdCountsFn(beam.CombineFn):
    """Counts of each id, held as Arrow arrays (unique ids, counts), not Python dicts.

    A dict of a million ids costs about 300 B an id in Beam's shuffle on the
    in-process runner; packed Arrow strings cost their bytes plus 12, which
    keeps a 1M-chip run's memory within the scale goal (docs/scale.md).
    """

    def create_accumulator(self) -> tuple[list[str], list[Any]]:
        """Buffered ids, and packed (ids, counts) pairs."""
        return [], []

    def add_input(self, acc, element: str):
        """Buffers one id; packs the buffer when it is full."""
        buffer, packed = acc
        buffer.append(element)
        if len(buffer) >= _PACK_EVERY:
            return [], [self._pack(buffer, packed)]
        return acc

    @staticmethod
    def _pack(buffer: list[str], packed: list[Any]) -> Any:
        import pyarrow as pa

        parts = list(packed)
        if buffer:
            ids = pa.array(buffer, pa.string())
            parts.append(pa.table({"id": ids, "n": pa.array([1] * len(ids), pa.int64())}))
        table = pa.concat_tables(parts) if parts else None
        if table is None:
            return pa.table({"id": pa.array([], pa.string()), "n": pa.array([], pa.int64())})
        summed = table.group_by("id").aggregate([("n", "sum")])
        return pa.table({"id": summed["id"], "n": summed["n_sum"]}).combine_chunks()

    def merge_accumulators(self, accumulators: Any) -> tuple[list[str], list[Any]]:
        """Packs every accumulator's ids into one counted table."""
        buffer: list[str] = []
        packed: list[Any] = []
        for b, p in accumulators:
            buffer.extend(b)
            packed.extend(p)
        return [], [self._pack(buffer, packed)] if buffer or packed else []

    def compact(self, acc):
        """One counted table, before the accumulator is shuffled."""
        buffer, packed = acc
        return ([], [self._pack(buffer, packed)]) if buffer or len(packed) > 1 else acc

    def extract_output(self, acc) -> list[tuple[str, int]]:
        """The ids seen more than once, with their counts."""
        buffer, packed = acc
        if not buffer and not packed:
            return []
        table = self._pack(buffer, packed)
        ids, counts = table["id"].to_pylist(), table["n"].to_pylist()
        return [(i, n) for i, n in zip(ids, counts, strict=True) if n > 1]


def _bucket(footprint_id: str) -> tuple[int, str]:
    import zlib

    return zlib.crc32(footprint_id.encode("utf-8")) % ID_BUCKETS, footprint_id


def repeated_ids(ids: beam.PCollection, label: str = "Repeated") -> beam.PCollection:
    """``(id, count)`` for every id in ``ids`` seen more than once.

    The ids are spread over :data:`ID_BUCKETS` keys by a stable hash and
    counted per bucket in packed Arrow arrays (:class:`_IdCountsFn`), so the
    check costs tens of bytes an id instead of a shuffle entry per id.

    Args:
        ids: A PCollection of id strings.
        label: Prefix of the stage names.
    """
    return (
        ids
        | f"{label}Bucket" >> beam.Map(_bucket)
        | f"{label}Count" >> beam.CombinePerKey(_IdCountsFn())
        | f"{label}Ids" >> beam.FlatMap(lambda kv: kv[1])
    )
