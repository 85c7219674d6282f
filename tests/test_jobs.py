"""pipeline.jobs: one job shape and one summary layout for prepare, score and segment.

The summary builders are plain functions, so the layout is checked here
without running a pipeline; the end-to-end tests of each job read the same
keys from real runs.
"""

from __future__ import annotations

import re

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from footprints.contracts import SegmenterAssets
from footprints.errors import ConfigError
from pipeline import jobs, prepare, score, segment
from pipeline.counting import count_all
from pipeline.score import ScoreConfig
from pipeline.settings import check_batch_sizes
from pipeline.settings.score import CPU_BATCH_SIZE
from pipeline.summary import HEAD_KEYS


def _prepare_summary(tmp_path, chips: int, errors: int) -> dict:
    config = prepare.PrepareConfig(output=str(tmp_path / "c"), images=str(tmp_path), run_id="p1")
    counts = {"inputs": 5, "chips": chips, "errors": errors}
    return prepare.build_summary(
        counts, {"residential": chips}, {}, {"nodata": errors}, [], config, "images"
    )


def _score_summary(scored: int, errors: int) -> dict:
    counts = {"records_read": 9, "read_errors": 1, "scored": scored, "errors": errors}
    return score.build_summary(
        counts, [], {}, {"decode/undecodable_image": errors}, {"count": 0}, {"run_id": "s1"}
    )


def _segment_summary(tmp_path, written: int, classifier: str | None = None) -> dict:
    config = segment.SegmentConfig(
        raster=str(tmp_path / "*.tif"),
        model_dir=str(tmp_path / "model"),
        output=str(tmp_path / "out"),
        assets=SegmenterAssets(64, (1, 2, 3), "uint8", (0.0,) * 3, (1 / 255,) * 3),
        halo=8,
        run_id="g1",
        classifier=classifier,
        residential_fraction=0.5 if classifier else None,
    )
    counts = {
        "paths": 3,
        "tiles": 3,
        "masks": written,
        "windows_planned": 4,
        "cores_inferred": 4,
        "footprints": 6,
        "chips": 6,
        "scored": 5,
        "score_errors": 1,
        "classified": 6,
        "errors": 1,
        "reason:unreadable": 1,
    }
    tables = {"footprints": [], "scores": [], "classified": []}
    return segment.build_summary(
        counts, config=config, masks={"masks": []}, skipped=[], tables=tables
    )


def test_every_job_summary_starts_with_the_same_keys(tmp_path):
    summaries = {
        "prepare": _prepare_summary(tmp_path, 4, 1),
        "score": _score_summary(8, 2),
        "segment": _segment_summary(tmp_path, 3),
    }
    for job, summary in summaries.items():
        assert tuple(summary)[: len(HEAD_KEYS)] == HEAD_KEYS, job
        assert summary["job"] == job and summary["reconciles"] is True, summary
        # Exactly one reconciliation flag in the whole document.
        flags = [k for k in _keys(summary) if re.search("reconcil|_ok$", k)]
        assert flags == ["reconciles"], (job, flags)
        # Every name an equation compares is a count in the summary.
        for check in summary["checks"]:
            for name in re.findall(r"[a-z_]+(?:\.[a-z_]+)?", check):
                top, _, sub = name.partition(".")
                assert top in summary["counts"], (job, name)
                assert not sub or sub in summary["counts"][top], (job, name)
    assert summaries["score"]["errors_by_reason"] == {"decode/undecodable_image": 2}
    assert summaries["segment"]["errors_by_reason"] == {"unreadable": 1}


def _keys(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        out.append(k)
        if isinstance(v, dict):
            out += _keys(v)
    return out


def test_reconciles_is_false_when_any_equation_fails(tmp_path):
    assert not _prepare_summary(tmp_path, 4, 0)["reconciles"]  # 5 != 4 + 0
    assert not _score_summary(8, 1)["reconciles"]  # 10 != 8 + 1
    assert not _segment_summary(tmp_path, 2)["reconciles"]  # a tile unaccounted for
    with_scores = _segment_summary(tmp_path, 3, classifier=str(tmp_path / "clf"))
    assert with_scores["reconciles"] and with_scores["counts"]["scored"] == 5
    assert "chips == scored + score_errors" in with_scores["checks"]


def test_run_ids_name_their_job():
    first, second = jobs.new_run_id("prepare"), jobs.new_run_id("prepare")
    assert re.fullmatch(r"prepare-\d{8}T\d{6}Z-[0-9a-f]{6}", first) and first != second


@pytest.mark.parametrize(
    ("batch", "low", "match"),
    [(0, None, "1 <= min <= batch size"), (4, 8, "--min-batch-size 8"), (-1, 1, "--batch-size -1")],
)
def test_batch_size_check(batch, low, match):
    with pytest.raises(ConfigError, match=match):
        check_batch_sizes(batch, low)
    check_batch_sizes(8, 4)
    with pytest.raises(ConfigError, match="--classifier-batch-size 0 must be at least 1"):
        check_batch_sizes(0, flags=("--classifier-batch-size", None))


def test_with_defaults_takes_the_config_fields():
    got = jobs.with_defaults(ScoreConfig, {"batch_size": None, "csv": True})
    assert (
        got["batch_size"] == CPU_BATCH_SIZE == 32 and got["csv"] is True and got["num_shards"] == 1
    )
    assert "chips" not in got  # a field without a default stays the caller's


def test_count_all_counts_named_and_keyed_streams():
    with TestPipeline() as p:
        chips = p | "Chips" >> beam.Create(["a", "b", "c"])
        empty = p | "Empty" >> beam.Create([])
        errors = p | "Errors" >> beam.Create(["nodata", "nodata", "crs"])
        counts = count_all(
            p, {"chips": chips, "none": empty}, keyed={"why": (errors, lambda e: f"reason:{e}")}
        )
        assert_that(
            counts,
            equal_to([{"chips": 3, "none": 0, "reason:crs": 1, "reason:nodata": 2}]),
        )


def test_help_shows_the_configs_defaults(capsys):
    from footprints_app import cli

    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {ScoreConfig.batch_size})" in text
    args, _ = cli.parse_command_line(["segment", "--raster", "x", "--model", "m", "--output", "o"])
    assert args.batch_size == segment.SegmentConfig.batch_size == 8
    # No --mask-threshold: the model's own (chosen on validation), else the config's default.
    assert args.mask_threshold is None and segment.SegmentConfig.mask_threshold == 0.5
