"""The serving signature the jobs call: the saved graph with its variables frozen.

A SavedModel's ``serving_default`` reads every weight from a variable on every
call, so TensorFlow's graph optimizer (Grappler) cannot fold the
normalization layers into the convolutions before them. Freezing the
signature (TensorFlow's ``convert_variables_to_constants_v2``, the step
TF-Lite and TF-TRT take too) turns the variables into constants, and the
optimizer then folds them. On the project's classifiers this saves about a
fifth of the CPU per chip (``benchmarks/score.py``, docs in
``benchmarks/README.md``); it is work a plain ``serving_default`` loop does
not do.

Folding changes the floating-point order of a few operations, so scores may
move in the last bits (measured: at most 1.2e-7 for the small CNN, 0 for
MobileNetV2). Every process checks that on its first batch: it runs the saved
graph too, and if any output differs by more than :data:`FROZEN_TOLERANCE`
(or NaNs fall elsewhere) it logs why and serves the saved graph from then on.
A model TensorFlow cannot freeze (for example one that writes a variable) is
served as saved. ``--serving-graph saved`` skips freezing altogether.

An empty batch never reaches either graph: :func:`empty_outputs` answers it.
TensorFlow's oneDNN convolution (on by default on x86 hosts with AVX-512 VNNI
or AMX, off on AVX2-only ones) returns an empty batch with its input's shape,
so a model exported without ``model_training.export``'s guard fails on it
with ``Incompatible shapes`` on some CPUs and not on others.

The outcome is counted in the job's metrics: ``<namespace>/serving_graph_frozen``
(processes that passed the check), ``<namespace>/serving_graph_saved`` (processes
serving the saved graph: asked for, not freezable, or failing the check) and
the distribution ``<namespace>/serving_graph_diff_e9`` (the first batch's
largest difference, in units of 1e-9).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from apache_beam.metrics.metric import Metrics

from footprints import contracts
from pipeline.settings import SERVING_GRAPHS

LOG = logging.getLogger(__name__)

#: The largest |frozen - saved| difference of any output accepted on the first batch.
FROZEN_TOLERANCE = 1e-5


def freeze(fn: Any) -> Any | None:
    """``fn`` (a one-input concrete function) with its variables as constants, or None.

    The frozen function is wrapped in a ``tf.function`` with ``fn``'s input
    signature: the frozen one declares no arguments, so every direct call
    would first fail to bind and format the whole batch into the error
    message TensorFlow then discards, before falling back to a flat call.
    """
    import tensorflow as tf

    try:
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2,
        )

        frozen = convert_variables_to_constants_v2(fn)
    except Exception as exc:  # any failure only means: serve the saved graph
        LOG.warning("the serving graph cannot be frozen (%s); serving it as saved", exc)
        return None
    (spec,) = fn.structured_input_signature[1].values()
    return tf.function(lambda x: frozen(x), input_signature=[spec])


def max_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest |a - b| over every output; inf when shapes or NaN positions differ."""
    worst = 0.0
    for key, x in a.items():
        y = b[key]
        if x.shape != y.shape:
            return float("inf")
        if np.issubdtype(x.dtype, np.floating):
            nan = np.isnan(x)
            if not np.array_equal(nan, np.isnan(y)):
                return float("inf")
            if (~nan).any():
                diff = np.abs(x[~nan].astype(np.float64) - y[~nan].astype(np.float64))
                worst = max(worst, float(diff.max()))
        elif not np.array_equal(x, y):
            return float("inf")
    return worst


def empty_outputs(outputs: dict[str, Any], tensor: Any) -> dict[str, np.ndarray]:
    """The signature's outputs for an empty batch, without running the graph.

    Each output is ``[0, ...]`` of its declared dtype; a dimension the
    signature leaves open takes the input's at the same position (the
    segmenter's ``mask`` [N, H, W] of ``images`` [N, H, W, C]), else 0.

    Args:
        outputs: The signature's ``structured_outputs`` (``TensorSpec`` by name).
        tensor: The empty input batch.
    """
    shape = list(tensor.shape)
    out = {}
    for key, spec in outputs.items():
        dims = [0]
        for i, d in enumerate(list(spec.shape)[1:], start=1):
            dims.append(d if d is not None else (shape[i] if i < len(shape) else 0) or 0)
        out[key] = np.zeros(dims, dtype=spec.dtype.as_numpy_dtype)
    return out


class ServingFunction:
    """A loaded SavedModel's ``serving_default``, frozen when that is safe.

    Args:
        loaded: The object ``tf.saved_model.load`` returned (kept alive here:
            the saved signature's variables live as long as it does).
        graph: ``frozen`` (freeze, check the first call) or ``saved``.
        namespace: Beam metrics namespace of the outcome counters.
    """

    def __init__(self, loaded: Any, graph: str = "frozen", namespace: str = "inference"):
        if graph not in SERVING_GRAPHS:
            raise ValueError(f"serving graph {graph!r} is not one of {SERVING_GRAPHS}")
        self._loaded = loaded
        self._saved = loaded.signatures[contracts.SIGNATURE]
        args, kwargs = self._saved.structured_input_signature
        # The contracts' signatures take exactly one input, which is what the frozen
        # function is wrapped for; anything else is served as saved.
        one_input = not args and len(kwargs) == 1
        self._frozen = freeze(self._saved) if graph == "frozen" and one_input else None
        self._checked = self._frozen is None
        self._frozen_count = Metrics.counter(namespace, "serving_graph_frozen")
        self._saved_count = Metrics.counter(namespace, "serving_graph_saved")
        self._diff = Metrics.distribution(namespace, "serving_graph_diff_e9")
        self._counted = False

    @property
    def graph(self) -> str:
        """``frozen`` or ``saved``: the graph the next call runs."""
        return "saved" if self._frozen is None else "frozen"

    def _run_saved(self, name: str, tensor: Any) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self._saved(**{name: tensor}).items()}

    def _run_frozen(self, frozen: Any, tensor: Any) -> dict[str, np.ndarray]:
        import tensorflow as tf

        flat = frozen(tensor)
        outputs = tf.nest.pack_sequence_as(self._saved.structured_outputs, flat)
        return {k: v.numpy() for k, v in outputs.items()}

    def __call__(self, name: str, tensor: Any) -> dict[str, np.ndarray]:
        """Runs the signature on ``{name: tensor}``; returns its outputs as numpy arrays.

        Errors of the graph (``InvalidArgumentError`` for a bad record) come
        through unchanged, so callers can isolate bad inputs as before. An
        empty batch is answered without the graph (:func:`empty_outputs`).
        """
        if tensor.shape[0] == 0:
            return empty_outputs(self._saved.structured_outputs, tensor)
        frozen = self._frozen  # read once: another thread may fall back meanwhile
        if frozen is None:
            if not self._counted:
                self._counted = True
                self._saved_count.inc()
            return self._run_saved(name, tensor)
        if self._checked:
            return self._run_frozen(frozen, tensor)
        import tensorflow as tf

        try:
            out = self._run_frozen(frozen, tensor)
        except tf.errors.InvalidArgumentError:
            raise  # a bad input: the caller isolates it; the check waits for a good batch
        except Exception as exc:  # the frozen graph cannot run here: serve the saved one
            LOG.warning("the frozen serving graph failed (%s); serving the saved graph", exc)
            self._frozen = None
            return self(name, tensor)
        saved = self._run_saved(name, tensor)
        self._checked = self._counted = True
        diff = max_difference(out, saved)
        if diff <= FROZEN_TOLERANCE:
            self._frozen_count.inc()
            self._diff.update(round(diff * 1e9))
            return out
        LOG.warning(
            "the frozen serving graph differs from the saved one by %s on the first batch "
            "(more than %s); serving the saved graph",
            diff,
            FROZEN_TOLERANCE,
        )
        self._saved_count.inc()
        self._frozen = None
        return saved


def serving_graph_warnings(summary: dict[str, Any], requested: str) -> list[dict[str, Any]]:
    """A ``serving_graph_saved`` warning when a frozen graph was asked for and not served.

    Args:
        summary: A finished run's summary.json (its ``metrics``).
        requested: The run's ``--serving-graph``.
    """
    if requested != "frozen":
        return []
    counters = summary.get("metrics", {}).get("counters", {})
    saved = sum(n for key, n in counters.items() if key.endswith("/serving_graph_saved"))
    if not saved:
        return []
    return [
        {
            "code": "serving_graph_saved",
            "message": f"{saved} worker process(es) scored with the saved serving graph instead "
            "of the frozen one (the model could not be frozen, or its frozen graph differed by "
            f"more than {FROZEN_TOLERANCE} on the first batch; the worker log says which). The "
            "scores are right, only slower; pass --serving-graph saved to skip the attempt",
        }
    ]
