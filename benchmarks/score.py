"""Benchmark of the whole ``footprints score`` process against a plain tf.data loop.

For each model (the project's ``small-cnn`` and ``mobilenetv2`` classifiers,
built with random weights from :mod:`model_training.classifier_models` and
exported with :func:`model_training.export.export_classifier`, so the
SavedModel decodes JPEG chips in its graph exactly as a trained one does) and
each chip count N, it writes N JPEG chips of 96 px (smooth random scenes,
with a footprint polygon and CRS, as ``footprints prepare`` writes them) into
8 shards, then runs, alternately and ``--repeats`` times each:

* **plain**: a whole Python process that imports TensorFlow, loads the
  SavedModel and runs ``tf.data.TFRecordDataset(shards).batch(64)
  .prefetch(AUTOTUNE)`` into its ``serving_default``: the loop a user would
  write by hand (it writes nothing and checks nothing);
* **plain-ort**: the same loop a careful ONNX Runtime user writes: tf.data
  reads, parses and decodes (the project's ``decode_resize``, parallel,
  prefetched) and the network's ONNX copy (``model.onnx``) runs in a session
  with explicit intra-op threads (all cores), spinning off and every graph
  optimization;
* **score-tf** / **score-ort** (/ **score-int8** with ``--int8``): the whole
  ``python -m footprints_app.cli score`` process on the same shards and
  model, ``--runtime tensorflow`` / ``onnxruntime`` (flag checks, Beam graph,
  reading with CRC checks, validation, RunInference, the exact fraction,
  Parquet, summary).

All are timed from process start to exit (start-up counts), one after the
other in each repeat (alternated, so a change of machine load hits every
side); each child reports its own peak RSS (``VmHWM``) and CPU seconds just
before it exits. Per side the table gives the medians of chips/s and of CPU
milliseconds per chip over the repeats, their spreads (min..max), the ratio
of CPU per chip to the plain TF loop's and to the plain ORT loop's, and the
largest absolute difference of its scores from the plain TF loop's, per
footprint id (<= 1e-5 for every fp32 side). CPU seconds are the measure on a
shared machine: wall time there depends on the other tenants.

Usage (the full table; about an hour on the shared 2-core machine)::

    python benchmarks/score.py --n 12000 --models small-cnn,mobilenetv2 --repeats 5

``--score-args`` passes extra flags to ``footprints score`` (e.g.
``'--batch-size 128'`` or Beam options), so the benchmark runs unchanged on
a GPU machine (``--score-args '--accelerator type:nvidia-l4;count:1'``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# benchmarks/machine.py, also in children run by path (runpy does not add this folder)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

CHIP_PX = 96
SHARDS = 8
PLAIN_BATCH = 64
MODELS = ("small-cnn", "mobilenetv2")


# --------------------------------------------------------------------------
# Children (each a fresh process)
# --------------------------------------------------------------------------


def make_model(path: str, backbone: str, seed: int = 0) -> None:
    """Exports a randomly initialised project classifier (no download) at ``path``."""
    import keras

    from model_training.classifier_models import build_classifier
    from model_training.export import export_classifier
    from model_training.onnx_export import export_beside

    keras.utils.set_random_seed(seed)
    model = build_classifier(backbone, CHIP_PX, weights=None)
    export_classifier(model, path, CHIP_PX)
    export_beside(path)  # model.onnx, as training writes it


def make_int8(path: str, chips: str) -> None:
    """``model.int8.onnx`` calibrated on ``chips`` (unlabelled here: measured, not judged)."""
    from model_training import onnx_quantize

    images = _decoded(chips, 128)
    onnx_quantize._quantize(
        os.path.join(path, "model.onnx"),
        os.path.join(path, "model.int8.onnx"),
        images,
        onnx_quantize.CLASSIFIER_OPS,
    )


def _decoded(pattern: str, count: int):
    """The first ``count`` chips of ``pattern``, decoded as the model decodes them."""
    import tensorflow as tf

    from model_training import data

    files = sorted(tf.io.gfile.glob(pattern))
    ds = tf.data.TFRecordDataset(files).take(count).batch(count)
    parsed = data.parse_chips(next(iter(ds)))
    images = tf.map_fn(
        lambda e: data.decode_resize(e, CHIP_PX),
        parsed["image/encoded"],
        fn_output_signature=tf.TensorSpec([CHIP_PX, CHIP_PX, 3], tf.float32),
    )
    return images.numpy()


def make_chips(directory: str, n: int, seed: int = 0) -> None:
    """Writes ``n`` 96 px JPEG chip records, with polygons, into :data:`SHARDS` shards."""
    import io

    import numpy as np
    from PIL import Image
    from shapely.geometry import box

    from footprints import contracts
    from tests.score_helpers import write_shards

    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        # A smooth scene (upsampled coarse noise plus grain): JPEG sizes like real chips.
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((CHIP_PX, CHIP_PX), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.int16) + rng.integers(-12, 13, (CHIP_PX, CHIP_PX, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            buf, format="JPEG", quality=90
        )
        x, y = 500000.0 + 30 * (i % 1000), 4100000.0 + 30 * (i // 1000)
        records.append(
            contracts.encode_chip(
                contracts.Chip(
                    f"fp-{i:07d}",
                    buf.getvalue(),
                    region=f"county-{i % 3}",
                    wkb=box(x, y, x + 12, y + 9).wkb,
                    crs="EPSG:32615",
                )
            )
        )
    write_shards(directory, records, SHARDS)


def plain_loop(pattern: str, model: str, batch: int, scores_out: str) -> None:
    """The hand-written loop; saves its scores (in read order) for the diff."""
    import numpy as np
    import tensorflow as tf

    fn = tf.saved_model.load(model).signatures["serving_default"]
    files = sorted(tf.io.gfile.glob(pattern))
    ds = tf.data.TFRecordDataset(files).batch(batch).prefetch(tf.data.AUTOTUNE)
    scores = [fn(examples=records)["score"].numpy() for records in ds]
    np.save(scores_out, np.concatenate(scores))


def plain_ort_loop(pattern: str, model: str, batch: int, scores_out: str) -> None:
    """The hand-written ONNX Runtime loop: tf.data decodes, the session runs the network."""
    import numpy as np
    import tensorflow as tf
    from machine import tuned_ort_session

    from model_training import data

    session = tuned_ort_session(model)
    files = sorted(tf.io.gfile.glob(pattern))

    def decode(records):
        encoded = data.parse_chips(records)["image/encoded"]
        return tf.map_fn(
            lambda e: data.decode_resize(e, CHIP_PX),
            encoded,
            fn_output_signature=tf.TensorSpec([CHIP_PX, CHIP_PX, 3], tf.float32),
        )

    ds = (
        tf.data.TFRecordDataset(files)
        .batch(batch)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    scores = [session.run(None, {"images": images.numpy()})[0].reshape(-1) for images in ds]
    np.save(scores_out, np.concatenate(scores))


def score_diff(pattern: str, plain_scores: str, output: str) -> dict:
    """Largest |pipeline score - plain score| over footprint ids, and the count compared."""
    import numpy as np
    import pyarrow.parquet as pq
    import tensorflow as tf

    from footprints import contracts

    files = sorted(tf.io.gfile.glob(pattern))
    ids = [
        tf.train.Example.FromString(r.numpy())
        .features.feature[contracts.ID_KEY]
        .bytes_list.value[0]
        .decode()
        for r in tf.data.TFRecordDataset(files)
    ]
    plain = dict(zip(ids, np.load(plain_scores).tolist(), strict=True))
    if output.endswith(".npy"):  # another plain loop's scores, in the same read order
        ours = dict(zip(ids, np.load(output).tolist(), strict=True))
    else:
        table = pq.read_table(os.path.join(output, "scores"), columns=["footprint_id", "score"])
        ours = dict(zip(table["footprint_id"].to_pylist(), table["score"].to_pylist(), strict=True))
    common = plain.keys() & ours.keys()
    diff = max((abs(plain[k] - ours[k]) for k in common), default=float("nan"))
    return {"compared": len(common), "plain": len(plain), "pipeline": len(ours), "max_diff": diff}


def machine() -> dict:
    """CPU, load and TensorFlow settings of this machine (run in a child: imports TF)."""
    import tensorflow as tf

    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                model,
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "tf": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
    }


def _cli_module(root: str) -> str:
    """The command line's module in the checkout at ``root``."""
    return (
        "footprints_app.cli"
        if os.path.isdir(os.path.join(root, "footprints_app"))
        else "footprints_app.cli"
    )


def _child_main(kind: str, rest: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if kind == "model":
        make_model(rest[0], rest[1])
    elif kind == "chips":
        make_chips(rest[0], int(rest[1]))
    elif kind == "plain":
        plain_loop(rest[0], rest[1], int(rest[2]), rest[3])
    elif kind == "plain-ort":
        plain_ort_loop(rest[0], rest[1], int(rest[2]), rest[3])
    elif kind == "int8":
        make_int8(rest[0], rest[1])
    elif kind == "diff":
        print(json.dumps(score_diff(rest[0], rest[1], rest[2])))
    elif kind == "machine":
        print(json.dumps(machine()))
    return 0


# --------------------------------------------------------------------------
# The parent: never imports TensorFlow
# --------------------------------------------------------------------------


def timed(cmd: list[str], root: str = ROOT) -> dict:
    """Runs ``cmd`` to exit; wall seconds, and the CPU seconds and peak RSS (MiB) it reports.

    ``cmd`` is wrapped by :func:`_hooked`, whose last stderr line is the
    child's own ``VmHWM`` and ``getrusage`` CPU time, read just before it exits.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    stats = json.loads(err.strip().splitlines()[-1])
    return {"seconds": seconds, "stdout": out, **stats}


# Runs a module or script, then reports its own peak RSS and CPU seconds on stderr.
_PEAK_HOOK = (
    "import atexit, json, os, resource, runpy, sys\n"
    "def _report():\n"
    "    peak = 0.0\n"
    "    with open('/proc/self/status') as f:\n"
    "        for line in f:\n"
    "            if line.startswith('VmHWM:'):\n"
    "                peak = int(line.split()[1]) / 1024\n"
    "    r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    sys.stderr.flush()\n"
    "    sys.stderr.write('\\n' + json.dumps({'peak_mib': peak, "
    "'cpu_s': r.ru_utime + r.ru_stime}) + '\\n')\n"
    "atexit.register(_report)\n"
    "kind, target, sys.argv = sys.argv[1], sys.argv[2], [sys.argv[2], *sys.argv[3:]]\n"
    "try:\n"
    "    if kind == 'module':\n"
    "        runpy.run_module(target, run_name='__main__', alter_sys=True)\n"
    "    else:\n"
    "        runpy.run_path(target, run_name='__main__')\n"
    "except SystemExit as exc:\n"
    "    if exc.code not in (0, None):\n"
    "        raise\n"
)


def _hooked(kind: str, target: str, args: list[str]) -> list[str]:
    return [sys.executable, "-c", _PEAK_HOOK, kind, target, *args]


def _run_child(kind: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", kind, *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _score_cmd(pattern: str, model: str, output: str, extra: list[str]) -> list[str]:
    return [
        "score",
        "--chips",
        pattern,
        "--model",
        model,
        "--residential-fraction",
        "0.3",
        "--output",
        output,
        *extra,
    ]


def _bench(args, backbone: str, model: str, n: int, pattern: str, work: str, extra) -> None:
    """Runs every side ``--repeats`` times, alternated, and prints one row per side."""
    me = os.path.abspath(__file__)
    plain_tf = os.path.join(work, f"plain-{backbone}-{n}.npy")
    plain_ort = os.path.join(work, f"plain-ort-{backbone}-{n}.npy")
    sides: dict[str, tuple[list[str], str, str]] = {
        "plain-tf": (
            _hooked("path", me, ["--child", "plain", pattern, model, str(PLAIN_BATCH), plain_tf]),
            plain_tf,
            ROOT,
        ),
        "plain-ort": (
            _hooked(
                "path", me, ["--child", "plain-ort", pattern, model, str(PLAIN_BATCH), plain_ort]
            ),
            plain_ort,
            ROOT,
        ),
    }
    runtimes = {"score-tf": ["--runtime", "tensorflow"], "score-ort": ["--runtime", "onnxruntime"]}
    if args.int8:
        runtimes["score-int8"] = ["--int8", "--allow-inexact-int8"]
    for side, flags in runtimes.items():
        output = os.path.join(work, f"out-{backbone}-{n}-{side}")
        cmd = _score_cmd(pattern, model, output, [*flags, *extra])
        sides[side] = (_hooked("module", "footprints_app.cli", cmd), output, ROOT)
    if args.baseline_root:
        output = os.path.join(work, f"out-{backbone}-{n}-baseline")
        cmd = _score_cmd(pattern, model, output, extra)
        root = os.path.abspath(args.baseline_root)
        sides["baseline"] = (_hooked("module", _cli_module(root), cmd), output, root)
    if args.skip:
        sides = {k: v for k, v in sides.items() if k == "plain-tf" or k not in args.skip}
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for _ in range(args.repeats):
        for side, (cmd, _, root) in sides.items():
            runs[side].append(timed(cmd, root))
    cpu = {side: statistics.median(r["cpu_s"] for r in rs) / n for side, rs in runs.items()}
    for side, rs in runs.items():
        diff = json.loads(_run_child("diff", pattern, plain_tf, sides[side][1]))
        if not diff["compared"] == diff["plain"] == diff["pipeline"] == n:
            raise RuntimeError(f"{side}: scored counts differ: {diff}")
        rates = [n / r["seconds"] for r in rs]
        per = [1000 * r["cpu_s"] / n for r in rs]
        print(
            f"{backbone:<12} {n:>6} {side:<11} {statistics.median(rates):>8.1f} "
            f"{min(rates):>6.0f}..{max(rates):<6.0f} {statistics.median(per):>11.3f} "
            f"{min(per):>6.2f}..{max(per):<6.2f} {cpu[side] / cpu['plain-tf']:>9.2f} "
            f"{cpu[side] / cpu.get('plain-ort', math.nan):>10.2f} "
            f"{max(r['peak_mib'] for r in rs):>9.0f} "
            f"{diff['max_diff']:>10.2e}",
            flush=True,
        )
    print(f"load average after {backbone} N={n}: {_load()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parses the flags, prepares models and chips, prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="10000,32000", help="chip counts, comma-separated")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated backbones")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="footprints score --batch-size (default: the command's own default); "
        f"the plain loop always batches {PLAIN_BATCH}",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per side (median kept)")
    parser.add_argument(
        "--score-args", default="", help="extra flags for footprints score (Beam options too)"
    )
    parser.add_argument(
        "--baseline-root",
        help="also run footprints score from this checkout (e.g. an export of an earlier "
        "commit), in the same run, to measure what a change bought",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also run footprints score --int8 (the model quantized on 128 of the chips)",
    )
    parser.add_argument(
        "--skip",
        type=lambda text: {x.strip() for x in text.split(",") if x.strip()},
        default=set(),
        help="sides to leave out, comma-separated (plain-ort, score-tf, score-ort, score-int8; "
        "plain-tf always runs): for long runs that measure only some of them",
    )
    parser.add_argument("--work", help="folder for models and chips (default: a temporary one)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(args.child[0], args.child[1:])
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or args.repeats < 1 or (args.batch_size is not None and args.batch_size < 1):
        parser.error(f"--models from {MODELS}, --repeats >= 1, --batch-size >= 1 (got {bad})")
    sizes = [int(x) for x in args.n.split(",")]
    extra = shlex.split(args.score_args)
    if args.batch_size is not None:
        extra = ["--batch-size", str(args.batch_size), *extra]

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or tmp
        os.makedirs(work, exist_ok=True)
        info = json.loads(_run_child("machine"))
        print(
            f"machine: {info['cpus']} CPUs ({info['cpu_model']}), GPUs {info['gpus'] or 'none'}, "
            f"TensorFlow {info['tf']} (intra-op {info['intra_op_threads'] or 'auto'}, "
            f"inter-op {info['inter_op_threads'] or 'auto'}, oneDNN {info['onednn']}, "
            f"OMP_NUM_THREADS {info['omp_threads']}), Python {platform.python_version()}"
        )
        print(f"load average at start: {_load()}")
        print(
            f"chips: {CHIP_PX} px JPEG in {SHARDS} shards; plain loops batch {PLAIN_BATCH}; "
            f"footprints score {shlex.join(extra) or '(defaults)'}; {args.repeats} alternated "
            "round(s)"
        )
        header = (
            f"{'model':<12} {'N':>6} {'side':<11} {'chips/s':>8} {'spread':>13} "
            f"{'cpu ms/chip':>11} {'spread':>13} {'x plainTF':>9} {'x plainORT':>10} "
            f"{'peak MiB':>9} {'max |diff|':>10}"
        )
        print(header, flush=True)
        for backbone in models:
            model = os.path.join(work, f"model-{backbone}")
            if not os.path.exists(os.path.join(model, "saved_model.pb")):
                _run_child("model", model, backbone)
            for n in sizes:
                chips = os.path.join(work, f"chips-{n}")
                if not os.path.isdir(chips):
                    _run_child("chips", chips, str(n))
                pattern = os.path.join(chips, "*.tfrecord")
                if args.int8 and not os.path.exists(os.path.join(model, "model.int8.onnx")):
                    _run_child("int8", model, pattern)
                _bench(args, backbone, model, n, pattern, work, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
