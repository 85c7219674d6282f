"""Finished footprints: area of the written polygon, ring orientation, repairs, right angles."""

import numpy as np
import pytest
import rasterio.transform
import shapely
from rasterio.transform import from_origin
from shapely.geometry import MultiPolygon, Polygon, box

from pipeline.polygonize import (
    MAX_AREA_CHANGE,
    Footprint,
    finish,
    merge_parts,
    oriented,
    polygonal,
    polygonize_tile,
    regularize,
    simplify,
)

UTM = "EPSG:32615"
TRANSFORM = from_origin(500000.0, 4_200_000.0, 0.5, 0.5)


def _traced(mask: np.ndarray) -> Footprint:
    (part,) = polygonize_tile(mask.astype(np.uint8) * 255, None, TRANSFORM, 0.5, "t", UTM)
    return part


def _disc(radius: float, size: int = 24) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size]
    return ((rows - size // 2) ** 2 + (cols - size // 2) ** 2) <= radius * radius


def _notched_roof() -> np.ndarray:
    """A 10 x 20 pixel roof whose four corner pixels the segmenter missed (blurred corners)."""
    mask = np.zeros((30, 40), bool)
    mask[10:20, 10:30] = True
    mask[[10, 10, 19, 19], [10, 29, 10, 29]] = False
    return mask


def test_area_is_measured_on_the_written_polygon_and_simplification_keeps_it():
    # Reproduces the old fault: at one pixel, Douglas-Peucker on this ring
    # takes a chord that cuts a whole row of pixels: the written polygon had
    # 12% less area than the area_m2 reported (taken before simplifying).
    part = _traced(_notched_roof())
    one_pixel = part.geometry.simplify(part.pixel_size, preserve_topology=False)
    assert one_pixel.area < 0.9 * part.geometry.area
    row = finish(part, simplify_pixels=1.0, min_area_m2=0.0)
    written = shapely.from_wkb(row["geometry"])
    assert row["area_m2"] == pytest.approx(written.area, rel=1e-12)
    assert written.area == pytest.approx(part.geometry.area, rel=MAX_AREA_CHANGE)


@pytest.mark.parametrize("radius", [2.5, 4.0, 9.0, 15.0])
def test_round_roofs_keep_their_area_within_two_percent(radius):
    part = _traced(_disc(radius, 40))
    row = finish(part, 1.0, 0.0)
    written = shapely.from_wkb(row["geometry"])
    assert row["area_m2"] == pytest.approx(written.area, rel=1e-12)
    assert written.area == pytest.approx(part.geometry.area, rel=MAX_AREA_CHANGE)


def test_simplify_falls_back_to_smaller_tolerances():
    ring = _traced(_disc(9.0, 40)).geometry
    simple = simplify(ring, 0.5)  # one pixel moves the outline 7% outwards
    assert 12 < len(simple.exterior.coords) < len(ring.exterior.coords)
    assert simple.area == pytest.approx(ring.area, rel=MAX_AREA_CHANGE)


def test_area_in_state_plane_feet_and_after_reprojection():
    part = _traced(_disc(6.0))
    row = finish(part, 1.0, 0.0, output_crs="EPSG:2263")  # NY Long Island, US feet
    written = shapely.from_wkb(row["geometry"])
    assert row["area_m2"] == pytest.approx(written.area * 0.3048006**2, rel=1e-5)
    in_utm = finish(part, 1.0, 0.0)
    assert row["area_m2"] == pytest.approx(in_utm["area_m2"], rel=0.01)


def test_min_area_applies_to_the_written_polygon():
    part = _traced(_disc(15.0, 40))  # simplification adds 1.7% here
    written = finish(part, 1.0, 0.0)["area_m2"]
    traced = part.geometry.area
    assert written != pytest.approx(traced, rel=1e-6)
    between = (written + traced) / 2
    assert (finish(part, 1.0, between) is None) == (written < between)
    assert (finish(part, 0.0, between) is None) == (traced < between)


def test_exterior_rings_counterclockwise_and_holes_clockwise():
    mask = np.zeros((30, 30), bool)
    mask[3:25, 3:25] = True
    mask[10:15, 10:15] = False  # a courtyard
    row = finish(_traced(mask), 1.0, 0.0)
    geom = shapely.from_wkb(row["geometry"])
    assert geom.exterior.is_ccw
    assert [ring.is_ccw for ring in geom.interiors] == [False]
    multi = oriented(MultiPolygon([box(0, 0, 1, 1), box(2, 0, 3, 1)]))
    assert all(p.exterior.is_ccw for p in multi.geoms)


def test_repair_keeps_every_polygonal_part():
    bowtie = Polygon([(0, 0), (2, 2), (2, 0), (0, 2)])
    assert not bowtie.is_valid
    fixed, repaired = polygonal(bowtie)
    assert repaired and fixed.is_valid and fixed.geom_type == "MultiPolygon"
    assert len(fixed.geoms) == 2 and fixed.area == pytest.approx(2.0)
    square = box(0, 0, 1, 1)
    assert polygonal(square) == (square, False)


def test_a_fold_made_by_reprojection_is_repaired_not_dropped():
    # A bow-tie in the traced geometry stands for any ring that an output
    # CRS folds: both lobes reach the table.
    part = Footprint(
        "t-000000",
        "t",
        UTM,
        Polygon([(500000, 4199990), (500010, 4200000), (500010, 4199990), (500000, 4200000)]),
        pixels=200,
        probability_sum=200.0,
        pixel_size=0.5,
    )
    row = finish(part, 0.0, 0.0)
    geom = shapely.from_wkb(row["geometry"])
    assert row["repaired"] and geom.geom_type == "MultiPolygon" and geom.is_valid
    assert row["area_m2"] == pytest.approx(50.0)


def _rotated_building(angle: float, seed: int) -> tuple[np.ndarray, Polygon]:
    """A rasterized L-shaped building at ``angle`` degrees with a ragged edge, and its truth."""
    from rasterio import features
    from shapely import affinity

    truth = Polygon([(0, 0), (24, 0), (24, 10), (12, 10), (12, 18), (0, 18)])
    truth = affinity.translate(affinity.rotate(truth, angle, origin=(12, 9)), 8, 8)
    mask = features.rasterize([truth], out_shape=(40, 40), all_touched=False).astype(bool)
    edge = mask ^ features.rasterize([truth.buffer(-1.0)], out_shape=(40, 40)).astype(bool)
    rng = np.random.default_rng(seed)
    mask[edge & (rng.random(mask.shape) < 0.25)] = False  # a segmenter's ragged border
    return mask, truth


def test_regularized_outline_has_right_angles_and_few_vertices():
    mask, truth = _rotated_building(23.0, seed=3)
    part = _traced(mask)
    row = finish(part, 1.0, 0.0, regularize_edges=True)
    geom = shapely.from_wkb(row["geometry"])
    coords = np.asarray(geom.exterior.coords)[:-1]
    assert len(coords) <= 8  # an L has 6 corners
    edges = np.diff(np.vstack([coords, coords[:1]]), axis=0)
    angles = np.degrees(np.arctan2(edges[:, 1], edges[:, 0])) % 90
    off = np.abs(angles - angles[0]) % 90
    assert np.all(np.minimum(off, 90 - off) < 1.0)  # every corner a right angle
    assert row["area_m2"] == pytest.approx(geom.area)
    # Pixel units -> CRS units, to compare with the truth drawn in pixels.
    pixel_truth = shapely.transform(
        truth,
        lambda xy: np.column_stack((TRANSFORM.c + 0.5 * xy[:, 0], TRANSFORM.f - 0.5 * xy[:, 1])),
    )
    iou = geom.intersection(pixel_truth).area / geom.union(pixel_truth).area
    assert iou > 0.85


def test_regularize_keeps_a_building_it_cannot_square():
    sliver = box(0, 0, 0.4, 0.4)  # smaller than its tolerances
    assert regularize(sliver, 0.5).area > 0


# --------------------------------------------------------------------------
# A building across two UTM zones, each tile with a nodata collar (issue 22)
# --------------------------------------------------------------------------


def _zone_masks(tmp_path):
    """Both tiles of a :class:`ZonePair` and their perfect masks, written as the job writes them."""
    from raster_fixtures import ZonePair

    from footprints.tiles import read_header
    from pipeline.stitching.cog import write_mask_cog
    from pipeline.values import TileMask, WrittenMask

    pair = ZonePair(tmp_path)
    written = []
    for path in (pair.west, pair.east):
        tile = read_header(path)
        mask = TileMask(tile, pair.roof(path).astype(np.uint8) * 255, pair.valid(path), {})
        out = write_mask_cog(str(tmp_path / "masks" / f"{tile.scene}.tif"), mask)
        written.append(WrittenMask(tile, out, True, {}))
    return pair, written


def test_parts_on_a_collar_edge_are_parts_and_merge_across_utm_zones(tmp_path):
    """Each tile holds half the roof, ending at its collar, not at its rectangle's edge."""
    from pipeline.polygonize import polygonize_raster

    pair, written = _zone_masks(tmp_path)
    parts = []
    for mask in written:
        (part,) = polygonize_raster(mask.path, 0.5, mask.tile.scene, mask.tile.crs)
        tile = mask.tile
        rectangle = shapely.box(
            *rasterio.transform.array_bounds(tile.height, tile.width, tile.affine)
        )
        # Inside the tile's rectangle, away from its edge: a part only by its collar.
        assert part.geometry.distance(rectangle.exterior) > 10
        assert part.on_edge and part.on_data_edge
        parts.append(part)
    (whole,) = merge_parts(parts)
    assert whole.pixels == sum(p.pixels for p in parts)
    assert whole.crs == max(parts, key=lambda p: p.pixels).crs


@pytest.mark.parametrize("output_crs", ["EPSG:32615", "EPSG:32616", "EPSG:4326"])
def test_building_across_two_utm_zones_is_one_footprint_with_its_true_area(tmp_path, output_crs):
    """The Polygonize stage on uint16 NAIP-like tiles in 15N and 16N meeting at -90 deg."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that

    from pipeline.polygonize import Polygonize

    pair, written = _zone_masks(tmp_path)
    truth = pair.true_area_m2()  # geodesic, on the ellipsoid: no tile, no UTM zone
    assert 1900 < truth < 2100

    def check(rows):
        assert len(rows) == 1, [(r["footprint_id"], r["area_m2"]) for r in rows]
        # Pixels are 0.6 m: the roof's outline is traced to within half a pixel.
        assert rows[0]["area_m2"] == pytest.approx(truth, rel=0.02)

    with TestPipeline() as p:
        rows = (p | beam.Create(written) | Polygonize(0.5, 1.0, 4.0, output_crs))["footprints"]
        assert_that(rows, check)


@pytest.mark.parametrize(("gap_m", "expected"), [(0.3, 1), (3.0, 2)])
def test_parts_in_two_crss_merge_only_across_a_seam_of_about_a_pixel(gap_m, expected):
    """Two roofs either side of -90 deg: 0.3 m apart (half a 0.6 m pixel: the grids'
    seam) they are one building; 3 m apart (five pixels: an alley) they stay two."""
    import pyproj

    to_utm = {
        crs: pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        for crs in ("EPSG:32615", "EPSG:32616")
    }
    metres_per_degree = 111_320.0 * np.cos(np.radians(35.15))

    def part(crs, west_m, east_m, name):
        lon = -90.0 + np.array([west_m, east_m, east_m, west_m]) / metres_per_degree
        lat = 35.15 + np.array([0, 0, 20, 20]) / 110_950.0
        x, y = to_utm[crs].transform(lon, lat)
        geom = Polygon(np.column_stack([x, y]))
        return Footprint(name, name[0], crs, geom, round(geom.area / 0.36), 1.0, 0.6, True, True)

    parts = [
        part("EPSG:32615", -20.0, -gap_m / 2, "w-000000"),
        part("EPSG:32616", gap_m / 2, 25.0, "e-000000"),
    ]
    merged = merge_parts(parts)
    assert len(merged) == expected
    if expected == 1:
        (whole,) = merged
        assert whole.crs == "EPSG:32616" and whole.footprint_id == "e-000000"
        # The seam is closed: the area of the 45.3 x 20 m roof (UTM scale ~1.0007 here).
        assert whole.geometry.area == pytest.approx(45.3 * 20, rel=0.005)


def test_polygonize_counts_the_footprints_under_the_minimum_area_in_their_own_output(tmp_path):
    """Three roofs of 1 x 1, 2.5 x 2.5 and 5 x 5 m (0.5 m pixels): 1, 6.25 and 25 m²; 8 m² kept."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from footprints.tiles import TileInfo
    from pipeline.polygonize import TOO_SMALL, Polygonize
    from pipeline.stitching.cog import write_mask_cog
    from pipeline.values import TileMask, WrittenMask

    prob = np.zeros((40, 40), np.uint8)
    prob[2:4, 2:4] = 255  # 2 x 2 px
    prob[10:15, 10:15] = 255  # 5 x 5 px
    prob[25:35, 25:35] = 255  # 10 x 10 px
    tile = TileInfo(
        path="/in/t.tif",
        scene="t",
        height=40,
        width=40,
        count=3,
        crs=UTM,
        transform=tuple(TRANSFORM)[:6],
        block_shape=(64, 64),
        dtype="uint8",
    )
    path = write_mask_cog(str(tmp_path / "t.tif"), TileMask(tile, prob, None, {}))
    with TestPipeline() as p:
        out = (
            p
            | beam.Create([WrittenMask(tile, path, False, {"inferred": 1})])
            | Polygonize(threshold=0.5, simplify_pixels=0.0, min_area_m2=8.0)
        )
        areas = out["footprints"] | "Area" >> beam.Map(lambda row: round(row["area_m2"], 2))
        assert_that(areas, equal_to([25.0]), label="kept")
        # The 1 m² speck is dropped as it is traced (under 8 / 2 m² at 0.25 m² a
        # pixel: 16 pixels), the 6.25 m² one when it is finished: both counted.
        assert_that(out[TOO_SMALL], equal_to([1, 1]), label="dropped")


def test_each_region_is_measured_on_exactly_the_pixels_its_polygon_covers():
    # Random masks: regions with holes, islands in holes, regions touching at
    # a corner (two regions under 4-connectivity), some nodata. The oracle
    # tests each pixel centre against each traced polygon.
    from pipeline.polygonize import _trace_pixels, next_to_nodata

    rng = np.random.default_rng(7)
    for trial in range(40):
        rows, cols = (int(n) for n in rng.integers(3, 40, 2))
        prob = (rng.random((rows, cols)) < 0.55) * rng.integers(1, 256, (rows, cols))
        prob = prob.astype(np.uint8)
        valid = rng.random((rows, cols)) > 0.1 if trial % 2 else None
        near = None if valid is None else next_to_nodata(valid)
        polygons, counts, sums, edge = _trace_pixels(prob, valid, 0.3, near)
        r, c = np.mgrid[0:rows, 0:cols]
        for i, polygon in enumerate(polygons):
            inside = shapely.contains_xy(polygon, c + 0.5, r + 0.5)
            assert counts[i] == inside.sum()
            assert sums[i] == prob[inside].astype(np.int64).sum() / 255.0
            assert edge[i] == (near is not None and bool(near[inside].any()))
        building = (prob >= 77) & (True if valid is None else valid)  # 0.3 * 255 rounded up
        assert counts.sum() == building.sum()


def test_traced_polygons_are_what_shapely_makes_of_the_traced_rings():
    # A ring of building with an island in its hole, a corner-touching pair
    # and a lone pixel: holes, nesting and 4-connectivity.
    from rasterio import features
    from rasterio.transform import Affine
    from shapely.geometry import shape

    from pipeline.polygonize import _polygons, _trace_pixels

    mask = np.zeros((12, 12), bool)
    mask[1:8, 1:8] = True
    mask[3:6, 3:6] = False
    mask[4, 4] = True
    mask[9, 9] = mask[10, 10] = True
    mask[1, 10] = True
    prob = mask.astype(np.uint8) * 200
    rings = [
        g
        for g, _ in features.shapes(
            mask.view(np.uint8), mask=mask, connectivity=4, transform=Affine.identity()
        )
    ]
    want = [shape(g) for g in rings]
    got = _polygons(iter(rings))
    assert len(got) == len(want) == 5
    for a, b in zip(got, want, strict=True):
        assert a.equals_exact(b, 0) and len(a.interiors) == len(b.interiors)
        assert (shapely.get_coordinates(a) == shapely.get_coordinates(b)).all()
    assert sum(len(p.interiors) for p in got) == 1
    traced, counts, _, _ = _trace_pixels(prob, None, 0.5)
    assert sorted(counts.tolist()) == [1, 1, 1, 1, 49 - 9]
    assert len(_polygons(iter([]))) == 0


@pytest.mark.parametrize("output_crs", [None, UTM, "EPSG:3857"])
def test_a_footprint_is_dropped_exactly_when_its_written_area_is_under_the_minimum(output_crs):
    # Specks and small roofs around 8 m2 (32 pixels of 0.5 m): each is
    # dropped iff the row the full path writes (no minimum) is under 8 m2.
    rng = np.random.default_rng(11)
    mask = rng.random((120, 120)) < 0.45  # noise: specks of every small size
    mask[10:14, 60:68] = True  # 32 pixels, 8 m2 before simplification
    parts = polygonize_tile(mask.astype(np.uint8) * 255, None, TRANSFORM, 0.5, "t", UTM)
    assert len(parts) > 100
    kept = 0
    for part in parts:
        full = finish(part, 1.0, 0.0, output_crs)
        assert full is not None
        got = finish(part, 1.0, 8.0, output_crs)
        assert (got is None) == (full["area_m2"] < 8.0), part.footprint_id
        kept += got is not None
    assert kept >= 1
