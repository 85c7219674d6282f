"""The three jobs on small, awkward inputs, and the rows that every runner must reproduce.

Shared by the runner and engine tests (``test_deploy_runners``, ``test_engines_flink``,
``test_engines_prism``, ``test_object_storage``): each builds the inputs once per session
(:func:`shared_inputs`), runs a job with its runner's Beam options through the job's public
entry point (``prepare.run_config``, ``score.run_config``, ``segment.run_config``) and compares the
rows read back from the outputs with the in-process DirectRunner run of the same job
(:func:`reference_rows`). The rows are the jobs' contract: chips (labels, regions, geometry,
image hashes), scores, masks (pixel hashes, CRS and transform), footprints, dead letters and
the summary's counts.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely

_SESSION: dict = {}


def build_inputs(root) -> dict:
    """Writes the inputs of the three jobs under ``root``; returns their paths.

    prepare: two noise tiles, footprints inside, across the tile edge and off the rasters;
    score: tied and saturated brightness scores in two regions and one bad record;
    segment: two adjacent tiles with a building across their edge, and one nodata tile.
    """
    import segment_helpers
    from raster_fixtures import RES, X0, Y0, noise_tiles, write_footprints, write_geotiff

    from tests.score_helpers import (
        chip_record,
        save_classifier,
        save_onnx_brightness_classifier,
        with_onnx_copy,
        write_shards,
    )

    (root / "ortho").mkdir()
    noise_tiles(root / "ortho", n=2, size=120)
    geoms, ids = [], []
    for i in range(16):
        x = X0 + 4 + i * 7.0 * RES * 2
        geoms.append(shapely.box(x, Y0 - 30 - (i % 4) * 6, x + 4, Y0 - 25 - (i % 4) * 6))
        ids.append(f"fp-{i:02d}")
    geoms.append(shapely.box(X0 - 500, Y0, X0 - 490, Y0 + 10))
    ids.append("off-raster")
    footprints = write_footprints(
        root / "footprints.gpkg",
        geoms,
        ids,
        classes=["house", "barn", "shed", "church"] * 4 + ["house"],
        regions=["north"] * 9 + ["south"] * 8,
    )
    records = [
        chip_record(
            f"c-{i:03d}", (i * 37) % 256 if i % 5 else 255, region="north" if i < 60 else "south"
        )
        for i in range(100)
    ]
    records.append(b"not a chip record")
    write_shards(str(root / "chips"), records, 3)
    a, _ = segment_helpers.bright_scene(100, 90, [(10, 10, 40, 50), (50, 60, 80, 90)], seed=1)
    b, _ = segment_helpers.bright_scene(100, 70, [(50, 0, 80, 30)], seed=2)
    write_geotiff(str(root / "tiles" / "a.tif"), a)
    write_geotiff(
        str(root / "tiles" / "b.tif"),
        b,
        origin=(X0 + 90 * 0.5, Y0),
    )
    write_geotiff(
        str(root / "tiles" / "e.tif"),
        np.zeros((3, 40, 40), np.uint8),
        origin=(X0 + 2000, Y0),
        nodata=0,
    )
    return {
        "root": root,
        "rasters": str(root / "ortho" / "*.tif"),
        "footprints": footprints,
        "chips": str(root / "chips" / "*.tfrecord"),
        "classifier": save_classifier(str(root / "classifier")),
        "tiles": str(root / "tiles" / "*.tif"),
        "segmenter": segment_helpers.save_bright_segmenter(str(root / "segmenter"), window_size=64),
        # The same jobs on ONNX Runtime: models whose folders hold their ONNX copies.
        "onnx_classifier": save_onnx_brightness_classifier(str(root / "onnx-classifier")),
        "onnx_segmenter": with_onnx_copy(
            segment_helpers.save_bright_segmenter(str(root / "onnx-segmenter"), window_size=64)
        ),
    }


def shared_inputs(tmp_path_factory) -> dict:
    """The inputs, built once per test session (the models take a while to save)."""
    if "inputs" not in _SESSION:
        _SESSION["inputs"] = build_inputs(tmp_path_factory.mktemp("runners"))
    return _SESSION["inputs"]


def start_prepare(inputs, output, beam_args) -> dict:
    """Runs prepare; returns its summary (the caller reads the rows with :func:`prepare_rows`)."""
    from pipeline import prepare
    from pipeline.chipping import ChipSpec

    config = prepare.PrepareConfig.create(
        output=_join(output, "chips"),
        rasters=inputs["rasters"],
        footprints=inputs["footprints"],
        id_field="id",
        class_field="building",
        region_field="region",
        spec=ChipSpec(size=0, margin=0.25, min_extent=6.0),
        num_shards=2,
    )
    return prepare.run_config(config, beam_args)


def prepare_rows(output, summary) -> dict:
    from raster_fixtures import read_shards

    chips = sorted(
        (c.footprint_id, c.label, c.region, c.crs, c.wkb, hashlib.sha256(c.image).hexdigest())
        for c in read_shards(os.path.join(output, "chips-*-of-*.tfrecord"))
    )
    # Paths name each run's own output, each run has its own id; timing
    # distributions differ from run to run.
    ignore = {"run_id", "shards", "metrics"}
    kept = {k: v for k, v in summary.items() if k not in ignore}
    paths = {"output", "images", "rasters", "footprints"}
    kept["inputs"] = {k: v for k, v in summary["inputs"].items() if k not in paths}
    return {
        "chips": chips,
        "errors": table(os.path.join(output, "chips-errors")),
        "summary": kept,
        "counters": summary.get("metrics", {}).get("counters"),
    }


def start_score(inputs, output, beam_args, runtime: str = "tensorflow") -> dict:
    from pipeline.score import ScoreConfig, run_config

    onnx = runtime == "onnxruntime"
    config = ScoreConfig.create(
        chips=inputs["chips"],
        model_dir=inputs["onnx_classifier" if onnx else "classifier"],
        residential_fraction="0.4",
        output=output,
        batch_size=16,
        run_id="same-run",
        epsilon=0.05,
        runtime=runtime,
    )
    return run_config(config, beam_args)


def start_score_onnx(inputs, output, beam_args) -> dict:
    """:func:`start_score` on ONNX Runtime (an exported classifier and its ONNX copy)."""
    return start_score(inputs, output, beam_args, "onnxruntime")


def score_rows(output, summary) -> dict:
    return {
        "scores": table(os.path.join(output, "scores"), key="footprint_id"),
        "errors": table(os.path.join(output, "errors")),
        "summary": {k: summary[k] for k in ("regions", "counts", "reconciles")},
    }


def onnx_score_rows(output, summary) -> dict:
    """:func:`score_rows` with every float to 6 decimals.

    ONNX Runtime's kernels depend on the batch's size, and runners cut batches differently
    (the multi-process DirectRunner's last batches are smaller): the same chip's score then
    differs in its 7th digit (2e-7 measured). Labels, percentiles and counts must not.
    """
    return _rounded(score_rows(output, summary))


def _rounded(value, places: int = 6):
    if isinstance(value, float):
        return round(value, places)
    if isinstance(value, dict):
        return {k: _rounded(v, places) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, places) for v in value]
    return value


def start_segment(inputs, output, beam_args, runtime: str = "tensorflow") -> dict:
    from pipeline.segment import SegmentConfig, run_config

    onnx = runtime == "onnxruntime"
    config = SegmentConfig.create(
        raster=inputs["tiles"],
        model_dir=inputs["onnx_segmenter" if onnx else "segmenter"],
        runtime=runtime,
        output=output,
        halo=8,
        batch_size=4,
        run_id="same-run",
        min_area=1.0,
    )
    return run_config(config, beam_args)


def start_segment_onnx(inputs, output, beam_args) -> dict:
    """:func:`start_segment` on ONNX Runtime (the same segmenter's ONNX copy)."""
    return start_segment(inputs, output, beam_args, "onnxruntime")


def segment_rows(output, summary) -> dict:
    masks = {}
    for path in sorted(glob.glob(os.path.join(output, "masks", "*.tif"))):
        with rasterio.open(path) as src:
            masks[os.path.basename(path)] = (
                src.crs.to_string(),
                tuple(src.transform),
                hashlib.sha256(src.read().tobytes()).hexdigest(),
            )
    return {
        "masks": masks,
        "footprints": table(os.path.join(output, "footprints"), key="geometry"),
        "errors": table(os.path.join(output, "errors")),
        "summary": {k: summary[k] for k in ("counts", "errors_by_reason", "reconciles")},
    }


def table(folder: str, key: str | None = None) -> list[dict]:
    """The rows of every Parquet file in ``folder``, in a run-independent order."""
    files = sorted(glob.glob(os.path.join(folder, "*.parquet")))
    if not files:
        return []
    rows = pq.read_table(files).to_pylist()
    return sorted(rows, key=lambda r: r[key] if key else json.dumps(r, sort_keys=True, default=str))


def _join(output: str, name: str) -> str:
    # Outputs may be gs:// URLs (the object-storage test), so no os.path on the prefix.
    return output.rstrip("/") + "/" + name


# job -> (run it, read its rows back from a local output folder)
JOBS = {
    "prepare": (start_prepare, prepare_rows),
    "score": (start_score, score_rows),
    "segment": (start_segment, segment_rows),
    "score-onnxruntime": (start_score_onnx, onnx_score_rows),
    "segment-onnxruntime": (start_segment_onnx, segment_rows),
}


def run_job(job: str, inputs: dict, output: str, beam_args: list[str]) -> dict:
    """Runs ``job`` with ``beam_args`` into ``output`` and returns its rows."""
    start, rows = JOBS[job]
    summary = start(inputs, output, beam_args)
    return rows(output, summary)


def reference_rows(job: str, inputs: dict) -> dict:
    """The in-process DirectRunner rows of ``job``, computed once per session and checked."""
    key = ("reference", job)
    if key not in _SESSION:
        output = str(inputs["root"] / f"out-{job}-in_process")
        rows = run_job(job, inputs, output, ["--runner=DirectRunner"])
        check_reference(job, rows)
        _SESSION[key] = rows
    return _SESSION[key]


def check_reference(job: str, rows: dict) -> None:
    """The comparison means something only if the reference has real content."""
    if job == "prepare":
        assert len(rows["chips"]) >= 10 and rows["errors"], rows["summary"]
        assert rows["summary"]["reconciles"]
    elif job.startswith("score"):
        assert len(rows["scores"]) == 100 and len(rows["errors"]) == 1
        assert {r["is_residential"] for r in rows["scores"]} == {True, False}
    else:
        assert len(rows["masks"]) == 2 and rows["footprints"]
        assert rows["summary"]["reconciles"]


@pytest.fixture(scope="module", name="inputs")
def engine_inputs(tmp_path_factory):
    """:func:`shared_inputs` once per engine test module."""
    return shared_inputs(tmp_path_factory)
