"""The classifier's network in ONNX Runtime: session options, graph forms and int8 variants.

What ``footprints`` could change in its ONNX Runtime session or in the ONNX
file it writes, each measured on the same decoded chips (decoded once, before
the clock, by :class:`pipeline.inference.chip_decode.ChipDecoder`), alternated
over ``--rounds`` rounds in one process: CPU milliseconds per chip
(``time.process_time``, every thread), the largest score difference from the
``fp32`` row and the number of distinct scores (a score rounded to 8 bits
takes at most 256 values).

fp32 rows (``model.onnx``; batch 32 and the session of
:func:`pipeline.inference.onnx_runtime.session_options` unless named):

* ``fp32``: what ``footprints score --runtime onnxruntime`` runs;
* ``fp32-1thread``: one intra-op thread (``FOOTPRINTS_ORT_THREADS=1``);
* ``fp32-batch64``: batches of 64;
* ``fp32-spinning``: intra-op threads that spin between batches;
* ``fp32-offline``: the model optimized once and saved (``optimized_model_filepath``),
  then loaded;
* ``fp32-nchw``: the tf2onnx input Transpose (NHWC to NCHW) taken out of the graph and
  the input transposed in numpy instead (inside the clock), as ``--inputs-as-nchw`` with
  a decoder handing NCHW would;
* ``fp32-nopad``: without the SavedModel's empty-batch padding (a ``Concat`` of the
  input with zero images and a ``Slice`` of the scores).

int8 rows (static quantization on the first 128 chips, QDQ, per-channel, U8S8, min/max,
unless named):

* ``int8``: :func:`model_training.onnx_quantize._quantize` as ``footprints convert onnx
  --int8`` runs it (:data:`~model_training.onnx_quantize.CLASSIFIER_OPS`, the score's
  tail in float);
* ``int8-1thread``: the same, one intra-op thread;
* ``int8-all-ops``: every operator quantized, the score included (the method before);
* ``int8-conv-matmul``: only ``Conv`` and ``MatMul`` quantized;
* ``int8-qoperator``: QOperator format (``QLinearConv`` written out) instead of QDQ;
* ``int8-per-tensor``: one weight scale per tensor;
* ``int8-s8s8``: int8 activations (S8S8) instead of uint8.

Usage::

    python benchmarks/ort_variants.py --model W/model-mobilenetv2 \\
        --chips 'W/chips-6000/*.tfrecord' --n 1024 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
CALIBRATION = 128
FP32 = ("fp32", "fp32-1thread", "fp32-batch64", "fp32-spinning", "fp32-offline")
GRAPHS = ("fp32-nchw", "fp32-nopad")
INT8 = (
    "int8",
    "int8-1thread",
    "int8-all-ops",
    "int8-conv-matmul",
    "int8-qoperator",
    "int8-per-tensor",
    "int8-s8s8",
)


def _decoded(model: str, pattern: str, n: int) -> Any:
    import tensorflow as tf

    from pipeline.inference.onnx_runtime import OnnxClassifierScorer

    files = sorted(tf.io.gfile.glob(pattern))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files).take(n)]
    images, _ = OnnxClassifierScorer(model).decode(records)
    return images


def _without_transpose(src: str, dst: str) -> None:
    """``src`` taking NCHW images: its one input Transpose removed (the ops before it are
    elementwise or concatenate on the batch axis, so they work on either layout)."""
    import onnx

    model = onnx.load(src)
    graph = model.graph
    transpose = next(n for n in graph.node if n.op_type == "Transpose")
    for node in graph.node:
        node.input[:] = [transpose.input[0] if i == transpose.output[0] else i for i in node.input]
    graph.node.remove(transpose)
    dims = graph.input[0].type.tensor_type.shape.dim
    h, w, c = (d.dim_value for d in dims[1:])
    dims[1].dim_value, dims[2].dim_value, dims[3].dim_value = c, h, w
    onnx.save(model, dst)


def _without_padding(src: str, dst: str) -> None:
    """``src`` without the empty-batch padding: the input's ``Concat`` and the last ``Slice``
    (which cuts the scores back to the batch)."""
    import onnx
    import onnx.utils

    model = onnx.load(src)
    graph = model.graph
    name, out = graph.input[0].name, graph.output[0].name
    concat = next(n for n in graph.node if n.op_type == "Concat" and name in n.input)
    last = [n for n in graph.node if n.op_type == "Slice"][-1]
    for node in graph.node:
        node.input[:] = [name if i == concat.output[0] else i for i in node.input]
        if last.output[0] == out:  # the graph's output: its producer writes it instead
            node.output[:] = [out if o == last.input[0] else o for o in node.output]
        else:
            node.input[:] = [last.input[0] if i == last.output[0] else i for i in node.input]
    graph.node.remove(last)
    graph.node.remove(concat)
    onnx.save(model, dst)
    onnx.save(onnx.utils.Extractor(onnx.load(dst)).extract_model([name], [out]), dst)


def _quantized(src: str, dst: str, calibration: Any, variant: str) -> None:
    from onnxruntime import quantization as q

    from model_training import onnx_quantize

    if variant in ("int8", "int8-1thread"):
        onnx_quantize._quantize(src, dst, calibration, onnx_quantize.CLASSIFIER_OPS)
        return

    class Reader(q.CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter([{"images": calibration[i : i + 16]} for i in range(0, 128, 16)])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        q.quant_pre_process(src, prepared, skip_symbolic_shape=True)
        q.quantize_static(
            prepared,
            dst,
            Reader(),
            quant_format=q.QuantFormat.QOperator
            if variant == "int8-qoperator"
            else q.QuantFormat.QDQ,
            activation_type=q.QuantType.QInt8 if variant == "int8-s8s8" else q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            per_channel=variant != "int8-per-tensor",
            calibrate_method=q.CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv", "MatMul"] if variant == "int8-conv-matmul" else None,
        )


def runner(variant: str, model: str, images: Any, tmp: str) -> tuple[Callable[[Any], Any], int]:
    """``(run, batch)``: ``run`` scores a batch of NHWC images with ``variant``."""
    import numpy as np
    import onnxruntime as ort

    from pipeline.inference.onnx_runtime import session_options

    fp32 = os.path.join(model, "model.onnx")
    path, batch, nchw = fp32, 32, False
    options = session_options(1 if variant.endswith("-1thread") else None)
    if variant == "fp32-batch64":
        batch = 64
    elif variant == "fp32-spinning":
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    elif variant == "fp32-offline":
        path = os.path.join(tmp, "offline.onnx")
        saving = session_options()
        saving.optimized_model_filepath = path
        ort.InferenceSession(fp32, saving, providers=["CPUExecutionProvider"])
    elif variant == "fp32-nchw":
        path, nchw = os.path.join(tmp, "nchw.onnx"), True
        _without_transpose(fp32, path)
    elif variant == "fp32-nopad":
        path = os.path.join(tmp, "nopad.onnx")
        _without_padding(fp32, path)
    elif variant.startswith("int8"):
        path = os.path.join(tmp, variant + ".onnx")
        _quantized(fp32, path, images[:CALIBRATION], variant)
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: Any) -> Any:
        if nchw:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return session.run(None, {name: x})[0].reshape(-1)

    return run, batch


def main(argv: list[str] | None = None) -> int:
    """Decodes once, runs every variant alternated, prints the table."""
    import numpy as np

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", required=True, help="a classifier folder with model.onnx")
    parser.add_argument("--chips", required=True, help="glob of chip shards")
    parser.add_argument("--n", type=int, default=1024, help="chips scored per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(FP32 + GRAPHS + INT8))
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in FP32 + GRAPHS + INT8]
    if unknown or variants[0] != "fp32":
        parser.error(f"--variants: start with fp32, from {FP32 + GRAPHS + INT8} (not {unknown})")
    images = _decoded(args.model, args.chips, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {v: runner(v, args.model, images, tmp) for v in variants}
        scores = {
            v: np.concatenate([run(images[i : i + b]) for i in range(0, len(images), b)])
            for v, (run, b) in runs.items()
        }
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v, (run, b) in runs.items():
                start = time.process_time()
                for i in range(0, len(images), b):
                    run(images[i : i + b])
                cpu[v].append(1000 * (time.process_time() - start) / len(images))
    print(
        f"{os.path.basename(args.model)}: {len(images)} chips of {images.shape[1]} px, "
        f"{args.rounds} alternated rounds, {os.cpu_count()} CPUs, load {os.getloadavg()}"
    )
    print(f"{'variant':<18} {'cpu ms/chip':>11} {'spread':>13} {'max|diff|':>10} {'distinct':>8}")
    from machine import median_spread

    for v in variants:
        diff = float(np.max(np.abs(scores[v] - scores["fp32"])))
        print(
            f"{v:<18} {median_spread(cpu[v], 11, 3, 2)} {diff:>10.2e} "
            f"{len(np.unique(scores[v])):>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
