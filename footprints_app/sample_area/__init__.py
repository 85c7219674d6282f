"""A seeded, realistic synthetic sample area: orthophoto tiles, true footprints, true masks.

Every stage of footprints (chipping, scoring, segmentation, stitching) needs an
area whose truth is known exactly, that builds in seconds without a network,
and that looks enough like a real orthophoto that a model or an analyst is
not fooled by a toy. This package makes one from a seed.

The story of :func:`generate_sample_area` (:mod:`.generator`):

1. **Plan** (:mod:`.planning`, with :mod:`.sites` and :mod:`.builder`) the
   whole area as vector geometry on one canvas, in metres: a slightly rotated
   grid of rural roads (paved or gravel), crop-field parcels between them, a
   curved suburban street with houses on lawns, farmsteads with barns, grain
   bins and machine sheds on a gravel yard, commercial or industrial lots
   with parking, apartment blocks, rural houses along the roads, and trees in
   yards, windbreaks and woodlots. Every building is a true footprint with an
   OSM-style ``building`` value. The classes overlap on purpose (large
   houses, small barns, red-roofed houses, grey barns, detached garages
   roofed like the house next door) so that a classifier cannot be trivially
   perfect. Shapes come from :mod:`.geometry`, colours from :mod:`.palettes`,
   and the plan is a set of draw lists (:mod:`.drawlists`).
2. **Render** each tile from that plan (:mod:`.rendering`): ground, cast
   shadows (one sun for the scene), roofs (pitched roofs as facets lit by the
   sun, metal roofs with panel seams, flat roofs with parapets and HVAC
   units), then tree canopies, which may hide roof edges. Polygons are burnt
   with :func:`rasterio.features.rasterize`; textures, lighting and noise
   are numpy. Because the plan is one canvas cut into tiles, buildings
   straddle tile edges naturally; the planner makes sure some do.
3. **Write** (:mod:`.writing`): one GeoTIFF per tile and one 0/1 mask per
   tile (the footprints rasterized on the tile's grid), the footprints
   vector file, and ``manifest.json`` last. Every file goes to a temporary
   name first and is moved into place with :func:`os.replace`, so a killed
   run never leaves a half-written file under a final name, and the manifest
   exists only when the area is complete. A rerun into the same folder
   replaces the outputs and removes those the new configuration no longer
   makes.

What to make is a :class:`SampleAreaConfig` (:mod:`.config`, validated on
construction); what was made is a :class:`SampleArea`.

Determinism: all randomness comes from ``numpy.random.default_rng`` seeded
with the config's seed (the planner) or with ``[seed, row, col]`` (per-tile
noise), so the same config gives byte-identical tiles and masks.

Pixel values: 8-bit tiles use the full 0..255 range; 16-bit tiles hold
12-bit values (0..4095), as many aerial sensors deliver. No tile has a nodata
value: every pixel of the area is imaged.
"""

from footprints_app.sample_area.config import (
    BAND_NAMES,
    DTYPE_MAX,
    FOOTPRINT_FORMATS,
    MANIFEST_NAME,
    MAX_CANVAS_PIXELS,
    NON_RESIDENTIAL_CLASSES,
    RESIDENTIAL_CLASSES,
    SampleArea,
    SampleAreaConfig,
    is_residential,
)
from footprints_app.sample_area.generator import generate_sample_area

__all__ = [
    "BAND_NAMES",
    "DTYPE_MAX",
    "FOOTPRINT_FORMATS",
    "MANIFEST_NAME",
    "MAX_CANVAS_PIXELS",
    "NON_RESIDENTIAL_CLASSES",
    "RESIDENTIAL_CLASSES",
    "SampleArea",
    "SampleAreaConfig",
    "generate_sample_area",
    "is_residential",
]
