"""Peak memory of ``footprints segment`` on a sparse tile that declares a huge size.

A uint16 single-band GeoTIFF declares ``--size`` x ``--size`` pixels (default
200000, 40 gigapixels) and stores ``--blocks`` blocks of 256 x 256 (the rest
absent: GDAL's ``SPARSE_OK``), a few of them holding a bright roof; the file is
a few MiB. ``footprints segment`` runs on it with a cheap segmenter (bright
pixels are buildings, 256-pixel windows, halo 16) in a fresh process, under
``/usr/bin/time -v`` where it exists (else ``getrusage`` of the child), so the
peak RSS is the job's own. Also timed: ``footprints segment --dry-run`` on
the same tile, the figure the job should stay close to.

Prints the peak RSS (MiB) and wall time of each, the summary's window counts
(``planned == inferred + nodata + failed + skipped_empty``), the footprints
found and the mask's size on disk. Goal (issue 22): peak RSS under 1.5 GiB.

Usage::

    python benchmarks/sparse_tile.py                  # 200000 x 200000, 6 blocks
    python benchmarks/sparse_tile.py --size 50000     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

WINDOW, HALO, BLOCK = 256, 16, 256


def write_inputs(folder: str, size: int, blocks: int) -> tuple[str, str]:
    """The sparse tile and the segmenter; returns their paths."""
    import numpy as np
    import segment_helpers
    from raster_fixtures import write_sparse_geotiff

    rng = np.random.default_rng(0)
    last = size // BLOCK - 1
    # Blocks spread over the tile (corners and middle), pairs side by side so a
    # roof crosses a block edge.
    where = [(0, 0), (0, 1), (last // 2, last // 2), (last // 2, last // 2 + 1), (last, last)]
    where += [(int(rng.integers(0, last)), int(rng.integers(0, last))) for _ in range(blocks)]
    stored = {}
    for rc in where[:blocks]:
        pixels = rng.integers(300, 1500, (1, BLOCK, BLOCK))
        stored[rc] = pixels
    for left, right in [((0, 0), (0, 1)), ((last // 2, last // 2), (last // 2, last // 2 + 1))]:
        if left in stored and right in stored:
            stored[left][0, 100:160, 200:] = 3500
            stored[right][0, 100:160, :40] = 3500
    tile = write_sparse_geotiff(os.path.join(folder, "tiles", "sparse.tif"), size, size, stored)
    model = segment_helpers.save_bright_segmenter(
        os.path.join(folder, "model"), bands=(1,), raw_dtype="uint16", window_size=WINDOW
    )
    return tile, model


def run(argv: list[str]) -> dict:
    """Runs ``footprints ARGV`` in a fresh process; its peak RSS (MiB), wall time and exit code."""
    cmd = [sys.executable, "-m", "footprints_app.cli", *argv]
    timed = os.path.exists("/usr/bin/time")
    if timed:
        cmd = ["/usr/bin/time", "-v", *cmd]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - start
    if timed:
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        peak = int(found[1]) if found else 0
    else:
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "rc": done.returncode,
        "peak_mib": peak / 1024,
        "wall_s": wall,
        "tail": (done.stdout + done.stderr)[-1500:],
    }


def main(argv: list[str] | None = None) -> None:
    """Writes the inputs, runs ``--dry-run`` and the job, prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200_000, help="declared width and height")
    parser.add_argument("--blocks", type=int, default=6, help="blocks stored (at most 5 + random)")
    parser.add_argument("--keep", help="a folder to write into and keep (default: a temporary one)")
    args = parser.parse_args(argv)
    folder = args.keep or tempfile.mkdtemp(prefix="sparse-tile-")
    try:
        tile, model = write_inputs(folder, args.size, args.blocks)
        print(
            f"tile: {args.size} x {args.size} uint16, {args.blocks} blocks stored, "
            f"{os.path.getsize(tile) / 2**20:.1f} MiB on disk"
        )
        common = ["segment", "--raster", tile, "--model", model, "--halo", str(HALO)]
        dry = run([*common, "--output", os.path.join(folder, "dry"), "--dry-run"])
        print(
            f"--dry-run: rc {dry['rc']}, peak RSS {dry['peak_mib']:.0f} MiB, {dry['wall_s']:.1f} s"
        )
        out = os.path.join(folder, "out")
        job = run([*common, "--output", out])
        print(
            f"segment:   rc {job['rc']}, peak RSS {job['peak_mib']:.0f} MiB, {job['wall_s']:.1f} s"
        )
        if job["rc"] != 0:
            print(job["tail"])
            return
        with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
            summary = json.load(f)
        print("windows:", json.dumps(summary["counts"]["windows"]))
        print("footprints:", summary["counts"]["footprints"], "reconciles:", summary["reconciles"])
        mask = os.path.join(out, "masks", "sparse.tif")
        print(f"mask: {os.path.getsize(mask) / 2**20:.1f} MiB on disk")
        print(f"goal: peak RSS < 1536 MiB: {'met' if job['peak_mib'] < 1536 else 'NOT met'}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
