"""``footprints score`` end to end on DirectRunner, in process and multi-process.

One data set serves most tests: three regions with heavily tied and
saturated scores (grey levels 0 and 255 give scores exactly 0.0 and 1.0),
polygons in two CRSs, a duplicate id, and every kind of bad input: an
undecodable image, a record without an id, bytes that are not a
tf.train.Example, an image the model's decoder rejects, a truncated shard and
a shard with a corrupt CRC.
"""

from __future__ import annotations

import glob
import json
import os
import re
import struct
from fractions import Fraction

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from oracles import exact_top_k

from footprints import contracts
from footprints_app import cli
from pipeline.score import ScoreConfig, build_pipeline
from pipeline.scoring import ScoreChips
from pipeline.sources.chips import masked_crc32c
from pipeline.thresholds.selection import rank_key, target_count
from tests.score_helpers import chip_record, png, save_classifier, write_shards

pytestmark = pytest.mark.slow

FRACTIONS = {"north": Fraction("0.35"), "south": Fraction("0.5")}
DEFAULT_FRACTION = Fraction("0.2")
LEVELS = [0, 255, 255, 128, 200, 64, 255, 0]


def _value(i: int) -> int:
    return LEVELS[i % len(LEVELS)]


def _good_records():
    records, truth = [], {}
    for i in range(1000):
        region = "north" if i < 600 else "south" if i < 900 else None
        if region == "north":
            wkb, crs = shapely.box(500000 + i, 4600000, 500010 + i, 4600010).wkb, "EPSG:32615"
        elif region == "south":
            x = -93.0 + i * 1e-5
            wkb, crs = shapely.box(x, 41.5, x + 1e-4, 41.5001).wkb, "EPSG:4326"
        else:
            wkb = crs = None
        fid = f"fp-{i:04d}"
        records.append(chip_record(fid, _value(i), region=region, wkb=wkb, crs=crs, label=i % 2))
        truth[fid] = _value(i)
    # The same id twice (different scores): scored twice and reported.
    records.append(chip_record("fp-0700", 17, region="south"))
    return records, truth


def _frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + record
        + struct.pack("<I", masked_crc32c(record))
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    model = save_classifier(str(root / "model"))
    records, truth = _good_records()
    chips = root / "chips"
    write_shards(str(chips), records[:700], 3)
    write_shards(str(chips), records[700:], 2, compression="gzip", prefix="gz")

    # Bad records, in one shard with good neighbours in the same batches.
    from tensorflow.core.example import example_pb2

    no_id = example_pb2.Example()
    no_id.features.feature[contracts.IMAGE_KEY].bytes_list.value.append(png(5))
    good = png(99)
    damaged_pixels = good[:41] + bytes(len(good) - 53) + good[-12:]  # header and IEND intact
    bad = [
        contracts.encode_chip(contracts.Chip("bad-image", b"\x00\x01not an image")),
        no_id.SerializeToString(),
        b"\x0f\xffnot a tf.train.Example",
        contracts.encode_chip(contracts.Chip("bad-pixels", damaged_pixels)),
    ]
    extra = [chip_record(f"mixed-{i}", 200, region="north") for i in range(6)]
    write_shards(str(chips), extra[:3] + bad + extra[3:], 1, prefix="mixed")

    # A truncated shard (3 good records, then a cut record) and a corrupt CRC one.
    cut = [chip_record(f"cut-{i}", 255, region="south") for i in range(4)]
    data = b"".join(_frame(r) for r in cut)
    (chips / "cut-00000-of-00001.tfrecord").write_bytes(data[: len(data) - 9])
    crc = [chip_record(f"crc-{i}", 0, region="south") for i in range(4)]
    frames = [_frame(r) for r in crc]
    broken = bytearray(frames[2])
    broken[30] ^= 0xFF
    (chips / "crc-00000-of-00001.tfrecord").write_bytes(
        frames[0] + frames[1] + bytes(broken) + frames[3]
    )

    fractions_csv = root / "fractions.csv"
    fractions_csv.write_text("region,residential_fraction\nnorth,0.35\nsouth,0.5\n")
    return {
        "root": root,
        "model": model,
        "chips": str(chips / "*.tfrecord*"),
        "fractions": str(fractions_csv),
        "truth": truth,
        "offset_cut": 3 * len(_frame(cut[0])),
        "offset_crc": 2 * len(_frame(crc[0])),
    }


def _score(dataset, output, *extra) -> int:
    return cli.main(
        [
            "score",
            "--chips",
            dataset["chips"],
            "--model",
            dataset["model"],
            "--residential-fraction",
            str(DEFAULT_FRACTION),
            "--region-fractions",
            dataset["fractions"],
            "--output",
            str(output),
            "--batch-size",
            "16",
            *extra,
        ]
    )


def _read(output):
    scores = pq.read_table(os.path.join(output, "scores")).to_pandas()
    errors = pq.read_table(os.path.join(output, "errors")).to_pandas()
    with open(os.path.join(output, "summary.json")) as f:
        summary = json.load(f)
    return scores, errors, summary


def _labels(scores):
    return sorted(zip(scores.footprint_id, scores.score, scores.is_residential, strict=True))


@pytest.fixture(scope="module")
def in_process(dataset):
    output = dataset["root"] / "out-in-process"
    assert _score(dataset, output, "--csv") == 0
    return output, *_read(output)


def test_exactly_k_per_region_with_ties_and_saturation(in_process):
    output, scores, _, summary = in_process
    # The scored batches waited on disk between the passes; that folder is gone.
    assert not os.path.exists(os.path.join(str(output), ".spill"))
    for region, group in scores.groupby("region"):
        p = FRACTIONS.get(region, DEFAULT_FRACTION)
        k = target_count(len(group), p)
        assert group.is_residential.sum() == k, region
        # The reference: sort the whole region in memory by the documented rank key.
        keys = [rank_key(float(s), f) for s, f in zip(group.score, group.footprint_id, strict=True)]
        assert list(group.is_residential) == exact_top_k(keys, k), region
        info = summary["regions"][region]
        assert (info["n"], info["k"], info["residential"], info["exact"]) == (
            len(group),
            k,
            k,
            True,
        )
        lowest = group[group.is_residential].score.min()
        assert info["threshold"] == pytest.approx(float(lowest))
        assert (group.threshold == np.float32(lowest)).all()
        assert (group.target_fraction == np.float32(float(p))).all()
    # Saturated: many exact 1.0 scores, split by the tie-break inside a region.
    north = scores[scores.region == "north"]
    ones = north[north.score == 1.0]
    assert 0 < ones.is_residential.sum() < len(ones)


def test_scores_follow_the_model(in_process, dataset):
    _, scores, _, _ = in_process
    known = scores[scores.footprint_id.isin(dataset["truth"]) & (scores.footprint_id != "fp-0700")]
    expected = np.array([dataset["truth"][f] / 255 for f in known.footprint_id])
    np.testing.assert_allclose(known.score, expected, atol=1e-6)
    assert set(scores.region) == {"north", "south", contracts.DEFAULT_REGION}
    assert set(scores.label.dropna().astype(int)) == {0, 1}


def test_dead_letters_and_reconciliation(in_process, dataset):
    _, scores, errors, summary = in_process
    got = {
        (os.path.basename(s), r, st, e)
        for s, r, st, e in zip(
            errors.source, errors.record, errors.stage, errors.error, strict=True
        )
    }
    mixed = "mixed-00000-of-00001.tfrecord"
    assert {
        (mixed, "bad-image", "validate", "undecodable_image"),
        (mixed, "bad-pixels", "inference", "model_rejected_record"),
        (
            "cut-00000-of-00001.tfrecord",
            f"offset {dataset['offset_cut']}",
            "read",
            "truncated_shard",
        ),
        ("crc-00000-of-00001.tfrecord", f"offset {dataset['offset_crc']}", "read", "corrupt_shard"),
    } <= got
    invalid = errors[errors.error == "invalid_record"]
    assert len(invalid) == 2 and all(r.startswith("offset ") for r in invalid.record)
    assert len(errors) == 6
    # Batch-mates of the bad records were scored.
    assert {f"mixed-{i}" for i in range(6)} <= set(scores.footprint_id)
    assert {"cut-0", "cut-1", "cut-2", "crc-0", "crc-1"} <= set(scores.footprint_id)
    assert not {"cut-3", "crc-2", "crc-3"} & set(scores.footprint_id)
    counts = summary["counts"]
    assert counts["scored"] == len(scores) == 1001 + 6 + 5
    assert counts["errors"] == 6
    assert counts["input_records"] == counts["scored"] + counts["errors"]
    assert summary["reconciles"] and summary["all_regions_exact"]
    assert summary["duplicates"]["count"] == 1
    assert summary["duplicates"]["examples"] == [{"footprint_id": "fp-0700", "times": 2}]


def test_percentiles_within_documented_bound(in_process):
    _, scores, _, summary = in_process
    bound = summary["inputs"]["percentile_error_bound_points"]
    for _, group in scores.groupby("region"):
        keys = [rank_key(float(s), f) for s, f in zip(group.score, group.footprint_id, strict=True)]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        exact = np.empty(len(keys))
        exact[order] = 100 * np.arange(len(keys)) / (len(keys) - 1)
        assert np.abs(group.percentile.to_numpy() - exact).max() <= bound + 1e-3


def test_geoparquet_and_csv(in_process):
    output, scores, _, _ = in_process
    meta = pq.read_schema(glob.glob(os.path.join(output, "scores", "*.parquet"))[0]).metadata
    geo = json.loads(meta[b"geo"])
    assert geo["primary_column"] == "geometry"
    assert geo["columns"]["geometry"]["crs"]["id"]["code"] == 32615
    south = scores[(scores.region == "south") & scores.footprint_id.str.startswith("fp-")]
    x, y = shapely.from_wkb(south.geometry.iloc[0]).centroid.coords[0]
    assert 400_000 < x < 600_000 and 4_500_000 < y < 4_700_000  # reprojected from lon/lat
    assert scores[scores.region == "all"].geometry.isna().all()
    with open(os.path.join(output, "scores.csv")) as f:
        lines = f.read().splitlines()
    assert lines[0].split(",")[:2] == ["footprint_id", "region"]
    assert len(lines) == len(scores) + 1 and "POLYGON" in "".join(lines[1:50])


def test_multi_processing_gives_identical_labels(in_process, dataset):
    output = dataset["root"] / "out-multi"
    # A coarse sketch too, so the approximate bracket path runs in the pipeline.
    assert (
        _score(
            dataset,
            output,
            "--quantile-epsilon",
            "0.05",
            "--runner",
            "DirectRunner",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        )
        == 0
    )
    scores, errors, summary = _read(output)
    assert _labels(scores) == _labels(in_process[1])
    assert summary["counts"] == in_process[3]["counts"]
    assert summary["regions"]["north"]["exact_pass_size"] > 0


def test_rerun_replaces_and_failed_run_leaves_no_summary(dataset, tmp_path, capsys):
    output = tmp_path / "out"
    args = [
        "--chips",
        dataset["chips"].replace("*.tfrecord*", "chips-*.tfrecord"),
        "--model",
        dataset["model"],
        "--residential-fraction",
        "0.5",
        "--output",
        str(output),
    ]
    assert cli.main(["score", *args, "--num-shards", "3", "--run-id", "first"]) == 0
    assert len(glob.glob(str(output / "scores" / "*.parquet"))) == 3
    # What a killed run leaves between the passes is cleared by the next run.
    (output / ".spill").mkdir()
    (output / ".spill" / "0123abcd.arrows").write_bytes(b"half a file")
    assert cli.main(["score", *args, "--num-shards", "1", "--run-id", "second"]) == 0
    assert not (output / ".spill").exists()
    files = glob.glob(str(output / "scores" / "*.parquet"))
    assert [os.path.basename(f) for f in files] == ["part-00000-of-00001.parquet"]
    scores, _, summary = _read(output)
    assert set(scores.run_id) == {"second"} and summary["run_id"] == "second"
    assert len(scores) == 700

    broken = save_classifier(str(tmp_path / "broken"), kind="broken")
    bad_args = [a if a != dataset["model"] else broken for a in args]
    # The broken model fails the job (it must not dead-letter every record);
    # the CLI reports the contract error with exit code 2.
    assert cli.main(["score", *bad_args, "--run-id", "third", "--batch-size", "50"]) == 2
    assert "51 scores for 50 records" in capsys.readouterr().err
    assert not (output / "summary.json").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--residential-fraction": "1.5"}, "outside \\[0, 1\\]"),
        ({"--model": "/nonexistent/model"}, "does not exist"),
        ({"--chips": "/nonexistent/*.tfrecord"}, "matches no files"),
        ({"--batch-size": "0"}, "1 <= min <= batch size"),
        ({"--accelerator": "nvidia-t4"}, "type:GPU_TYPE;count:N"),
        ({"--model-copies": "0"}, "--model-copies 0 must be 1 or more"),
        ({"--bigquery-table": "just-a-table"}, "PROJECT:DATASET.TABLE"),
        ({"--quantile-epsilon": "0.5"}, "must be in \\(0, 0.1\\]"),
        ({"--region-fractions": "BAD_CSV"}, "line 2"),
        ({"--model": "WRONG_MODEL"}, "must return 'score'"),
    ],
)
def test_invalid_flags_fail_before_the_pipeline(dataset, tmp_path, capsys, change, message):
    flags = {
        "--chips": dataset["chips"],
        "--model": dataset["model"],
        "--residential-fraction": "0.3",
        "--output": str(tmp_path / "out"),
    }
    flags.update(change)
    if flags.get("--region-fractions") == "BAD_CSV":
        (tmp_path / "bad.csv").write_text("region,residential_fraction\nnorth,-0.1\n")
        flags["--region-fractions"] = str(tmp_path / "bad.csv")
    if flags["--model"] == "WRONG_MODEL":
        flags["--model"] = _wrong_model(dataset)
    argv = ["score"] + [x for kv in flags.items() for x in kv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("footprints score: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def _wrong_model(dataset):
    path = dataset["root"] / "probability-model"
    if not path.exists():
        save_classifier(str(path), output_name="probability")
    return str(path)


def test_score_chips_on_bytes_with_the_tfx_handler(dataset):
    # The reusable transform, as another pipeline would apply it: bytes in, rows out.
    model = _wrong_model(dataset)  # TFX-style: the output is called "probability"
    records = [chip_record(f"t{i}", v) for i, v in enumerate([0, 255, 255, 255, 10, 128])]
    records.append(b"junk")
    with test_pipeline.TestPipeline() as p:
        result = (
            p
            | beam.Create(records)
            | ScoreChips(model, "0.5", batch_size=4, model_format="tfx", run_id="r", model_id="m")
        )
        assert_that(
            result.scores | beam.Map(lambda r: (r["footprint_id"], r["is_residential"])),
            equal_to(_expected_tfx_labels()),
            label="Labels",
        )
        assert_that(
            result.errors | beam.Map(lambda e: (e.source, e.stage, e.error)),
            equal_to([("<pipeline>", "validate", "invalid_record")]),
            label="Errors",
        )
        assert_that(
            result.regions | beam.Map(lambda r: (r.region, r.n, r.k)),
            equal_to([("all", 6, 3)]),
            label="Regions",
        )


def _expected_tfx_labels():
    scores = {"t0": 0.0, "t1": 1.0, "t2": 1.0, "t3": 1.0, "t4": 10 / 255, "t5": 128 / 255}
    keys = [rank_key(s, f) for f, s in scores.items()]
    return list(zip(scores, exact_top_k(keys, 3), strict=True))


def test_pipeline_construction_with_bigquery_and_accelerator(dataset, tmp_path):
    config = ScoreConfig.create(
        chips=dataset["chips"],
        model_dir=dataset["model"],
        residential_fraction="0.3",
        output=str(tmp_path / "out"),
        bigquery_table="my-project:footprints.scores",
        accelerator="type:nvidia-tesla-t4;count:1;install-nvidia-driver",
        check_model_dir=False,
    )
    p = beam.Pipeline()
    build_pipeline(p, config)
    proto = p.to_runner_api()
    transforms = proto.components.transforms
    bq = [t for t in transforms.values() if t.unique_name.endswith("WriteBigQuery")]
    assert bq, "WriteToBigQuery is not in the graph"
    inference = [
        t
        for t in transforms.values()
        if t.unique_name.endswith("BeamML_RunInference") and not t.subtransforms
    ]
    assert inference
    env_hints = {
        h for t in inference for h in proto.components.environments[t.environment_id].resource_hints
    }
    hint_values = {
        v
        for t in inference
        for v in proto.components.environments[t.environment_id].resource_hints.values()
    }
    assert any("accelerator" in h for h in env_hints)
    assert b"type:nvidia-tesla-t4;count:1;install-nvidia-driver" in hint_values
    from pipeline.writers.scores import BIGQUERY_SCHEMA, bigquery_row

    assert {"name": "geometry", "type": "GEOGRAPHY", "mode": "NULLABLE"} in BIGQUERY_SCHEMA[
        "fields"
    ]
    row = bigquery_row(
        {"geometry": shapely.box(500000, 4600000, 500010, 4600010).wkb, "threshold": float("inf")},
        "EPSG:32615",
    )
    lon, lat = shapely.from_wkt(row["geometry"]).centroid.coords[0]
    assert -94 < lon < -92 and 41 < lat < 42.5 and row["threshold"] is None


# --------------------------------------------------------------------------
# One bad field costs one record; scores outside [0, 1] are not labelled;
# ids with line breaks stay one CSV row
# --------------------------------------------------------------------------


def _chip_jpeg(value: int) -> bytes:
    from tests.score_helpers import jpeg

    return jpeg(value, size=16)


@pytest.fixture(scope="module")
def field_dataset(tmp_path_factory):
    """20 good chips (PNG and JPEG, two ids with line breaks) and one chip per bad field."""
    from tests.score_helpers import bomb_png, with_raw_features

    root = tmp_path_factory.mktemp("fields")
    good, truth = [], {}
    for i in range(20):
        fid = {3: "fp-03\nsecond line", 11: "fp-11\rcarriage", 15: 'fp-15 "quoted", too'}.get(
            i, f"fp-{i:02d}"
        )
        value = 12 * i  # 0 .. 228
        image = png(value, size=16) if i % 2 else _chip_jpeg(value)
        x = 500000 + 20 * i
        good.append(
            contracts.encode_chip(
                contracts.Chip(
                    fid,
                    image,
                    region="county-a",
                    wkb=shapely.box(x, 4600000, x + 12, 4600009).wkb,
                    crs="EPSG:32615",
                )
            )
        )
        truth[fid] = value
    base = good[1]  # a good chip's record, one field spoilt at a time
    bad = {
        "latin-1 region": with_raw_features(
            base, footprint__id=b"bad-region", region="Norrk\u00f6ping".encode("latin-1")
        ),
        "garbage wkb": with_raw_features(
            base, footprint__id=b"bad-wkb", footprint__wkb=b"\x01\x03\x00\x00\x00garbage"
        ),
        "unknown crs": with_raw_features(
            base, footprint__id=b"bad-crs", footprint__crs=b"EPSG:999999"
        ),
        "png bomb": with_raw_features(
            base, footprint__id=b"bomb-png", image__encoded=bomb_png(5000, 4000)
        ),
    }
    from tests.score_helpers import jpeg

    bad["jpeg bomb"] = with_raw_features(
        base, footprint__id=b"bomb-jpeg", image__encoded=jpeg(40, 16, declared=(20000, 20000))
    )
    chips = root / "chips"
    # Bad records between good ones, in the same shards and batches.
    records = good[:7] + list(bad.values())[:2] + good[7:14] + list(bad.values())[2:] + good[14:]
    write_shards(str(chips), records, 2)
    return {
        "root": root,
        "chips": str(chips / "*.tfrecord"),
        "truth": truth,
        "brightness": save_classifier(str(root / "brightness")),
        "scaled": save_classifier(str(root / "scaled"), kind="scaled"),
        "logit": save_classifier(str(root / "logit"), kind="logit"),
    }


def _score_fields(data, model, output, *extra):
    return cli.main(
        [
            "score",
            "--chips",
            data["chips"],
            "--model",
            data[model],
            "--residential-fraction",
            "0.5",
            "--output",
            str(output),
            "--batch-size",
            "8",
            *extra,
        ]
    )


def test_a_bad_field_dead_letters_its_record_and_the_rest_is_scored(field_dataset):
    import csv

    import duckdb

    output = field_dataset["root"] / "out-fields"
    assert _score_fields(field_dataset, "brightness", output, "--csv") == 0
    scores, errors, summary = _read(output)
    truth = field_dataset["truth"]
    assert sorted(scores.footprint_id) == sorted(truth)
    np.testing.assert_allclose(
        scores.score, [truth[f] / 255 for f in scores.footprint_id], atol=1e-6
    )
    got = sorted(zip(errors.record, errors.stage, errors.error, strict=True))
    # The record with a non-UTF-8 region is named by its offset (it did not parse) and its id.
    assert got[:-1] == [
        ("bad-crs", "validate", "invalid_crs"),
        ("bad-wkb", "validate", "invalid_geometry"),
        ("bomb-jpeg", "validate", "image_too_large"),
        ("bomb-png", "validate", "image_too_large"),
    ]
    assert got[-1][0].startswith("offset ") and got[-1][1:] == ("validate", "invalid_record")
    region_error = errors[errors.error == "invalid_record"].iloc[0]
    assert "'region' is not UTF-8" in region_error.message and "bad-region" in region_error.message
    bomb = errors[errors.record == "bomb-png"].iloc[0]
    assert "5000 x 4000" in bomb.message and "--max-chip-pixels" in bomb.message
    counts = summary["counts"]
    assert (counts["input_records"], counts["scored"], counts["errors"]) == (25, 20, 5)
    assert summary["reconciles"] and summary["regions"]["county-a"]["k"] == 10

    # scores.csv: one record per id however the id breaks lines, read back by
    # Python's csv module and by DuckDB, and equal to scores/.
    path = os.path.join(str(output), "scores.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["footprint_id"] for r in rows) == sorted(truth)
    by_id = dict(zip(scores.footprint_id, scores.is_residential, strict=True))
    assert all((r["is_residential"] == "True") == by_id[r["footprint_id"]] for r in rows)
    duck = duckdb.sql(f"SELECT footprint_id, score FROM read_csv('{path}')").fetchall()
    assert sorted(i for i, _ in duck) == sorted(truth)
    assert {i: round(s, 6) for i, s in duck} == {i: round(truth[i] / 255, 6) for i in truth}

    # Raised, the limit lets the smaller bomb through to the model.
    raised = field_dataset["root"] / "out-raised"
    assert _score_fields(field_dataset, "brightness", raised, "--max-chip-pixels", "20000000") == 0
    _, errors, summary = _read(raised)
    assert "bomb-png" not in set(errors.record) and summary["counts"]["scored"] == 21


def test_scores_outside_0_1_are_dead_letters_with_a_warning(field_dataset):
    output = field_dataset["root"] / "out-scaled"
    assert _score_fields(field_dataset, "scaled", output) == 0
    scores, errors, summary = _read(output)
    truth = field_dataset["truth"]
    # The model returns 4 x value / 255 (NaN for value 0): only values up to 63 score in [0, 1].
    expected = {f for f, v in truth.items() if 0 < v and 4 * v <= 255}
    assert set(scores.footprint_id) == expected and (scores.score <= 1).all()
    assert set(errors.record[errors.error == "score_out_of_range"]) == {
        f for f, v in truth.items() if 4 * v > 255
    }
    assert list(errors.record[errors.error == "non_finite_score"]) == ["fp-00"]
    assert summary["reconciles"] and summary["counts"]["scored"] == len(expected)
    (warning,) = [w for w in summary["warnings"] if w["code"] == "scores_out_of_range"]
    assert f"for {sum(4 * v > 255 for v in truth.values())} records" in warning["message"]

    # A model whose every score is out of range is broken: exit 3, said so.
    broken = field_dataset["root"] / "out-logit"
    assert _score_fields(field_dataset, "logit", broken) == 3
    scores, errors, summary = _read(broken)
    assert len(scores) == 0 and summary["counts"]["scored"] == 0
    assert [w["code"] for w in summary["warnings"]] == ["model_scores_out_of_range"]
