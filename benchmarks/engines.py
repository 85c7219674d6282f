"""The same three jobs on each engine CI runs: wall time, as a ratio to the DirectRunner.

Builds the small inputs of ``tests/runner_rows.py`` (two 120 px noise tiles and 17 footprints
for prepare; 101 chip records for score; three small tiles for segment), starts the engines
of ``tests/engines.py`` once, and runs every job ``--repeats`` times on each:

* ``direct``   the in-process DirectRunner (the baseline of every ratio);
* ``portable`` Beam's local job service with an external SDK worker pool;
* ``flink``    a Flink 1.19.3 session cluster on loopback, Beam's 2.62.0 Flink job server,
  the SDK worker pool as the EXTERNAL environment (``--parallelism 2``);
* ``prism``    Beam's Prism runner (``--prism_location`` from ``deploy/flink/fetch-engines.sh``).

Each time is one job's wall time from ``run`` to its summary (submission, job start-up and
the SDK workers' TensorFlow import included, the engines' own start-up excluded: it is
reported apart). On inputs this small the times are fixed costs, which is what they show.

Usage::

    bash deploy/flink/fetch-engines.sh           # once
    python benchmarks/engines.py --repeats 2     # about 10 minutes on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import engines  # noqa: E402
import runner_rows  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--engines", default="direct,portable,flink,prism")
    parser.add_argument("--jobs", default="prepare,score,segment")
    parser.add_argument("--json", help="also write the times here")
    args = parser.parse_args(argv)
    names = args.engines.split(",")
    work = Path(tempfile.mkdtemp(prefix="engines-bench-"))
    (work / "inputs").mkdir()
    inputs = runner_rows.build_inputs(work / "inputs")
    startup, times = {}, {}
    with engines.services() as started:
        flags = {"direct": ["--runner=DirectRunner"]}
        if "portable" in names:
            t0 = time.monotonic()
            (work / "portable").mkdir()
            worker = engines.start_worker_pool(work / "portable", started)
            job = engines.start_local_job_service(work / "portable", started)
            startup["portable"] = time.monotonic() - t0
            flags["portable"] = [
                "--runner=PortableRunner",
                f"--job_endpoint={job}",
                "--environment_type=EXTERNAL",
                f"--environment_config={worker}",
                "--sdk_worker_parallelism=1",
            ]
        if "flink" in names:
            t0 = time.monotonic()
            (work / "flink").mkdir()
            rest = engines.start_flink_cluster(work / "flink", started, slots=2)
            job, artifact = engines.start_flink_job_server(work / "flink", started, rest)
            worker = engines.start_worker_pool(work / "flink", started)
            startup["flink"] = time.monotonic() - t0
            flags["flink"] = engines.flink_submit_args(job, artifact, worker)
        if "prism" in names:
            prism = engines.require("prism")["paths"]["binary"]
            flags["prism"] = [
                "--runner=PrismRunner",
                f"--prism_location={prism}",
                "--prism_log_level=warn",
                "--experiments=disable_prism_server_singleton",
            ]
        for job in args.jobs.split(","):
            for name in names:
                for i in range(args.repeats):
                    out = str(work / f"{job}-{name}-{i}")
                    if name == "flink":
                        engines.wait_until_flink_idle(rest)
                    t0 = time.monotonic()
                    runner_rows.JOBS[job][0](inputs, out, flags[name])
                    times.setdefault(job, {}).setdefault(name, []).append(time.monotonic() - t0)
                    print(f"{job:8s} {name:9s} run {i}: {times[job][name][-1]:7.1f} s", flush=True)
    print("\nengine start-up (s):", {k: round(v, 1) for k, v in startup.items()})
    print(f"\n| job | {' | '.join(names)} |\n|---|{'---|' * len(names)}")
    for job, by_engine in times.items():
        base = statistics.median(by_engine["direct"]) if "direct" in by_engine else None
        cells = []
        for name in names:
            t = by_engine[name]
            cell = f"{statistics.median(t):.1f} s"
            if len(t) > 1:
                cell += f" ({min(t):.1f}-{max(t):.1f})"
            if base:
                cell += f", {statistics.median(t) / base:.1f}x"
            cells.append(cell)
        print(f"| {job} | {' | '.join(cells)} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {"startup_s": startup, "times_s": times, "versions": engines.versions()},
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
