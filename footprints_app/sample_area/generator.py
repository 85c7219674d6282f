"""The generator: plan, render and write one sample area.

:func:`generate_sample_area` wires the stages together: it plans the area
(:mod:`~footprints_app.sample_area.planning`), renders and writes each tile and
its mask (:mod:`~footprints_app.sample_area.rendering`,
:mod:`~footprints_app.sample_area.writing`), writes the footprints with their
``id``, ``building`` and ``region`` attributes, removes stale outputs of an
earlier run, and writes ``manifest.json`` last.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np
import shapely

from footprints.errors import ConfigError
from footprints_app.sample_area.config import (
    BAND_NAMES,
    DTYPE_MAX,
    MANIFEST_NAME,
    NON_RESIDENTIAL_CLASSES,
    RESIDENTIAL_CLASSES,
    SampleArea,
    SampleAreaConfig,
)
from footprints_app.sample_area.planning import _Planner
from footprints_app.sample_area.rendering import _burn, _Renderer, _Tile, _to_bands
from footprints_app.sample_area.writing import (
    _remove_stale,
    _reproject,
    _write_footprints,
    _write_geotiff,
    _write_json,
)

# The name the logger had before the module became a package.
logger = logging.getLogger("footprints.sample_area")

# One default instance (it is frozen), made once as the default argument always was.
_DEFAULT_CONFIG = SampleAreaConfig()


def generate_sample_area(out_dir: str, config: SampleAreaConfig = _DEFAULT_CONFIG) -> SampleArea:
    """Generates a sample area into ``out_dir`` and returns where everything is.

    Example::

        area = generate_sample_area("/tmp/area", SampleAreaConfig(seed=3, tiles_x=3))
        area.tiles[0]     # '/tmp/area/tiles/tile_r0_c0.tif'
        area.counts       # {'barn': 4, 'house': 21, ..., 'total': 77}

    Args:
        out_dir: Folder to write; created if missing. Outputs of an earlier
            run there are replaced.
        config: What to generate.

    Returns:
        The :class:`SampleArea` written.

    Raises:
        ConfigError: ``config`` is not a :class:`SampleAreaConfig`, or
            ``out_dir`` exists and is not a folder.
    """
    if not isinstance(config, SampleAreaConfig):
        raise ConfigError(
            f"config {config!r} is not a SampleAreaConfig; build one with SampleAreaConfig(...)"
        )
    root = os.path.abspath(out_dir)
    if os.path.exists(root) and not os.path.isdir(root):
        raise ConfigError(f"output {out_dir!r} exists and is not a folder; pick another path")
    started = time.perf_counter()
    for sub in ("tiles", "masks"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    manifest = os.path.join(root, MANIFEST_NAME)
    if os.path.exists(manifest):
        # Until the new manifest is written, the folder must not look complete.
        os.remove(manifest)

    plan = _Planner(config).plan()
    x0, y0 = config.origin
    local = np.array([f.geom for f in plan.footprints], dtype=object)
    world = shapely.transform(local, lambda xy: xy + np.array([x0, y0])) if len(local) else local
    regions = config.region_names
    centroid_x = shapely.get_x(shapely.centroid(local)) if len(local) else np.empty(0)
    region_index = np.clip(
        (centroid_x / config.width_m * config.regions).astype(int), 0, config.regions - 1
    )
    attrs = {
        "id": [f"fp-{i + 1:06d}" for i in range(len(local))],
        "building": [f.building for f in plan.footprints],
        "region": [regions[i] for i in region_index],
    }

    renderer = _Renderer(plan, config)
    tiles, masks, names, tile_entries = [], [], set(), []
    photometric = "RGB" if config.bands == "rgb" else None
    bounds = shapely.bounds(world) if len(world) else np.empty((0, 4))
    for row in range(config.tiles_y):
        for col in range(config.tiles_x):
            name = f"tile_r{row}_c{col}.tif"
            transform = config.tile_transform(row, col)
            tile_path = os.path.join(root, "tiles", name)
            mask_path = os.path.join(root, "masks", name)
            data = _to_bands(renderer.render(row, col), config.bands, config.dtype)
            _write_geotiff(
                tile_path, data, config, transform, BAND_NAMES[config.bands], photometric
            )
            tile = _Tile(row, col, config.tile_size, config.pixel_size, transform)
            mask = _burn({"geoms": world, "bounds": bounds}, tile)
            _write_geotiff(
                mask_path, (mask > 0).astype(np.uint8)[None], config, transform, ("building",), None
            )
            tiles.append(tile_path)
            masks.append(mask_path)
            names.add(name)
            tile_entries.append(
                {
                    "row": row,
                    "col": col,
                    "tile": f"tiles/{name}",
                    "mask": f"masks/{name}",
                    "transform": list(transform)[:6],
                }
            )

    out_crs = config.footprints_crs or config.crs
    footprints = _write_footprints(
        root,
        _reproject(world, config.crs, config.footprints_crs),
        attrs,
        out_crs,
        config.footprints_format,
    )
    _remove_stale(root, names, footprints)

    counts: dict[str, int] = {}
    for value in attrs["building"]:
        counts[value] = counts.get(value, 0) + 1
    counts = dict(sorted(counts.items()))
    counts["total"] = len(attrs["building"])
    _write_json(
        manifest,
        {
            "generator": "footprints.sample_area",
            "config": dataclasses.asdict(config),
            "crs": config.crs,
            "footprints_crs": out_crs,
            "bounds": [x0, y0 - config.height_m, x0 + config.width_m, y0],
            "pixel_size": config.pixel_size,
            "bands": list(BAND_NAMES[config.bands]),
            "dtype": config.dtype,
            "max_value": DTYPE_MAX[config.dtype],
            "nodata": None,
            "tiles": tile_entries,
            "footprints": os.path.basename(footprints),
            "counts": counts,
            "regions": list(regions),
            "residential_classes": list(RESIDENTIAL_CLASSES),
            "non_residential_classes": list(NON_RESIDENTIAL_CLASSES),
            "sun": plan.sun,
        },
    )
    logger.info(
        "sample area of %d tiles and %d footprints in %s (%.1f s)",
        len(tiles),
        counts["total"],
        root,
        time.perf_counter() - started,
    )
    return SampleArea(
        root=root,
        tiles=tuple(tiles),
        masks=tuple(masks),
        footprints=footprints,
        crs=config.crs,
        config=config,
        counts=counts,
    )
