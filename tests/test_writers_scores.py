"""The scoring job's writers without a job: CSV records and the summary's score warnings."""

from __future__ import annotations

import csv
import os

import apache_beam as beam
import duckdb
import pytest
from apache_beam.testing import test_pipeline

from pipeline.score import MODEL_SCORES_OUT_OF_RANGE, SCORES_OUT_OF_RANGE, score_range_warnings
from pipeline.writers.scores import WriteCsv, csv_line

# Ids as other systems hand them over: line breaks of every kind, quotes, commas.
IDS = [
    "fp-1",
    "fp-2\nsecond line",
    "fp-3\rold mac",
    "fp-4\r\nwindows",
    'fp-5 "quoted"',
    "fp-6, with comma",
    "fp-7\n",
    "",
]


def test_csv_line_quotes_any_field_that_breaks_a_line():
    # The record for each id, as RFC 4180 writes it: quoted when it holds a quote,
    # a comma, CR or LF; quotes doubled.
    for fid in IDS:
        line = csv_line({"footprint_id": fid, "score": 0.5}, ["footprint_id", "score"])
        special = any(c in fid for c in '",\r\n')
        expected = ('"' + fid.replace('"', '""') + '"' if special else fid) + ",0.5"
        assert line == expected, fid


def test_csv_reads_back_one_row_per_id_in_python_and_duckdb(tmp_path):
    path = str(tmp_path / "scores.csv")
    rows = [{"footprint_id": fid, "region": "a", "score": i / 10} for i, fid in enumerate(IDS)]
    with test_pipeline.TestPipeline() as p:
        _ = p | beam.Create(rows) | WriteCsv(path, ["footprint_id", "region", "score"])
    assert os.path.exists(path)
    with open(path, newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    assert sorted(r["footprint_id"] for r in back) == sorted(IDS)
    assert {r["footprint_id"]: float(r["score"]) for r in back} == {
        r["footprint_id"]: r["score"] for r in rows
    }
    duck = duckdb.sql(
        f"SELECT footprint_id, score FROM read_csv('{path}', header = true)"
    ).fetchall()
    # DuckDB reads an empty unquoted field as NULL, the csv module as "".
    assert sorted((i or "") for i, _ in duck) == sorted(IDS)
    assert len(duck) == len(IDS)


@pytest.mark.parametrize(
    "reasons, scored, code",
    [
        ({}, 10, None),
        ({"inference/non_finite_score": 2}, 10, None),
        (
            {"inference/score_out_of_range": 3, "validate/invalid_record": 1},
            10,
            SCORES_OUT_OF_RANGE,
        ),
        ({"inference/score_out_of_range": 12}, 0, MODEL_SCORES_OUT_OF_RANGE),
    ],
)
def test_scores_outside_0_1_are_a_warning(reasons, scored, code):
    warnings = score_range_warnings(reasons, scored)
    assert [w["code"] for w in warnings] == ([code] if code else [])
    if code:
        assert str(reasons["inference/score_out_of_range"]) in warnings[0]["message"]
        assert "sigmoid" in warnings[0]["message"]


def test_the_score_summary_warns_of_unmatched_regions_and_duplicate_ids():
    # The job writes these warnings itself (the CLI used to patch them in afterwards):
    # a --region-fractions row no chip carries, and ids seen more than once.
    from fractions import Fraction

    from pipeline.score import build_summary
    from pipeline.summary import duplicate_report
    from pipeline.thresholds.fractions import RegionFractions

    counts = {"records_read": 3, "read_errors": 0, "scored": 3, "errors": 0}
    fractions = RegionFractions(Fraction(2, 5), (("county-x", Fraction(1, 2)),))
    duplicates = duplicate_report([("a", 2), ("b", 1)])
    summary = build_summary(counts, [], {}, {}, duplicates, {"run_id": "r"}, (), fractions)
    codes = [w["code"] for w in summary["warnings"]]
    assert codes == ["unmatched_region", "duplicate_id"]
    assert "'county-x'" in summary["warnings"][0]["message"]
    assert "1 footprint ids occur more than once (2 records" in summary["warnings"][1]["message"]
    # Without per-region rows or repeated ids, neither warning.
    clean = build_summary(counts, [], {}, {}, duplicate_report([("a", 1)]), {"run_id": "r"})
    assert clean["warnings"] == []
