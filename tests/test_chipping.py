"""Chip cutting without Beam: windows, exact reads, mosaics across tiles and CRSs."""

import math

import numpy as np
import pytest
import rasterio
import rasterio.merge
import shapely
from raster_fixtures import RES, UTM, X0, Y0, noise_tiles, write_geotiff
from rasterio.transform import from_origin
from rasterio.warp import calculate_default_transform, reproject
from rasterio.windows import Window

from footprints.errors import ConfigError
from footprints.tiles import read_header
from pipeline import chipping
from pipeline.sources.tile_index import TileIndex, reproject_geometry


def _open(path):
    return rasterio.open(path)


def _cut(index, geom, spec, crs=UTM):
    hits = index.touching(geom, crs)
    box, box_crs = chipping.chip_box(hits, spec)
    return chipping.read_chip(hits, index.touching(box, box_crs), _open, spec)


def test_chip_window_is_a_square_with_margin_and_min_extent(tmp_path):
    tile = read_header(noise_tiles(tmp_path, n=1)[0])
    # 10 m x 4 m footprint centred 15 m east, 25 m south of the corner.
    geom = shapely.box(X0 + 10, Y0 - 27, X0 + 20, Y0 - 23)
    win = chipping.chip_window(geom, tile, chipping.ChipSpec(margin=0.5, min_extent=0))
    assert (win.width, win.height) == (40, 40)  # 10 m * (1 + 2 * 0.5) / 0.5 m
    assert (win.col_off, win.row_off) == (30 - 20, 50 - 20)
    win = chipping.chip_window(geom, tile, chipping.ChipSpec(margin=0.5, min_extent=30))
    assert (win.width, win.height) == (60, 60)


def test_chip_inside_one_tile_is_the_exact_window_read(tmp_path):
    paths = noise_tiles(tmp_path, n=2)
    index = TileIndex([read_header(p) for p in paths])
    geom = shapely.box(X0 + 30, Y0 - 40, X0 + 38, Y0 - 31)
    spec = chipping.ChipSpec(size=0, margin=0.25, min_extent=0)
    chip = _cut(index, geom, spec)
    win = chipping.chip_window(geom, read_header(paths[0]), spec)
    with rasterio.open(paths[0]) as src:
        assert np.array_equal(chip, src.read(window=win))


def test_chip_across_a_tile_edge_equals_the_mosaic(tmp_path):
    paths = noise_tiles(tmp_path, n=2, size=100)
    index = TileIndex([read_header(p) for p in paths])
    edge = X0 + 100 * RES
    geom = shapely.box(edge - 6, Y0 - 20, edge + 2, Y0 - 12)  # mostly in the west tile
    spec = chipping.ChipSpec(size=0, margin=0.5, min_extent=0)
    chip = _cut(index, geom, spec)
    mosaic, transform = rasterio.merge.merge(paths)
    win = chipping.chip_window(geom, read_header(paths[0]), spec)
    r0, c0 = int(win.row_off), int(win.col_off)  # mosaic shares tile 0's origin
    expected = mosaic[:, r0 : r0 + int(win.height), c0 : c0 + int(win.width)]
    assert chip.shape == expected.shape and np.array_equal(chip, expected)


def test_neighbour_in_another_crs_is_reprojected_into_the_chip(tmp_path):
    """The east tile is stored in Web Mercator; the chip is still filled from it."""
    west, east = noise_tiles(tmp_path, n=2, size=100, seed=3)
    # Smooth content so resampling differences stay small.
    yy, xx = np.mgrid[0:100, 0:100]
    smooth = np.stack([(xx * 2) % 256, (yy * 2) % 256, (xx + yy) % 256]).astype(np.uint8)
    with rasterio.open(east, "r+") as dst:
        dst.write(smooth)
        src_transform, src_crs = dst.transform, dst.crs
    dst_crs = "EPSG:3857"
    bounds = rasterio.transform.array_bounds(100, 100, src_transform)
    t, w, h = calculate_default_transform(
        src_crs, dst_crs, 100, 100, left=bounds[0], bottom=bounds[1], right=bounds[2], top=bounds[3]
    )
    warped = np.zeros((3, h, w), np.uint8)
    reproject(
        smooth,
        warped,
        src_transform=src_transform,
        src_crs=src_crs,
        dst_transform=t,
        dst_crs=dst_crs,
    )
    mercator = write_geotiff(tmp_path / "east_3857.tif", warped, crs=dst_crs, transform=t)
    edge = X0 + 100 * RES
    geom = shapely.box(edge - 8, Y0 - 30, edge + 1, Y0 - 20)
    spec = chipping.ChipSpec(size=0, margin=0.5, min_extent=0)
    aligned = _cut(TileIndex([read_header(west), read_header(east)]), geom, spec)
    mixed = _cut(TileIndex([read_header(west), read_header(mercator)]), geom, spec)
    assert aligned.shape == mixed.shape
    win = chipping.chip_window(geom, read_header(west), spec)
    east_cols = slice(int(100 - win.col_off) + 2, None)  # away from the seam
    east_part = mixed[:, 2:-2, east_cols].astype(int) - aligned[:, 2:-2, east_cols]
    assert (mixed[:, :, east_cols] > 0).mean() > 0.95  # filled, not left as zeros
    assert np.abs(east_part).mean() < 12  # and with the right content


def test_errors_for_no_raster_low_coverage_and_missing_band(tmp_path):
    index = TileIndex([read_header(p) for p in noise_tiles(tmp_path, n=1, size=100)])
    spec = chipping.ChipSpec()
    far = shapely.box(X0 + 500, Y0 - 10, X0 + 510, Y0)
    assert index.touching(far, UTM) == []
    with pytest.raises(chipping.ChipError) as err:
        chipping.read_chip([], [], _open, spec)
    assert err.value.reason == "no_raster"
    mostly_out = shapely.box(X0 + 45, Y0 - 10, X0 + 60, Y0 - 5)
    with pytest.raises(chipping.ChipError) as err:
        _cut(index, mostly_out, spec)
    assert err.value.reason == "partly_outside_rasters"
    with pytest.raises(chipping.ChipError) as err:
        _cut(
            index, shapely.box(X0 + 5, Y0 - 10, X0 + 10, Y0 - 5), chipping.ChipSpec(bands=(1, 2, 5))
        )
    assert err.value.reason == "band_mismatch"


def test_uint16_is_stretched_and_resized_png(tmp_path):
    chip = np.stack([np.full((30, 40), v, np.uint16) for v in (0, 2000, 4000)])
    spec = chipping.ChipSpec(size=16)
    png = chipping.encode_image(chipping.to_uint8(chip, (0, 4000)), spec)
    from raster_fixtures import decode_png

    pixels = decode_png(png)
    assert pixels.shape == (16, 16, 3)
    assert pixels[0, 0].tolist() == [0, 128, 255]


def test_chip_spec_rejects_bad_values():
    for bad in (
        dict(size=3),
        dict(margin=-1),
        dict(bands=(1, 2)),
        dict(value_range=(5, 5)),
        dict(image_format="gif"),
        dict(min_coverage=0),
    ):
        with pytest.raises(ConfigError):
            chipping.ChipSpec(**bad)


def test_window_outside_tile_reads_nothing(tmp_path):
    # A window fully west of the tile: _paste_aligned must leave the chip untouched.
    info = read_header(noise_tiles(tmp_path, n=1, size=50)[0])
    out = np.zeros((3, 10, 10), np.uint8)
    valid = np.zeros((10, 10), bool)
    with rasterio.open(info.path) as ds:
        chipping._paste_aligned(out, valid, ds, info, (0, 0), Window(-20, 0, 10, 10), (1, 2, 3))
    assert not valid.any() and not out.any()


def test_min_extent_is_metres_on_lon_lat_and_feet_tiles():
    from footprints.tiles import TileInfo

    spec = chipping.ChipSpec(margin=0.0, min_extent=20.0)
    lat = 42.0
    deg = 0.5 / 111_320  # about half a metre per pixel
    lonlat = TileInfo(
        "t.tif", "EPSG:4326", (deg, 0, -93.0, 0, -deg, lat + 0.01), 4000, 4000, 3, "uint8"
    )
    tiny = shapely.box(-92.99, lat, -92.99 + 2 * deg, lat + 2 * deg)
    win = chipping.chip_window(tiny, lonlat, spec)
    assert win.height == 40  # 20 m at 0.5 m per pixel
    assert 36 <= win.width * math.cos(math.radians(lat)) <= 44
    feet = TileInfo(
        "f.tif", "EPSG:2277", (1.0, 0, 3_000_000, 0, -1.0, 10_000_000), 500, 500, 3, "uint8"
    )  # Texas Central, US survey feet, 1 ft pixels
    win = chipping.chip_window(shapely.box(3_000_100, 9_999_800, 3_000_101, 9_999_801), feet, spec)
    assert win.width == win.height == math.ceil(20 / 0.3048006)


def test_window_helpers_equal_rasterio_and_the_cut_raises_no_warning(tmp_path):
    import warnings

    from rasterio import windows

    paths = noise_tiles(tmp_path, n=2, size=100)
    tile = read_header(paths[1])
    for win in (Window(-7, 3, 40, 40), Window(12.5, -3.25, 17, 9)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rasterio's own helpers use Affine's warning *
            want_transform = windows.transform(win, tile.affine)
            want_bounds = windows.bounds(win, tile.affine)
        assert chipping.window_transform(win, tile.affine) == want_transform
        assert chipping.window_bounds(win, tile.affine) == want_bounds
    # Across the tile edge and reprojected from lon/lat: every branch of the cut.
    index = TileIndex([read_header(p) for p in paths])
    edge = X0 + 100 * RES
    lonlat = reproject_geometry(shapely.box(edge - 6, Y0 - 20, edge + 2, Y0 - 12), UTM, "EPSG:4326")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per chip adds up over a million chips
        chip = _cut(index, lonlat, chipping.ChipSpec(size=0, margin=0.5), crs="EPSG:4326")
    assert chip.shape[0] == 3


def test_vectorised_reprojection_equals_point_by_point():
    import pyproj

    ring = [(-93.001 + 0.0001 * i, 42.0 + 0.00007 * (i % 5)) for i in range(12)]
    geom = shapely.Polygon(
        ring, holes=[[(-93.0005, 42.0001), (-93.0004, 42.0001), (-93.0004, 42.0002)]]
    )
    got = reproject_geometry(geom, "EPSG:4326", UTM)
    step = pyproj.Transformer.from_crs("EPSG:4326", UTM, always_xy=True)
    want = shapely.Polygon(
        [step.transform(x, y) for x, y in geom.exterior.coords],
        holes=[[step.transform(x, y) for x, y in geom.interiors[0].coords]],
    )
    assert shapely.to_wkb(got) == shapely.to_wkb(want)
    assert reproject_geometry(geom, UTM, UTM) is geom


# --------------------------------------------------------------------------
# Nodata is never data (issue 11, case 3), and neighbours of another layout (case 5)
# --------------------------------------------------------------------------


def _uint16_tile(path, fill=None, nodata=None, **profile):
    from rasterio.transform import from_origin

    profile.setdefault("transform", from_origin(X0, Y0, RES, RES))
    rng = np.random.default_rng(3)
    data = rng.integers(100, 4000, (1, 100, 100)).astype(np.uint16)
    if fill is not None:
        data[:] = fill
    return write_geotiff(path, data, nodata=nodata, **profile)


def test_all_nodata_tile_dead_letters_the_footprint(tmp_path):
    # A 16-bit single-band tile holding only its nodata value.
    index = TileIndex([read_header(_uint16_tile(tmp_path / "t.tif", fill=0, nodata=0))])
    with pytest.raises(chipping.ChipError) as err:
        _cut(index, shapely.box(X0 + 10, Y0 - 20, X0 + 20, Y0 - 10), chipping.ChipSpec())
    assert err.value.reason == "nodata" and "nodata or masked" in str(err.value)


def test_internal_mask_band_hides_pixels_as_naip_cogs_do(tmp_path):
    # 4-band NAIP-like uint8 tile whose internal (per-dataset) mask hides the west half.
    rng = np.random.default_rng(5)
    data = rng.integers(1, 255, (4, 100, 100)).astype(np.uint8)
    mask = np.full((100, 100), 255, np.uint8)
    mask[:, :50] = 0
    path = write_geotiff(
        tmp_path / "naip.tif", data, transform=from_origin(X0, Y0, RES, RES), mask=mask
    )
    index = TileIndex([read_header(str(path))])
    spec = chipping.ChipSpec(size=0, min_extent=0, margin=0.5)
    west = shapely.box(X0 + 5, Y0 - 20, X0 + 15, Y0 - 10)  # pixels 10..30: all masked
    with pytest.raises(chipping.ChipError) as err:
        _cut(index, west, spec)
    assert err.value.reason == "nodata"
    # Across the mask edge: 2/3 of the footprint holds data, so it is chipped with its mask.
    seam = shapely.box(X0 + 20, Y0 - 20, X0 + 35, Y0 - 10)  # columns 40..70
    chip = _cut(index, seam, spec)
    masked = np.ma.getmaskarray(chip)[0]
    cols = np.arange(chip.shape[2]) + int(chipping.chip_window(seam, index.tiles[0], spec).col_off)
    assert masked[:, cols < 50].all() and not masked[:, cols >= 50].any()
    assert not np.ma.getdata(chip)[:, :, cols < 50].any()  # masked pixels are 0
    png = chipping.encode_mask(chipping.to_uint8(chip, None), spec)
    from raster_fixtures import decode_png

    assert set(np.unique(decode_png(png))) == {0, 255}
    full = _cut(index, shapely.box(X0 + 35, Y0 - 20, X0 + 45, Y0 - 10), spec)
    assert chipping.encode_mask(full, spec) is None  # all data: no mask feature


def test_neighbour_with_another_band_count_is_a_band_mismatch(tmp_path):
    # A 1-band uint16 tile beside a 3-band uint8 tile; the chip spans the seam.
    from rasterio.transform import from_origin

    one = _uint16_tile(tmp_path / "a.tif", transform=from_origin(X0, Y0, RES, RES))
    three = write_geotiff(
        tmp_path / "b.tif",
        np.ones((3, 100, 100), np.uint8),
        transform=from_origin(X0 + 50, Y0, RES, RES),
    )
    index = TileIndex([read_header(one), read_header(three)])
    with pytest.raises(chipping.ChipError) as err:
        _cut(index, shapely.box(X0 + 44, Y0 - 20, X0 + 49, Y0 - 15), chipping.ChipSpec())
    assert err.value.reason == "band_mismatch"
    assert "a.tif" in str(err.value) and "b.tif" in str(err.value)


def test_rgb_beside_rgb_nir_is_reconciled_on_the_shared_bands(tmp_path):
    # NAIP-style 4-band (RGB + NIR) tile east of an RGB tile; the chip spans the seam.
    from rasterio.transform import from_origin

    rgb = write_geotiff(
        tmp_path / "a.tif",
        np.full((3, 100, 100), 10, np.uint8),
        transform=from_origin(X0, Y0, RES, RES),
    )
    rgbn = np.stack([np.full((100, 100), v, np.uint8) for v in (50, 60, 70, 200)])
    four = write_geotiff(tmp_path / "b.tif", rgbn, transform=from_origin(X0 + 50, Y0, RES, RES))
    index = TileIndex([read_header(str(rgb)), read_header(str(four))])
    chip = _cut(
        index, shapely.box(X0 + 40, Y0 - 20, X0 + 49, Y0 - 15), chipping.ChipSpec(min_extent=0)
    )
    assert chip.shape[0] == 3 and not np.ma.getmaskarray(chip).any()
    # West of the seam the RGB tile, east of it bands 1-3 of the 4-band tile (never NIR).
    assert set(np.unique(chip[:, :, 0])) == {10}
    assert [set(np.unique(chip[b, :, -1])) for b in range(3)] == [{50}, {60}, {70}]


# --------------------------------------------------------------------------
# A collar's nodata is filled from the neighbour that holds the imagery (issue 22)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("footprint_crs", ["EPSG:32615", "EPSG:32616"])
def test_chip_at_a_collar_is_filled_from_the_neighbour_in_the_other_zone(tmp_path, footprint_crs):
    """A NAIP-like uint16 tile in UTM 15N and one in 16N meet at -90 deg, each with a
    nodata collar over the other's side; the chip of a building across the meridian is
    all data: the primary tile's collar pixels come from the neighbour, reprojected."""
    import pyproj
    from raster_fixtures import ZonePair

    pair = ZonePair(tmp_path)
    index = TileIndex([read_header(pair.west), read_header(pair.east)])
    geom = reproject_geometry(pair.building, "EPSG:4326", footprint_crs)
    spec = chipping.ChipSpec(size=0, margin=0.25, min_extent=0)
    hits = index.touching(geom, footprint_crs)
    assert {h.tile.path for h in hits} == {pair.west, pair.east}
    box, box_crs = chipping.chip_box(hits, spec)
    chip = chipping.read_chip(hits, index.touching(box, box_crs), _open, spec)
    primary = hits[0].tile
    # The primary tile alone has its collar inside the chip (what was masked before).
    with rasterio.open(primary.path) as src:
        own = src.read_masks(1, window=chipping.chip_window(hits[0].geometry, primary, spec))
    assert (own == 0).mean() > 0.1
    assert not np.ma.getmaskarray(chip).any()
    # Every pixel holds the world's value at its centre (roof or ground), from either tile.
    rows, cols = np.mgrid[0 : chip.shape[1], 0 : chip.shape[2]] + 0.5
    win = chipping.chip_window(hits[0].geometry, primary, spec)
    affine = chipping.window_transform(win, primary.affine)
    xs = affine.c + affine.a * cols
    ys = affine.f + affine.e * rows
    lon, lat = pyproj.Transformer.from_crs(primary.crs, "EPSG:4326", always_xy=True).transform(
        xs, ys
    )
    expected = pair.world(lon, lat).astype(int)
    error = np.abs(np.ma.getdata(chip)[0].astype(int) - expected)
    # Bilinear resampling blurs the roof's outline by a pixel; elsewhere a pixel is off
    # by the ground texture's slope at most, and none is a nodata 0 or a blend with one.
    assert np.median(error) < 20 and (error < 60).mean() > 0.95
    assert (np.ma.getdata(chip)[0] >= pair.GROUND - 150).all()
