"""Per-footprint cost of ``prepare``'s steps, outside Beam, for before/after comparisons.

``prepare.py`` measures whole processes; this times the work ``CutChipDoFn``
does per footprint, in one process, on the same seeded inputs (the tiles and
footprints ``prepare.py`` writes into ``--workdir``):

* **lookup**: the two tile-index lookups (the footprint, then its chip's
  square) and the chip box;
* **cut + encode**: ``CutChipDoFn.process`` and ``encode_chip`` end to end
  (read, stretch, resize, JPEG, record), TensorFlow's import excluded.

Each is the best of ``--repeats`` passes over the first ``--count``
footprints. Run it from two checkouts (``PYTHONPATH`` says which code is
timed) in the same period to see what a change bought::

    PYTHONPATH=. python benchmarks/prepare_steps.py --workdir /tmp/prep --count 1000
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe  # noqa: E402
from prepare import VALUE_RANGE, write_footprints, write_tiles  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Times the lookup and the whole cut per footprint; prints ms per footprint."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="where prepare.py's inputs are (or go)")
    parser.add_argument("--count", type=int, default=1000, help="footprints timed")
    parser.add_argument("--repeats", type=int, default=3, help="passes; the best is kept")
    args = parser.parse_args(argv)

    import shapely

    from footprints import contracts
    from footprints.tiles import read_header
    from pipeline import chipping
    from pipeline.chipping.transforms import CutChipDoFn
    from pipeline.labels import ClassMap
    from pipeline.sources import tile_index, vectors

    tiles_glob = write_tiles(os.path.join(args.workdir, "tiles"))
    path = write_footprints(os.path.join(args.workdir, "footprints-10000.gpkg"), 10_000)
    info = vectors.inspect_vector(path, "id", "building", "county")
    tiles = [read_header(p) for p in sorted(glob.glob(tiles_glob))]
    footprints = [
        f
        for r in vectors.plan_ranges(info)
        for f in vectors.read_footprints(*r, info.crs, "id", "building", "county")
        if isinstance(f, vectors.Footprint)  # the generated footprints are all valid
    ][: args.count]
    spec = chipping.ChipSpec(image_format="jpeg", value_range=VALUE_RANGE)
    index = tile_index.TileIndex(tiles)
    geoms = [shapely.from_wkb(f.wkb) for f in footprints]

    def lookup() -> None:
        for geom in geoms:
            hits = index.touching(geom, info.crs)
            box, crs = chipping.chip_box(hits, spec)
            index.touching(box, crs)

    cut = CutChipDoFn(spec, ClassMap())
    cut.setup()

    def cut_and_encode() -> None:
        for footprint in footprints:
            for out in cut.process(footprint, tiles):
                contracts.encode_chip(out[0])

    contracts.encode_chip(contracts.Chip(footprint_id="warm-up", image=b"x"))  # imports
    print(f"machine: {describe()}")
    for name, step in (("lookup", lookup), ("cut + encode", cut_and_encode)):
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - start)
        print(
            f"{name:13s} {best:6.2f} s for {len(footprints):,} footprints: "
            f"{best / len(footprints) * 1000:.2f} ms each (best of {args.repeats})"
        )
    cut.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
