"""Batched segmenter inference with Beam's RunInference.

The segmenter is a SavedModel whose ``serving_default`` maps ``images``
(uint8 ``[N, H, W, C]``) to ``mask`` (float32 ``[N, H, W]``), see
:mod:`footprints.contracts`. :class:`SegmenterModelHandler` is the one seam
between Beam and TensorFlow: it loads the model once per worker process
(``load_model``) and runs it on a stacked batch of windows
(``run_inference``), optionally with test-time augmentation.

Batching is explicit, as ``ARCHITECTURE.md`` asks: ``min_batch_size`` and
``max_batch_size`` go to ``BatchElements``; both are set because, with a
model shared across threads, Beam's adaptive batching otherwise settles on
batches of one. (``max_batch_weight`` is deliberately not used: in Beam
2.77 it makes ``BatchElements`` fail without an ``element_size_fn``.)

Failures are contained per window, not per batch: the handler catches a
failing batch itself, retries its windows one by one, and returns an
:class:`InferenceFailure` for each window that still fails; each becomes an
``errors/`` row and a ``failed`` window for the stitcher. RunInference is
used plain, as in ``footprints score`` (``with_exception_handling`` would
dead-letter whole batches and nest the inference step, which the GPU
resource hint must name directly); anything that escapes the handler is a
bug and fails the bundle.

With an ``accelerator`` hint, only the inference step asks for a GPU, and
one model copy per GPU is shared by a machine's processes.

Test-time augmentation (``tta``): ``flips`` averages the model over the four
flips of each window, ``d4`` over its eight rotations and flips (as in the
segmentation study); predictions are mapped back before averaging. Windows
are square, so rotations keep their shape. TTA multiplies model time by 4 or
8.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.pvalue import PCollection, TaggedOutput

from footprints import contracts
from footprints.contracts import ERRORS, ErrorRecord
from footprints.errors import Reason
from pipeline import runtimes
from pipeline.inference import handlers
from pipeline.inference.onnx_runtime import CONCRETE_RUNTIMES, OnnxSegmenter
from pipeline.inference.serving import ServingFunction
from pipeline.ptransform import DataclassTransform
from pipeline.settings.segment import TTA_MODES
from pipeline.values import FAILED, CorePrediction, WindowInput

LOG = logging.getLogger(__name__)
NAMESPACE = contracts.METRICS_SEGMENT


Array = np.ndarray
#: (forward on images [N, H, W, C], inverse on masks [N, H, W]).
Augmentation = tuple[Callable[[Array], Array], Callable[[Array], Array]]


def _dihedral(k: int, flip: bool) -> Augmentation:
    def forward(images: Array) -> Array:
        out = images[:, :, ::-1] if flip else images
        return np.rot90(out, k, axes=(1, 2))

    def inverse(masks: Array) -> Array:
        out = np.rot90(masks, -k, axes=(1, 2))
        return out[:, :, ::-1] if flip else out

    return forward, inverse


def augmentations(tta: str) -> list[Augmentation]:
    """The (forward, inverse) pairs of a test-time augmentation mode.

    Example: ``len(augmentations("flips")) == 4``; ``augmentations("none")``
    is the identity alone.
    """
    if tta == "none":
        return [_dihedral(0, False)]
    if tta == "flips":
        # Horizontal, vertical and both flips: both flips are a 180-degree turn.
        return [_dihedral(0, False), _dihedral(0, True), _dihedral(2, True), _dihedral(2, False)]
    if tta == "d4":
        return [_dihedral(k, flip) for k in range(4) for flip in (False, True)]
    raise ValueError(f"tta {tta!r} is not one of {TTA_MODES}")


class Segmenter:
    """A loaded segmenter SavedModel, callable on numpy batches."""

    def __init__(self, model_dir: str, serving_graph: str = "frozen") -> None:
        import tensorflow as tf

        handlers.enable_memory_growth()
        self._fn = ServingFunction(
            tf.saved_model.load(contracts.local_model_dir(model_dir)), serving_graph, NAMESPACE
        )
        self._tf = tf
        self.model_dir = model_dir

    def __call__(self, images: Array) -> Array:
        """``images`` uint8 [N, H, W, C] -> probabilities float32 [N, H, W]."""
        out = self._fn(contracts.SEGMENTER_INPUT, self._tf.constant(images))
        mask = out[contracts.SEGMENTER_OUTPUT]
        if mask.shape != images.shape[:3]:
            raise ValueError(
                f"{self.model_dir!r} returned a mask shaped {mask.shape} for images shaped "
                f"{images.shape}; the segmenter contract wants [N, H, W]"
            )
        return mask


def predict(model: Callable[[Array], Array], images: Array, tta: str = "none") -> Array:
    """Runs ``model`` on a batch with test-time augmentation; float32 [N, H, W]."""
    if tta == "none":  # no sum, no division, no copy: the model's own array
        return np.asarray(model(images), dtype=np.float32)
    total = None
    augs = augmentations(tta)
    for forward, inverse in augs:
        # Each augmented batch is made contiguous: TF copies strided views anyway.
        out = inverse(model(np.ascontiguousarray(forward(images))))
        total = out.astype(np.float32) if total is None else total + out
    assert total is not None, "augmentations() always has the identity"
    return total / np.float32(len(augs))


@dataclasses.dataclass(frozen=True)
class InferenceFailure:
    """The model failed on this window (its message is in ``errors/``)."""

    message: str


#: What the segmenter handler predicts: a window and its uint8 image [size, size, bands].
WindowImage = tuple[WindowInput, Array]
#: Its prediction for one window: float32 probabilities [size, size], or why there are none.
WindowOutcome = tuple[WindowInput, Array | InferenceFailure]


class SegmenterModelHandler(ModelHandler[WindowImage, WindowOutcome, Segmenter | OnnxSegmenter]):
    """RunInference's seam to a segmenter SavedModel.

    Elements are ``(WindowInput, uint8 image [size, size, bands])``;
    predictions are ``(WindowInput, float32 [size, size])`` or
    ``(WindowInput, InferenceFailure)``.

    Args:
        model_dir: The SavedModel directory.
        tta: Test-time augmentation, one of :data:`TTA_MODES`.
        min_batch_size: Smallest batch ``BatchElements`` forms (except at a
            bundle's end).
        max_batch_size: Largest batch.
        serving_graph: ``frozen`` or ``saved`` (:mod:`pipeline.inference.serving`).
        accelerator: A Beam accelerator resource hint for the inference step
            (e.g. ``type:nvidia-l4;count:1;install-nvidia-driver``), or None
            for CPU. With it, one model copy per GPU is loaded per machine and
            shared by its processes.
        runtime: ``tensorflow`` (the SavedModel) or ``onnxruntime`` (its ONNX
            copy, :mod:`pipeline.inference.onnx_runtime`), already resolved.
        int8: With ``onnxruntime``: serve the int8 ONNX file.
    """

    def __init__(
        self,
        model_dir: str,
        *,
        tta: str = "none",
        serving_graph: str = "frozen",
        min_batch_size: int,
        max_batch_size: int,
        accelerator: str | None = None,
        runtime: str = runtimes.TENSORFLOW,
        int8: bool = False,
    ) -> None:
        if tta not in TTA_MODES:
            raise ValueError(f"tta {tta!r} is not one of {TTA_MODES}")
        if runtime not in CONCRETE_RUNTIMES:
            raise ValueError(f"runtime {runtime!r} is not one of {CONCRETE_RUNTIMES}")
        copies = handlers.accelerator_count(accelerator) if accelerator else None
        super().__init__(
            min_batch_size=min_batch_size, max_batch_size=max_batch_size, model_copies=copies
        )
        self._model_dir = model_dir
        self._tta = tta
        self._serving_graph = serving_graph
        self._accelerator = accelerator
        self._runtime = runtime
        self._int8 = int8

    def load_model(self) -> Segmenter | OnnxSegmenter:
        """Loads the segmenter: the SavedModel, or its ONNX copy on ONNX Runtime."""
        if self._runtime == runtimes.ONNXRUNTIME:
            return OnnxSegmenter(self._model_dir, self._int8)
        return Segmenter(self._model_dir, self._serving_graph)

    def run_inference(
        self,
        batch: Sequence[WindowImage],
        model: Segmenter | OnnxSegmenter,
        inference_args: dict[str, Any] | None = None,
    ) -> list[WindowOutcome]:
        """Predicts a batch of windows; on failure retries them one by one."""
        try:
            probabilities = predict(model, np.stack([image for _, image in batch]), self._tta)
        except Exception as exc:  # TF raises many types; each window gets its own verdict
            if len(batch) == 1:
                return [(batch[0][0], InferenceFailure(f"{type(exc).__name__}: {exc}"))]
            LOG.warning(
                "a batch of %d windows failed (%s); retrying them one by one", len(batch), exc
            )
            return [result for item in batch for result in self.run_inference([item], model)]
        return [(meta, p) for (meta, _), p in zip(batch, probabilities, strict=True)]

    def get_num_bytes(self, batch: Sequence[WindowImage]) -> int:
        """Size of a batch as its images' bytes (cheaper than the default's pickling)."""
        # The default pickles the whole batch just to measure it.
        return sum(image.nbytes for _, image in batch)

    def get_metrics_namespace(self) -> str:
        """Namespace of the RunInference metrics."""
        return NAMESPACE

    def get_resource_hints(self) -> dict[str, Any]:
        """Asks for the accelerator when one was given."""
        return {"accelerator": self._accelerator} if self._accelerator else {}


def _failed(
    meta: WindowInput, stage: str, message: str
) -> Iterator[CorePrediction | TaggedOutput[str, ErrorRecord]]:
    yield CorePrediction.missing(meta.plan, FAILED)
    yield beam.pvalue.TaggedOutput(
        ERRORS,
        ErrorRecord(
            source=meta.source,
            record=str(meta.plan.key),
            stage=stage,
            error=Reason.INFERENCE_FAILED,
            message=(
                f"the segmenter failed on window {meta.plan.key}: {message}; check that the "
                "model accepts any batch of uint8 windows of its window size"
            ),
        ),
    )


class _CropFn(beam.DoFn):
    def __init__(self) -> None:
        self._inferred = Metrics.counter(NAMESPACE, "windows_inferred")
        self._failed = Metrics.counter(NAMESPACE, "windows_inference_failed")

    def process(
        self, result: WindowOutcome
    ) -> Iterator[CorePrediction | TaggedOutput[str, ErrorRecord]]:
        meta, prediction = result
        if isinstance(prediction, InferenceFailure):
            self._failed.inc()
            yield from _failed(meta, "inference", prediction.message)
            return
        self._inferred.inc()
        yield CorePrediction.inferred(meta.plan, prediction, meta.valid)


@beam.typehints.with_input_types(WindowImage)
@dataclasses.dataclass
class RunSegmenter(DataclassTransform):
    """Predicts windows and crops each prediction to its core.

    Input: ``(WindowInput, uint8 image)``. Returns a tagged result: main
    :class:`~pipeline.values.CorePrediction` (``inferred`` or
    ``failed``), ``errors``: ErrorRecord for each failed window.
    """

    handler: SegmenterModelHandler

    def expand(self, windows: PCollection[WindowImage]) -> dict[str, PCollection[Any]]:
        """Predicts and crops; returns ``{"cores": ..., "errors": ...}``."""
        cropped = (
            windows
            | "RunInference" >> RunInference(self.handler)
            | "CropHalo" >> beam.ParDo(_CropFn()).with_outputs(ERRORS, main="cores")
        )
        return {"cores": cropped.cores, ERRORS: cropped[ERRORS]}
