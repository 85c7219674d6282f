"""The scored batches' spill between the exact fraction's passes.

The round trip must be exact (the labels depend on every score bit and id),
and the exact fraction through the spill must give the reference labels
(sort each region in memory by the rank key) and leave no files behind,
also removing what a killed run left in the folder.
"""

from __future__ import annotations

import os
from fractions import Fraction

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.util import assert_that
from oracles import exact_top_k

from pipeline.thresholds import LabelExactFraction
from pipeline.thresholds.fractions import RegionFractions
from pipeline.thresholds.selection import rank_key, target_count
from pipeline.thresholds.spill import from_record_batch, remove_spill, to_record_batch
from pipeline.values import ChipMeta, ScoredBatch


def _batch(start: int, n: int, rng: np.random.Generator) -> ScoredBatch:
    metas = tuple(
        ChipMeta(
            f"fp-{i:05d}-é",
            "north" if i % 3 else "south",
            None if i % 5 == 0 else i % 2,
            None if i % 4 else b"\x01\x03\x00" + bytes([i % 256]),
            None if i % 4 else "EPSG:32618",
            f"gs://bucket/chips-{i % 2:05d}-of-00002.tfrecord",
            f"offset {i * 97}",
        )
        for i in range(start, start + n)
    )
    # Saturated and tied scores, and float32 values a float64 trip would change.
    scores = rng.choice(
        np.array([0.0, 1.0, 0.5, np.float32(1 / 3), np.nextafter(np.float32(1), 0)], np.float32),
        size=n,
    )
    return ScoredBatch(metas, scores.astype(np.float32))


def test_round_trip_is_exact():
    batch = _batch(0, 300, np.random.default_rng(0))
    back = from_record_batch(to_record_batch(batch))
    assert back.metas == batch.metas
    assert back.scores.dtype == np.float32
    assert back.scores.tobytes() == batch.scores.tobytes()
    assert from_record_batch(to_record_batch(ScoredBatch((), np.zeros(0, np.float32)))).size == 0


def test_remove_spill_deletes_the_folder_and_leftovers(tmp_path):
    folder = tmp_path / ".spill"
    folder.mkdir()
    (folder / "killed-run.arrows").write_bytes(b"partial")
    remove_spill(str(folder), 3)
    assert not folder.exists()
    remove_spill(str(folder))  # nothing there: nothing to do, no error


@pytest.mark.slow
def test_exact_fraction_through_the_spill_gives_the_reference_labels(tmp_path):
    rng = np.random.default_rng(1)
    batches = [_batch(i * 64, 64, rng) for i in range(40)]
    fractions = RegionFractions(Fraction("0.3"), (("south", Fraction("0.55")),))
    spill = tmp_path / "out" / ".spill"
    spill.mkdir(parents=True)
    (spill / "killed-run.arrows").write_bytes(b"partial")
    expected = {}
    for region in ("north", "south"):
        chips = [(m, s) for b in batches for m, s in zip(b.metas, b.scores, strict=True)]
        chips = [(m, float(s)) for m, s in chips if m.region == region]
        keys = [rank_key(s, m.footprint_id, m.source, m.position) for m, s in chips]
        k = target_count(len(chips), fractions.for_region(region))
        expected.update(
            (m.footprint_id, bool(r)) for (m, _), r in zip(chips, exact_top_k(keys, k), strict=True)
        )

    def labels(labelled):
        return {
            m.footprint_id: bool(r)
            for b in labelled
            for m, r in zip(b.metas, b.is_residential, strict=True)
        }

    def check(labelled):
        got = labels(labelled)
        assert len(got) == len(expected) and got == expected

    with beam.Pipeline() as p:
        out = (
            p
            | beam.Create(batches, reshuffle=False)
            | LabelExactFraction(fractions, epsilon=0.01, spill_dir=str(spill))
        )
        assert_that(out["chips"] | beam.combiners.ToList(), lambda got: check(got[0]))
    assert not spill.exists()
    assert os.path.isdir(tmp_path / "out")
