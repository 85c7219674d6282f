"""Segmentation against the truth: object matching at IoU >= 0.5 and pixel IoU of polygons."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from raster_fixtures import footprint_rows, write_geotiff
from shapely.geometry import box

from pipeline.evaluation import (
    footprint_iou,
    match_objects,
    object_scores,
    read_truth_footprints,
    truth_from_masks,
)

UTM = "EPSG:32615"
GRID = (500000.0, 4_200_000.0)  # top-left corner of the mask tiles


def test_matching_examples_with_known_answers():
    truth = [box(0, 0, 10, 10), box(20, 0, 30, 10), box(40, 0, 50, 10), box(60, 0, 70, 10)]
    predicted = [
        box(0, 0, 10, 9),  # IoU 0.9 with truth 0
        box(20, 0, 30, 4),  # IoU 0.4 with truth 1: below the threshold
        box(41, 0, 51, 10),  # IoU 9/11 with truth 2
        box(41, 0, 50, 10),  # IoU 0.9 with truth 2: the better one wins it
        box(100, 0, 110, 10),  # nothing there
    ]
    matches = match_objects(predicted, truth)
    assert [(i, j) for i, j, _ in matches] == [(0, 0), (3, 2)]
    assert matches[0][2] == pytest.approx(0.9) and matches[1][2] == pytest.approx(0.9)
    scores = object_scores(len(predicted), len(truth), matches)
    assert (scores["true_positives"], scores["false_positives"], scores["false_negatives"]) == (
        2,
        3,
        2,
    )
    assert scores["precision"] == pytest.approx(2 / 5)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(2 * 2 / (2 * 2 + 3 + 2))


def test_exactly_half_counts_and_one_prediction_matches_one_truth():
    # IoU exactly 0.5 is a match (SpaceNet: >= 0.5).
    assert len(match_objects([box(0, 0, 10, 10)], [box(0, 0, 10, 5)])) == 1
    # One big prediction over two small buildings: it matches neither.
    assert match_objects([box(0, 0, 20, 10)], [box(0, 0, 9, 10), box(11, 0, 20, 10)]) == []


def test_empty_sides_give_undefined_not_zero_division():
    assert match_objects([], [box(0, 0, 1, 1)]) == []
    none = object_scores(0, 0, [])
    assert none["precision"] is None and none["recall"] is None and none["f1"] is None
    all_missed = object_scores(0, 3, [])
    assert all_missed["recall"] == 0.0 and all_missed["precision"] is None
    assert all_missed["f1"] == 0.0


def test_greedy_matching_equals_the_optimum_on_random_buildings():
    from itertools import permutations

    rng = np.random.default_rng(7)
    for _ in range(20):
        truth = [box(x, 0, x + 8, 8) for x in rng.choice(np.arange(0, 60, 10), 4, False)]
        predicted = [shapely.affinity.translate(t, *rng.normal(0, 2, 2)) for t in truth]
        predicted = [predicted[i] for i in rng.permutation(4)]
        got = len(match_objects(predicted, truth))

        def iou(a, b):
            return a.intersection(b).area / a.union(b).area

        best = max(
            sum(iou(p, truth[j]) >= 0.5 for p, j in zip(predicted, perm, strict=True))
            for perm in permutations(range(4))
        )
        assert got == best


def test_truth_polygons_in_another_crs_burn_onto_the_mask_grid(tmp_path):
    # Mask: probability 255 on rows 2..9, cols 4..13 (8 x 10 pixels).
    prob = np.zeros((1, 20, 20), np.uint8)
    prob[0, 2:10, 4:14] = 255
    mask = write_geotiff(tmp_path / "t.tif", prob, origin=GRID, tiled=False)
    # Truth: rows 2..9, cols 4..9 in UTM, written in WGS 84.
    x0, y0 = 500000.0, 4_200_000.0
    true_utm = box(x0 + 4 * 0.5, y0 - 10 * 0.5, x0 + 10 * 0.5, y0 - 2 * 0.5)
    import geopandas

    path = tmp_path / "truth.geojson"
    geopandas.GeoDataFrame(geometry=[true_utm], crs=UTM).to_crs("EPSG:4326").to_file(path)
    polygons, rejected = read_truth_footprints(str(path), UTM)
    assert rejected == 0 and polygons[0].area == pytest.approx(true_utm.area, rel=1e-4)
    got = footprint_iou([mask], polygons, UTM)
    assert got["intersection"] == 48 and got["union"] == 80
    assert got["tiles"] == {"t": pytest.approx(0.6)}


def test_truth_masks_trace_one_building_across_two_tiles(tmp_path):
    left = np.zeros((1, 20, 20), np.uint8)
    left[0, 5:10, 15:20] = 1
    right = np.zeros((1, 20, 20), np.uint8)
    right[0, 5:10, 0:5] = 1
    right[0, 15:18, 10:13] = 1
    paths = [
        write_geotiff(tmp_path / "l.tif", left, origin=GRID, tiled=False),
        write_geotiff(tmp_path / "r.tif", right, origin=(500010.0, 4_200_000.0), tiled=False),
    ]
    polygons = sorted(truth_from_masks(paths, UTM), key=lambda g: -g.area)
    assert [g.area for g in polygons] == pytest.approx([50 * 0.25, 9 * 0.25])
    in_wgs84 = truth_from_masks(paths, "EPSG:4326")
    assert all(-94 < g.centroid.x < -92 for g in in_wgs84)


def test_unusable_truth_features_are_counted(tmp_path):
    path = tmp_path / "truth.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32615"}},
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": shapely.geometry.mapping(box(0, 0, 1, 1)),
                    },
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                    },
                ],
            }
        )
    )
    polygons, rejected = read_truth_footprints(str(path), UTM)
    assert len(polygons) == 1 and rejected == 1


def test_objects_table_is_written_for_the_report(tmp_path):
    from footprints import contracts
    from pipeline.evaluation import OBJECTS_FILE, truth_summary
    from pipeline.writers.tables import geoparquet_schema

    prob = np.zeros((1, 20, 20), np.uint8)
    prob[0, 2:10, 4:14] = 255
    (tmp_path / "masks").mkdir()
    mask = write_geotiff(tmp_path / "masks" / "t.tif", prob, origin=GRID, tiled=False)
    truth = np.zeros((1, 20, 20), np.uint8)
    truth[0, 2:10, 4:14] = 1
    truth[0, 14:18, 14:18] = 1  # missed
    truth_path = write_geotiff(tmp_path / "truth.tif", truth, origin=GRID, tiled=False)
    # One footprint that matches, one that is false.
    x0, y0 = 500000.0, 4_200_000.0
    rows = [
        {
            "footprint_id": "t-000000",
            "tile": "t",
            "area_m2": 20.0,
            "mean_probability": 1.0,
            "geometry": shapely.to_wkb(box(x0 + 2, y0 - 5, x0 + 7, y0 - 1)),
        },
        {
            "footprint_id": "t-000001",
            "tile": "t",
            "area_m2": 1.0,
            "mean_probability": 1.0,
            "geometry": shapely.to_wkb(box(x0, y0 - 10, x0 + 1, y0 - 9)),
        },
    ]
    table_path = tmp_path / "footprints.parquet"
    pq.write_table(
        contracts.validate_rows(
            footprint_rows(rows, UTM),
            geoparquet_schema(contracts.FOOTPRINTS_SCHEMA, UTM, ["Polygon"]),
        ),
        table_path,
    )
    summary = truth_summary(
        output=str(tmp_path),
        mask_paths=[mask],
        footprint_files=[str(table_path)],
        crs=UTM,
        threshold=0.5,
        truth_masks=[truth_path],
    )
    objects = summary["objects"]
    assert (objects["true_positives"], objects["false_positives"], objects["false_negatives"]) == (
        1,
        1,
        1,
    )
    assert summary["tile_objects"] == {
        "t": {"true_positive": 1, "false_positive": 1, "false_negative": 1}
    }
    assert summary["files"] == [OBJECTS_FILE]
    written = pq.read_table(tmp_path / OBJECTS_FILE).to_pylist()
    assert sorted(r["status"] for r in written) == [
        "false_negative",
        "false_positive",
        "true_positive",
    ]
    assert b"geo" in pq.read_schema(tmp_path / OBJECTS_FILE).metadata
