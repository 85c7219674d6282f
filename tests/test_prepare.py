"""``footprints prepare`` end to end on DirectRunner: counts, pixels, bad input, reruns."""

import glob
import io
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pyogrio.raw
import pytest
import rasterio
import rasterio.features
import shapely
from PIL import Image
from raster_fixtures import (
    RES,
    X0,
    Y0,
    decode_png,
    noise_tiles,
    read_shards,
    write_footprints,
    write_geotiff,
)

from footprints.errors import ConfigError, InputError
from footprints_app import cli
from pipeline import prepare
from pipeline.chipping import ChipSpec
from pipeline.sources.tile_index import reproject_geometry


def _errors(prefix):
    return pq.read_table(glob.glob(f"{prefix}-errors/*.parquet")).to_pylist()


def _run(config):
    return prepare.run_config(config, ["--runner", "DirectRunner"])


@pytest.mark.slow
def test_sample_area_chips_count_pixels_and_buildings(sample_area, tmp_path):
    prefix = str(tmp_path / "chips" / "area")
    spec = ChipSpec(size=0, margin=0.25, min_extent=16.0)
    summary = _run(
        prepare.PrepareConfig.create(
            output=prefix,
            rasters=f"{sample_area.root}/tiles/*.tif",
            footprints=sample_area.footprints,
            id_field="id",
            class_field="building",
            region_field="region",
            spec=spec,
            num_shards=3,
        )
    )
    _, _, wkbs, fields = pyogrio.raw.read(sample_area.footprints, columns=["id", "building"])
    n_footprints = len(wkbs)
    chips = read_shards(f"{prefix}-*-of-*.tfrecord")
    errors = _errors(prefix)
    assert summary["counts"]["inputs"] == n_footprints
    assert len(chips) == n_footprints - len(errors) == summary["counts"]["chips"]
    assert summary["reconciles"] and len(glob.glob(f"{prefix}-*-of-00003.tfrecord")) == 3
    assert {e["error"] for e in errors} <= {"partly_outside_rasters"}
    assert sorted(c.footprint_id for c in chips) == sorted(
        set(fields[0]) - {e["record"] for e in errors}
    )
    # Labels follow the class attribute.
    classes = dict(zip(fields[0], fields[1], strict=True))
    for chip in chips:
        expected = prepare.ClassMap().label_of(classes[chip.footprint_id])
        assert chip.label == expected and chip.region and chip.crs == sample_area.crs

    # Pixels: a chip inside one tile equals a direct rasterio read of its window,
    # computed here from the footprint and the spec, and the building is at its centre.
    checked = 0
    for chip in chips:
        geom = shapely.from_wkb(chip.wkb)
        for tile_path, mask_path in zip(sample_area.tiles, sample_area.masks, strict=True):
            with rasterio.open(tile_path) as src:
                minx, miny, maxx, maxy = geom.bounds
                side = max(spec.min_extent, max(maxx - minx, maxy - miny) * 1.5)
                n = math.ceil(side / src.res[0])
                col, row = ~src.transform * ((minx + maxx) / 2, (miny + maxy) / 2)
                c0, r0 = round(col - n / 2), round(row - n / 2)
                if c0 < 0 or r0 < 0 or c0 + n > src.width or r0 + n > src.height:
                    continue
                window = rasterio.windows.Window(c0, r0, n, n)
                direct = np.moveaxis(src.read(window=window), 0, -1)
            with rasterio.open(mask_path) as truth:
                truth_mask = truth.read(1, window=window)
            pixels = decode_png(chip.image)
            assert np.array_equal(pixels, direct), chip.footprint_id
            inside = rasterio.features.rasterize(
                [geom],
                out_shape=(n, n),
                transform=rasterio.windows.transform(window, src.transform),
            ).astype(bool)
            assert truth_mask[inside].mean() > 0.9  # the chip shows this building
            checked += 1
            break
    assert checked >= 0.7 * len(chips)


@pytest.mark.slow
def test_footprints_in_another_crs_give_the_same_chips(sample_area, tmp_path):
    meta, _, wkbs, fields = pyogrio.raw.read(sample_area.footprints, columns=["id", "building"])
    geoms = [reproject_geometry(g, sample_area.crs, "EPSG:4326") for g in shapely.from_wkb(wkbs)]
    lonlat = write_footprints(
        tmp_path / "fp4326.gpkg", geoms, list(fields[0]), classes=list(fields[1]), crs="EPSG:4326"
    )
    spec = ChipSpec(size=32)
    runs = {}
    for name, path in (("utm", sample_area.footprints), ("lonlat", lonlat)):
        prefix = str(tmp_path / name / "c")
        _run(
            prepare.PrepareConfig.create(
                output=prefix,
                rasters=f"{sample_area.root}/tiles/*.tif",
                footprints=path,
                id_field="id",
                class_field="building",
                spec=spec,
                num_shards=1,
            )
        )
        runs[name] = {c.footprint_id: c for c in read_shards(f"{prefix}-*.tfrecord")}
    assert runs["utm"].keys() == runs["lonlat"].keys() and len(runs["utm"]) > 10
    assert runs["lonlat"][next(iter(runs["lonlat"]))].crs == "EPSG:4326"
    same = [
        np.array_equal(decode_png(runs["utm"][k].image), decode_png(runs["lonlat"][k].image))
        for k in runs["utm"]
    ]
    assert np.mean(same) > 0.9


@pytest.fixture
def messy_area(tmp_path):
    """Two good tiles, a tile without CRS, a truncated tile; good and bad footprints."""
    folder = tmp_path / "tiles"
    folder.mkdir()
    good = noise_tiles(folder, n=2, size=100)
    from rasterio.transform import from_origin

    write_geotiff(
        folder / "nocrs.tif",
        np.zeros((3, 50, 50), np.uint8),
        crs=None,
        transform=from_origin(X0, Y0 - 100, RES, RES),
    )
    with open(good[0], "rb") as f:
        (folder / "truncated.tif").write_bytes(f.read()[:300])
    edge = X0 + 100 * RES
    geoms = [
        shapely.box(X0 + 10, Y0 - 20, X0 + 18, Y0 - 12),  # ok, west tile
        shapely.box(edge - 5, Y0 - 30, edge + 3, Y0 - 22),  # ok, across the edge
        shapely.box(X0 + 5, Y0 - 60, X0 + 12, Y0 - 53),  # only on the no-CRS tile
        shapely.Polygon(
            [(X0 + 30, Y0 - 30), (X0 + 40, Y0 - 20), (X0 + 40, Y0 - 30), (X0 + 30, Y0 - 20)]
        ),  # bow-tie: invalid
        shapely.Point(X0 + 20, Y0 - 20),  # not a polygon
        shapely.box(X0 + 5000, Y0 - 20, X0 + 5008, Y0 - 12),  # far away
    ]
    ids = ["ok", "edge", "nocrs", "bowtie", "point", "far"]
    vector = write_footprints(
        tmp_path / "fp.gpkg",
        geoms,
        ids,
        classes=["house", "barn", "house", "shed", "house", "yurt"],
        regions=["a", "a", "b", "b", "b", "b"],
    )
    return str(folder), vector


@pytest.mark.slow
def test_bad_inputs_are_dead_lettered_and_counts_reconcile(messy_area, tmp_path):
    folder, vector = messy_area
    prefix = str(tmp_path / "out" / "chips")
    summary = _run(
        prepare.PrepareConfig.create(
            output=prefix,
            rasters=f"{folder}/*.tif",
            footprints=vector,
            id_field="id",
            class_field="building",
            region_field="region",
            num_shards=2,
        )
    )
    chips = {c.footprint_id: c for c in read_shards(f"{prefix}-*.tfrecord")}
    assert set(chips) == {"ok", "edge"}
    assert chips["ok"].label == 1 and chips["edge"].label == 0 and chips["ok"].region == "a"
    by_record = {(e["record"], e["error"]) for e in _errors(prefix)}
    assert {
        ("nocrs", "no_raster"),
        ("bowtie", "invalid_geometry"),
        ("point", "not_a_polygon"),
        ("far", "no_raster"),
    } <= by_record
    tile_errors = {
        e["source"].rsplit("/", 1)[-1]: e["error"]
        for e in _errors(prefix)
        if e["stage"] == "read_raster"
    }
    assert tile_errors == {"nocrs.tif": "no_crs", "truncated.tif": "truncated"}
    assert (
        summary["counts"]["inputs"] == 6
        and summary["counts"]["chips"] == 2
        and summary["counts"]["errors"] == 4
    )
    assert summary["reconciles"] and summary["counts"]["tiles"] == {"usable": 2, "errors": 2}
    assert summary["errors_by_reason"]["no_raster"] == 2
    assert summary["labels"] == {"non_residential": 1, "residential": 1}
    on_disk = json.loads(open(f"{prefix}-summary.json").read())
    assert on_disk["counts"]["chips"] == 2


@pytest.mark.slow
def test_rerun_replaces_shards_and_gzip(messy_area, tmp_path):
    folder, vector = messy_area
    prefix = str(tmp_path / "rerun" / "chips")
    base = dict(output=prefix, rasters=f"{folder}/*.tif", footprints=vector, id_field="id")
    _run(prepare.PrepareConfig.create(**base, num_shards=4))
    assert len(glob.glob(f"{prefix}-*")) == 4 + 3  # shards + errors dir + its schema + summary
    _run(prepare.PrepareConfig.create(**base, num_shards=2, compression="gzip"))
    shards = sorted(glob.glob(f"{prefix}-*-of-*"))
    assert [s.rsplit("/", 1)[-1] for s in shards] == [
        "chips-00000-of-00002.tfrecord.gz",
        "chips-00001-of-00002.tfrecord.gz",
    ]
    assert len(read_shards(f"{prefix}-*-of-*")) == 2  # no duplicates from the first run
    assert len(glob.glob(f"{prefix}-errors/*.parquet")) == 1


@pytest.mark.slow
def test_images_in_class_folders(tmp_path):
    root = tmp_path / "images"
    rng = np.random.default_rng(1)
    for klass, n in (("house", 3), ("barn", 2), ("yurt", 1)):
        (root / klass).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                root / klass / f"{i}.jpg", quality=90
            )
    Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(root / "loose.bmp")
    (root / "barn" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "notes.txt").write_text("not an image")
    prefix = str(tmp_path / "chips" / "imgs")
    summary = _run(
        prepare.PrepareConfig.create(
            output=prefix, images=str(root), num_shards=1, spec=ChipSpec(size=0)
        )
    )
    chips = {c.footprint_id: c for c in read_shards(f"{prefix}-*.tfrecord")}
    assert len(chips) == 7 and summary["reconciles"] and summary["counts"]["errors"] == 1
    assert chips["house/0.jpg"].label == 1 and chips["barn/1.jpg"].label == 0
    assert chips["yurt/0.jpg"].label is None and chips["loose.bmp"].label is None
    assert chips["house/0.jpg"].image == (root / "house" / "0.jpg").read_bytes()
    assert Image.open(io.BytesIO(chips["loose.bmp"].image)).format == "PNG"
    assert summary["unlabelled_classes"] == {"(no class)": 1, "yurt": 1}
    assert [(e["record"], e["error"]) for e in _errors(prefix)] == [
        ("barn/broken.png", "undecodable_image")
    ]


@pytest.mark.slow
def test_uint16_four_band_rasters_become_rgb_chips(tmp_path):
    folder = tmp_path / "tiles"
    folder.mkdir()
    noise_tiles(folder, n=1, size=100, count=4, dtype="uint16")
    vector = write_footprints(
        tmp_path / "fp.geojson",
        [shapely.box(X0 + 10, Y0 - 20, X0 + 18, Y0 - 12)],
        ["a"],
        driver="GeoJSON",
    )
    prefix = str(tmp_path / "c")
    summary = _run(
        prepare.PrepareConfig.create(
            output=prefix,
            rasters=f"{folder}/*.tif",
            footprints=vector,
            id_field="id",
            num_shards=1,
            spec=ChipSpec(size=24),
        )
    )
    (chip,) = read_shards(f"{prefix}-*.tfrecord")
    pixels = decode_png(chip.image)
    assert pixels.shape == (24, 24, 3) and pixels.std() > 20  # stretched, not all black
    lo, hi = summary["inputs"]["chip_spec"]["value_range"]
    assert 0 <= lo < 200 and 3800 < hi <= 4095


def test_invalid_flags_fail_before_the_pipeline(tmp_path, capsys):
    with pytest.raises(ConfigError, match="either --images"):
        prepare.PrepareConfig.create(output=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="go together"):
        prepare.PrepareConfig.create(output=str(tmp_path / "x"), rasters="*.tif")
    with pytest.raises(ConfigError, match="both residential"):
        prepare.ClassMap(("house",), ("House",))
    with pytest.raises(InputError, match="matches no file"):
        (
            prepare.PrepareConfig.create(
                output=str(tmp_path / "x"),
                rasters=str(tmp_path / "none*.tif"),
                footprints="fp.gpkg",
            )
        )
    vector = write_footprints(tmp_path / "fp.gpkg", [shapely.box(0, 0, 1, 1)], ["a"])
    with pytest.raises(InputError, match="--class-field 'kind' is not a field"):
        (
            prepare.PrepareConfig.create(
                output=str(tmp_path / "x"),
                rasters=str(vector),
                footprints=vector,
                class_field="kind",
            )
        )
    code = cli.main(
        ["prepare", "--images", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]
    )
    assert code == 2 and "is not a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_summary_holds_stage_metrics_and_progress_is_shown(messy_area, tmp_path, capfd):
    folder, vector = messy_area
    summary = _run(
        prepare.PrepareConfig.create(
            output=str(tmp_path / "m" / "c"),
            rasters=f"{folder}/*.tif",
            footprints=vector,
            id_field="id",
            num_shards=1,
        )
    )
    counters = summary["metrics"]["counters"]
    assert counters["footprints.prepare/chips_cut"] == summary["counts"]["chips"] == 2
    assert counters["footprints.prepare/footprints_dead_lettered"] == 2  # no raster under them
    assert summary["metrics"]["distributions"]["footprints.prepare/chip_read_ms"]["count"] == 2
    assert "progress [chips]: 2 done" in capfd.readouterr().err


@pytest.mark.slow
def test_nodata_and_masked_pixels_are_never_chip_data(tmp_path):
    """Issue 11 cases 3 and 5: nodata tiles, NAIP-style internal masks, repeated ids."""
    from rasterio.transform import from_origin

    folder = tmp_path / "tiles"
    folder.mkdir()
    # West: a 16-bit single-band tile that is all nodata (0).
    write_geotiff(
        folder / "a.tif",
        np.zeros((1, 100, 100), np.uint16),
        nodata=0,
        transform=from_origin(X0, Y0, RES, RES),
    )
    # East: a 16-bit tile whose west half (columns 0..49) the internal mask hides.
    rng = np.random.default_rng(1)
    data = rng.integers(500, 4000, (1, 100, 100)).astype(np.uint16)
    mask = np.full((100, 100), 255, np.uint8)
    mask[:, :50] = 0
    write_geotiff(folder / "b.tif", data, transform=from_origin(X0 + 50, Y0, RES, RES), mask=mask)
    geoms = [
        shapely.box(X0 + 10, Y0 - 20, X0 + 20, Y0 - 10),  # on the nodata tile
        shapely.box(X0 + 60, Y0 - 20, X0 + 70, Y0 - 10),  # under the mask
        shapely.box(X0 + 70, Y0 - 20, X0 + 85, Y0 - 10),  # across the mask's edge
        shapely.box(X0 + 85, Y0 - 20, X0 + 95, Y0 - 10),  # all data
        shapely.box(X0 + 86, Y0 - 40, X0 + 94, Y0 - 30),
    ]  # all data, repeated id
    vector = write_footprints(tmp_path / "fp.gpkg", geoms, ["n", "m", "edge", "ok", "ok"])
    prefix = str(tmp_path / "out" / "c")
    summary = _run(
        prepare.PrepareConfig.create(
            output=prefix,
            rasters=f"{folder}/*.tif",
            footprints=vector,
            id_field="id",
            num_shards=1,
            spec=ChipSpec(size=32, min_extent=0, margin=0.5),
        )
    )
    assert (
        summary["reconciles"]
        and summary["counts"]["chips"] == 3
        and summary["counts"]["errors"] == 2
    )
    assert {(e["record"], e["error"]) for e in _errors(prefix)} == {
        ("n", "nodata"),
        ("m", "nodata"),
    }
    chips = {c.footprint_id: c for c in read_shards(f"{prefix}-*.tfrecord")}
    assert chips.keys() == {"edge", "ok"}
    edge = decode_png(chips["edge"].mask)
    assert edge.shape[:2] == (32, 32) and (edge == 0).any() and (edge == 255).any()
    assert (decode_png(chips["edge"].image)[edge[..., 0] == 0] == 0).all()
    assert chips["ok"].mask is None
    assert summary["duplicates"]["count"] == 1
    assert [w["code"] for w in summary["warnings"]] == ["duplicate_id"]
    assert sorted(summary["files"]) == [
        "c-00000-of-00001.tfrecord",
        *[f for f in summary["files"] if "errors" in f],
    ]
