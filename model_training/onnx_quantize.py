"""int8 twins of ONNX models, kept only where they keep the answers.

:func:`quantize_beside` writes ``<model>/model.int8.onnx`` with ONNX
Runtime's static quantization (``quantize_static``: QDQ format, per-channel
int8 weights, uint8 activations calibrated by min/max: U8S8, the pair this
CPU's VNNI instructions run fastest, :data:`METHOD`) and judges it against the
fp32 ONNX model on held-out data. The first half of the data calibrates; the
verdict is measured on the **second half only**, which calibration did not
see (min/max ranges fitted on the measured data itself would hide the
clipping of values outside them):

* **classifier**: labelled chips (validation shards): accuracy, AUC and ECE
  before and after, and the share of chips whose label flips at the enforced
  fraction (each model labels its own top ``f`` residential, ``f`` the chips'
  positive share, as ``footprints score`` would). Within tolerance when at
  most :data:`MAX_FLIP_SHARE` flip and AUC moves by at most
  :data:`MAX_AUC_DROP`. Only the network's operators are quantized
  (:data:`CLASSIFIER_OPS`), and the score's last steps (the last dense layer,
  the sigmoid, the Platt calibration) stay in float, so scores are not
  rounded to 256 levels, which made ties at the enforced fraction (89
  distinct scores for 255 demo chips).
* **segmenter**: windows cut from orthophoto tiles (scaled as the pipeline
  scales them): pixel IoU and F1 of the int8 mask against the fp32 mask at
  0.5, and the largest probability change. Within tolerance when IoU >=
  :data:`MIN_MASK_IOU`. Every operator is quantized (the mask is written in
  steps of 1/255 anyway).

The verdict goes to the model card (``onnx.int8``); ``footprints score`` and
``segment`` refuse ``--int8`` on a model whose card says it is not within
tolerance, unless ``--allow-inexact-int8``. Variants measured on this
project's models (QOperator format, per-tensor weights, int8 activations,
quantizing only ``Conv``/``MatMul``, NCHW input): benchmarks/README.md.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from footprints import contracts
from footprints.errors import InputError
from model_training import evaluation, onnx_export

#: Largest share of chips whose label may flip at the enforced fraction.
MAX_FLIP_SHARE = 0.005
#: Largest AUC change accepted.
MAX_AUC_DROP = 0.005
#: Smallest IoU of the int8 building mask against the fp32 one.
MIN_MASK_IOU = 0.98
#: The classifier's operators that are quantized: the network's (convolutions, dense
#: layers, residual additions, activations, pooling), up to the last dense layer
#: (see :func:`_score_tail`). Quantizing only Conv and MatMul cost MobileNetV2 1.5x the
#: CPU (float activations between them).
CLASSIFIER_OPS = (
    "Conv",
    "MatMul",
    "Gemm",
    "Add",
    "Mul",
    "Clip",
    "Relu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
)
#: How the int8 twin is made (recorded in the model card).
METHOD = (
    "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 activations, "
    "min/max calibration on the first half of the data, verdict on the second half"
)


def _session(path: str):
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _run(session, images: np.ndarray, batch: int = 64) -> np.ndarray:
    name = session.get_inputs()[0].name
    out = [
        session.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)
    ]
    return np.concatenate(out)


def _score_tail(path: str) -> list[str]:
    """The nodes from the last ``MatMul``/``Gemm`` on (the score layer, sigmoid, calibration)."""
    import onnx

    nodes = onnx.load(path).graph.node  # topologically sorted, as ONNX requires
    last = max((i for i, n in enumerate(nodes) if n.op_type in ("MatMul", "Gemm")), default=None)
    return [] if last is None else [n.name for n in nodes[last:]]


def _quantize(
    fp32: str, int8: str, calibration: np.ndarray, ops: tuple[str, ...] | None = None
) -> None:
    """Writes ``int8`` from ``fp32``, calibrated on ``calibration``.

    ``ops``: the operators to quantize, and then the score's tail
    (:func:`_score_tail`) stays float; ``None``: every operator ONNX Runtime
    can quantize.
    """
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self, name: str):
            self._batches = iter(
                [{name: calibration[i : i + 16]} for i in range(0, len(calibration), 16)]
            )

        def get_next(self):
            return next(self._batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        q.quant_pre_process(fp32, prepared, skip_symbolic_shape=True)
        name = _session(prepared).get_inputs()[0].name
        q.quantize_static(
            prepared,
            int8 + ".tmp",
            Reader(name),
            quant_format=q.QuantFormat.QDQ,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            per_channel=True,
            calibrate_method=q.CalibrationMethod.MinMax,
            op_types_to_quantize=list(ops) if ops else None,
            nodes_to_exclude=_score_tail(prepared) if ops else None,
        )
    os.replace(int8 + ".tmp", int8)


def classifier_images(model_dir: str, chips: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` labelled chips of ``chips``, decoded as the SavedModel decodes them."""
    import tensorflow as tf

    from model_training import data

    frozen = onnx_export._frozen_signature(model_dir)
    images_name, valid_name, _ = onnx_export.classifier_cut(frozen.graph)
    (feed,) = frozen.inputs
    decode = frozen.prune(
        feed, [frozen.graph.get_tensor_by_name(n) for n in (images_name, valid_name)]
    )
    files = data.expand_globs(chips, "chip shards", "chips/val-*.tfrecord")
    records, labels = [], []
    for path in files:
        gzip = contracts.compression_of(path) == "gzip"
        ds = tf.data.TFRecordDataset(path, compression_type="GZIP" if gzip else "")
        for raw in ds.as_numpy_iterator():
            chip = contracts.decode_chip(raw)
            if chip.label is not None:
                records.append(raw)
                labels.append(chip.label)
            if len(records) >= count:
                break
        if len(records) >= count:
            break
    if len(set(labels)) < 2:
        raise InputError(
            f"--calibration-chips {chips!r}: {len(records)} labelled chips with labels "
            f"{sorted(set(labels))}; int8 is judged on labelled chips of both classes"
        )
    images, valid = decode(tf.constant(records))
    keep = valid.numpy()
    return images.numpy()[keep], np.asarray(labels)[keep]


def _flip_share(a: np.ndarray, b: np.ndarray, fraction: float) -> float:
    """Share of items labelled differently when each score set labels its own top ``fraction``."""
    k = int(round(fraction * len(a)))

    def top(s: np.ndarray) -> np.ndarray:
        out = np.zeros(len(s), bool)
        out[np.argsort(-s, kind="stable")[:k]] = True
        return out

    return float(np.mean(top(a) != top(b)))


def judge_classifier(labels: np.ndarray, fp32: np.ndarray, int8: np.ndarray) -> dict:
    """The int8 verdict of a classifier on labelled chips (see the module doc)."""
    fraction = float(np.mean(labels))
    before = {
        "accuracy": float(np.mean((fp32 >= 0.5) == labels)),
        "auc": evaluation.binary_auc(labels, fp32),
        "ece": evaluation.expected_calibration_error(labels, fp32),
    }
    after = {
        "accuracy": float(np.mean((int8 >= 0.5) == labels)),
        "auc": evaluation.binary_auc(labels, int8),
        "ece": evaluation.expected_calibration_error(labels, int8),
    }
    flips = _flip_share(fp32, int8, fraction)
    auc_change = abs(after["auc"] - before["auc"])
    ok = flips <= MAX_FLIP_SHARE and auc_change <= MAX_AUC_DROP
    return {
        "within_tolerance": bool(ok),
        "why": (
            f"{flips:.2%} of labels flip at fraction {fraction:.3f} (at most "
            f"{MAX_FLIP_SHARE:.1%}), AUC {before['auc']:.4f} -> {after['auc']:.4f} (change at "
            f"most {MAX_AUC_DROP})"
        ),
        "chips": len(labels),
        "fraction": fraction,
        "label_flip_share": flips,
        "fp32": before,
        "int8": after,
        "max_score_difference": float(np.max(np.abs(fp32 - int8))),
    }


def segmenter_windows(model_dir: str, raster: str, count: int) -> np.ndarray:
    """Up to ``count`` model windows cut on a grid from ``raster``'s tiles, scaled for the model."""
    import rasterio
    from rasterio.windows import Window

    from model_training import data

    assets = contracts.read_segmenter_assets(model_dir)
    size = assets.window_size
    windows = []
    for path in data.expand_globs(raster, "orthophoto tiles", "area/tiles/*.tif"):
        with rasterio.open(path) as src:
            for row in range(0, src.height - size + 1, size):
                for col in range(0, src.width - size + 1, size):
                    raw = src.read(list(assets.bands), window=Window(col, row, size, size))
                    windows.append(contracts.scale_to_model_input(np.moveaxis(raw, 0, -1), assets))
                    if len(windows) >= count:
                        return np.stack(windows)
    if len(windows) < 2:
        raise InputError(
            f"--calibration-raster {raster!r} holds {len(windows)} whole {size}-pixel windows; "
            "pass larger tiles or more of them"
        )
    return np.stack(windows)


def judge_segmenter(fp32: np.ndarray, int8: np.ndarray) -> dict:
    """The int8 verdict of a segmenter: its masks against the fp32 masks at 0.5."""
    a, b = fp32 >= 0.5, int8 >= 0.5
    inter, union = np.sum(a & b), np.sum(a | b)
    iou = float(inter / union) if union else 1.0
    f1 = float(2 * inter / (a.sum() + b.sum())) if (a.sum() + b.sum()) else 1.0
    return {
        "within_tolerance": bool(iou >= MIN_MASK_IOU),
        "why": f"pixel IoU {iou:.4f} against the fp32 mask (at least {MIN_MASK_IOU})",
        "windows": int(len(fp32)),
        "pixel_iou_vs_fp32": iou,
        "pixel_f1_vs_fp32": f1,
        "max_probability_difference": float(np.max(np.abs(fp32 - int8))),
        "building_fraction_fp32": float(a.mean()),
    }


def quantize_beside(model_dir: str, calibration: str, count: int = 512) -> dict:
    """Writes ``<model_dir>/model.int8.onnx`` and returns the card's ``onnx.int8`` entry.

    Needs ``<model_dir>/model.onnx`` (:func:`model_training.onnx_export.export_beside`).
    The first half of the data calibrates, the second half is measured.

    Raises:
        InputError: too little data, or (classifier) a measured half without
            both labels.
    """
    fp32_path = os.path.join(model_dir, contracts.ONNX_MODEL)
    int8_path = os.path.join(model_dir, contracts.ONNX_INT8_MODEL)
    segmenter = onnx_export.is_segmenter(model_dir)
    if segmenter:
        inputs = segmenter_windows(model_dir, calibration, count)
    else:
        inputs, labels = classifier_images(model_dir, calibration, count)
    half = len(inputs) // 2
    if half < 1 or (not segmenter and len(set(labels[half:].tolist())) < 2):
        raise InputError(
            f"{calibration!r}: {len(inputs)} usable items; the first half calibrates int8 and "
            "the second half, which needs both labels, judges it: pass more data "
            "(--calibration-count, or more shards)"
        )
    _quantize(fp32_path, int8_path, inputs[:half], None if segmenter else CLASSIFIER_OPS)
    held_out = inputs[half:]
    fp32 = _run(_session(fp32_path), held_out).astype(np.float64)
    int8 = _run(_session(int8_path), held_out).astype(np.float64)
    if segmenter:
        verdict = judge_segmenter(fp32, int8)
    else:
        verdict = judge_classifier(labels[half:], fp32, int8)
    what = "windows" if segmenter else "chips"
    verdict["why"] += f"; on {len(held_out)} {what} calibration did not see"
    return {
        "file": contracts.ONNX_INT8_MODEL,
        "method": METHOD,
        "calibration_items": half,
        **verdict,
    }
