"""The classifier's network alone on each CPU runtime: TensorFlow, ONNX Runtime, OpenVINO, LiteRT.

Decoding is done once, before the clock (as the SavedModel decodes: the frozen
``serving_default`` pruned at the cut ``model.onnx`` names); then each engine
scores the same decoded batches, alternated over ``--rounds`` rounds in one
process, and the table gives the medians (and spreads) of CPU milliseconds
per chip (``time.process_time``: every thread of the process) and chips/s,
and each engine's largest score difference from TensorFlow's:

* ``tf-frozen``: the SavedModel's network, frozen (what ``--runtime tensorflow`` runs);
* ``ort-default``: ONNX Runtime with its default session options (spinning threads);
* ``ort-{all,extended,basic}``: the session ``footprints`` opens (intra-op threads = cores,
  spinning off, sequential), at each graph optimization level;
* ``ort-1thread``: the same at ``ORT_ENABLE_ALL`` with one intra-op thread
  (``FOOTPRINTS_ORT_THREADS=1``);
* ``ort-parts``: what ``footprints`` runs since issue 24's parts: each batch cut into one
  part per core, the parts run at once, one thread each
  (:class:`pipeline.inference.onnx_runtime.SessionRunner`);
* ``ort-int8``: the same on ``model.int8.onnx``, when the folder has it;
* ``openvino``: OpenVINO's CPU plugin on ``model.onnx`` (latency hint, threads = cores),
  in float32 (``INFERENCE_PRECISION_HINT f32``: on a CPU with AVX512_BF16, as this one,
  OpenVINO's default is bfloat16, a reduced precision, not an fp32 figure);
* ``openvino-bf16``: the same with its default bfloat16 inference;
* ``litert``: the TensorFlow Lite converter's model of the same network in LiteRT's
  interpreter (threads = cores).

OpenVINO and LiteRT are not project dependencies: the benchmark skips what is not
installed (``pip install openvino ai-edge-litert`` in a side environment).

Usage::

    python benchmarks/runtimes.py --model /tmp/w/model-mobilenetv2 \\
        --chips '/tmp/w/chips-12000/*.tfrecord' --n 2048 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
BATCH = 32  # what `footprints score` hands the model (pipeline.scoring.CPU_BATCH_SIZE)


def _decoded(model: str, pattern: str, n: int):
    import tensorflow as tf

    from pipeline.inference.onnx_runtime import OnnxClassifierScorer

    scorer = OnnxClassifierScorer(model)
    files = sorted(tf.io.gfile.glob(pattern))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files).take(n)]
    images, _ = scorer.decode(records)
    return images


def _tf_network(model: str):
    import tensorflow as tf

    from model_training.onnx_export import _frozen_signature, classifier_cut

    frozen = _frozen_signature(model)
    cut, _, scores = classifier_cut(frozen.graph)
    network = frozen.prune(
        frozen.graph.get_tensor_by_name(cut), frozen.graph.get_tensor_by_name(scores)
    )
    return lambda x: network(tf.constant(x)).numpy(), network


def _ort(path: str, level: str | None, threads: int | None = None):
    import onnxruntime as ort

    from pipeline.inference.onnx_runtime import session_options

    if level is None:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    else:
        options = session_options(threads)
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x})[0]


def _ort_parts(path: str):
    from pipeline.inference.onnx_runtime import SessionRunner

    runner = SessionRunner(path)
    return lambda x: runner.run("images", x)


def _openvino(path: str, precision: str = "f32"):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        path,
        "CPU",
        {
            "INFERENCE_NUM_THREADS": os.cpu_count() or 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        },
    )
    return lambda x: next(iter(compiled(x).values()))


def _litert(network, size: int):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    concrete = tf.function(
        lambda x: network(x), input_signature=[tf.TensorSpec([BATCH, size, size, 3], tf.float32)]
    ).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    interpreter = Interpreter(model_content=converter.convert(), num_threads=os.cpu_count() or 1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(x):
        if len(x) != BATCH:  # the converted model has a fixed batch
            x = __import__("numpy").concatenate([x, x[: BATCH - len(x)] * 0])
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(out["index"])[: len(x)]
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return run


def engines(model: str, size: int) -> dict:
    """Every engine that loads here, by name."""
    found = {}
    tf_run, network = _tf_network(model)
    found["tf-frozen"] = tf_run
    fp32 = os.path.join(model, "model.onnx")
    found["ort-default"] = _ort(fp32, None)
    for level in ("ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_BASIC"):
        found["ort-" + level.rsplit("_", 1)[1].lower()] = _ort(fp32, level)
    found["ort-1thread"] = _ort(fp32, "ORT_ENABLE_ALL", 1)
    found["ort-parts"] = _ort_parts(fp32)
    int8 = os.path.join(model, "model.int8.onnx")
    if os.path.exists(int8):
        found["ort-int8"] = _ort(int8, "ORT_ENABLE_ALL")
    for name, make in (
        ("openvino", lambda: _openvino(fp32)),
        ("openvino-bf16", lambda: _openvino(fp32, "bf16")),
        ("litert", lambda: _litert(network, size)),
    ):
        try:
            found[name] = make()
        except Exception as exc:  # not installed, or the network does not convert
            print(f"{name}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
    return found


def main(argv: list[str] | None = None) -> int:
    """Decodes once, runs every engine alternated, prints the table."""
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a classifier folder with model.onnx")
    parser.add_argument("--chips", required=True, help="glob of chip shards")
    parser.add_argument("--n", type=int, default=2048, help="chips scored per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    images = _decoded(args.model, args.chips, args.n)
    batches = [images[i : i + BATCH] for i in range(0, len(images), BATCH)]
    found = engines(args.model, images.shape[1])
    scores = {}
    cpu_ms: dict[str, list[float]] = {k: [] for k in found}
    rate: dict[str, list[float]] = {k: [] for k in found}
    for name, run in found.items():  # warm-up, and the scores for the differences
        scores[name] = np.concatenate([np.asarray(run(b)).reshape(-1) for b in batches])
    for _ in range(args.rounds):
        for name, run in found.items():
            c0, w0 = time.process_time(), time.perf_counter()
            for b in batches:
                run(b)
            cpu_ms[name].append(1000 * (time.process_time() - c0) / len(images))
            rate[name].append(len(images) / (time.perf_counter() - w0))
    print(
        f"{len(images)} chips of {images.shape[1]} px, batch {BATCH}, {args.rounds} alternated "
        f"rounds, {os.cpu_count()} CPUs, load {os.getloadavg()}"
    )
    head = f"{'engine':<14} {'cpu ms/chip':>11} {'spread':>13} {'chips/s':>8} {'spread':>13}"
    print(head + f" {'max|diff| vs tf':>16}")
    from machine import median_spread

    for name in found:
        diff = float(np.max(np.abs(scores[name] - scores["tf-frozen"])))
        print(
            f"{name:<14} {median_spread(cpu_ms[name], 11, 3, 2)} "
            f"{median_spread(rate[name], 8, 0, 0)} {diff:>16.2e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
