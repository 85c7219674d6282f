"""Peak memory of ``footprints score`` on a decompression-bomb chip.

A 1.1 MiB PNG chip that declares 20000 x 20000 pixels decodes to 1.2 GB of
uint8 RGB and more as float32; before the decode limit it drove a score run
past 3 GiB. This writes one shard of 20 ordinary chips (PNG and JPEG, 16 px)
with that chip among them, a contract classifier (``tests/score_helpers.py``,
``brightness``) and runs whole ``footprints score`` processes on it, each
under GNU ``time -v``, printing its peak RSS, exit code, counts and dead
letters by reason::

    PYTHONPATH=. python benchmarks/score_bomb.py [--size 20000] [--work DIR] \
        [--score-args '--max-chip-pixels 400000000'] [--baseline-root DIR]

``--baseline-root DIR`` also runs the ``footprints`` of another checkout (for
example ``git archive main | tar -x -C DIR``) on the same chips, for the
figure before a change. Not a test: it takes seconds to minutes and, without
the limit, gigabytes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from machine import describe  # noqa: E402


def write_inputs(work: str, size: int) -> tuple[str, str]:
    """Writes the shard and the classifier under ``work``; returns (chips glob, model dir)."""
    import shapely

    from footprints import contracts
    from tests.score_helpers import bomb_png, jpeg, png, save_classifier, write_shards

    records = []
    for i in range(20):
        image = png(12 * i, size=16) if i % 2 else jpeg(12 * i, size=16)
        x = 500000 + 20 * i
        records.append(
            contracts.encode_chip(
                contracts.Chip(
                    f"fp-{i:02d}",
                    image,
                    region="county-a",
                    wkb=shapely.box(x, 4600000, x + 12, 4600009).wkb,
                    crs="EPSG:32615",
                )
            )
        )
    bomb = bomb_png(size, size)
    print(f"bomb chip: {size} x {size} px PNG, {len(bomb) / 2**20:.2f} MiB")
    records.insert(10, contracts.encode_chip(contracts.Chip("bomb", bomb, region="county-a")))
    write_shards(os.path.join(work, "chips"), records, num_shards=1)
    model = save_classifier(os.path.join(work, "model"))
    return os.path.join(work, "chips", "*.tfrecord"), model


def run_score(root: str, chips: str, model: str, output: str, extra: list[str]) -> dict:
    """One ``footprints score`` process of the checkout at ``root`` under ``time -v``."""
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "footprints_app.cli",
        "score",
        "--chips",
        chips,
        "--model",
        model,
        "--residential-fraction",
        "0.5",
        "--output",
        output,
        *extra,
    ]
    env = dict(os.environ, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    code = re.search(r"Exit status: (\d+)", proc.stderr)
    summary_path = os.path.join(output, "summary.json")
    summary = {}
    if os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            summary = json.load(f)
    return {
        "command": shlex.join(cmd[2:]),
        "peak_mib": int(peak.group(1)) / 1024 if peak else float("nan"),
        "exit": int(code.group(1)) if code else proc.returncode,
        "counts": summary.get("counts"),
        "errors_by_reason": summary.get("errors_by_reason"),
        "tail": proc.stderr.strip().splitlines()[-25:-23] if proc.returncode else [],
    }


def main(argv: list[str] | None = None) -> None:
    """Writes the inputs, runs the score processes, prints one line each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=20000, help="the bomb's declared side, px")
    parser.add_argument("--work", help="folder for the inputs and outputs (default: a temp one)")
    parser.add_argument("--score-args", default="", help="more flags for footprints score")
    parser.add_argument("--baseline-root", help="another checkout to run on the same chips")
    args = parser.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="score-bomb-")
    chips, model = write_inputs(work, args.size)
    print(describe())
    roots = [("this checkout", ROOT)]
    if args.baseline_root:
        roots.append(("baseline", os.path.abspath(args.baseline_root)))
    for name, root in roots:
        extra = shlex.split(args.score_args) if root == ROOT else []
        output = os.path.join(work, "out-" + name.replace(" ", "-"))
        out = run_score(root, chips, model, output, extra)
        print(
            f"{name}: peak RSS {out['peak_mib']:,.0f} MiB, exit {out['exit']}, "
            f"counts {out['counts']}, errors {out['errors_by_reason']}"
        )
        print(f"  {out['command']}")
        for line in out["tail"]:
            print(f"  {line}")


if __name__ == "__main__":
    main()
