"""Model handlers that score serialized chip records with a classifier.

The classifier contract (``footprints.contracts``) puts decoding, resizing
and normalization inside the model's graph, so the records go to the model
exactly as they were read: one ``tf.constant`` of strings per batch, no
per-element Python decode, no numpy pickling.

One seam per framework: a *scorer* is the loaded model with a single method,
``score(records) -> float32 array``. Two exist:

* :class:`SavedModelScorer` (``--model-format savedmodel``, the default):
  TF2 ``tf.saved_model.load`` and the ``serving_default`` signature.
* :class:`TfxScorer` (``--model-format tfx``): tfx-bsl's in-process model
  handler (a TF1 session over the signature), for TFX-trained models whose
  signature takes serialized ``tf.Example`` and may name its output
  differently.
* :class:`~pipeline.inference.onnx_runtime.OnnxClassifierScorer`
  (``--runtime onnxruntime``): the chips decoded in numpy (the same pixels as
  the SavedModel's graph, without importing TensorFlow), then the network's
  ONNX copy in ONNX Runtime.

:class:`ChipScoreHandler` is the Beam ``ModelHandler`` around either. It takes
``(ChipMeta, record)`` pairs, so the metadata rides along without a
``KeyedModelHandler`` (which pickles every batch's keys to count bytes), and
returns one element per batch, ``([ChipMeta], [outcome])`` where each
outcome is a float score or an :class:`InferenceFailure`: what follows
inference then works on whole batches (numpy) instead of paying Beam's
per-element cost at every stage. When a batch fails with a data error
(``InvalidArgumentError``: an image the in-graph decoder rejects), the batch
is split in halves until the bad records are alone, so only they are
dead-lettered (a scorer names its own data errors in ``data_errors``:
``ChipDecodeError`` on ONNX Runtime); any other error (a broken model, out of memory) fails the
bundle as usual, so a broken model cannot turn a job into silent dead
letters.

The model is loaded once per worker process in ``load_model`` and shared by
its threads (Beam's ``shared.Shared``); with ``model_copies`` set (one per
GPU), it is loaded in a separate process and shared by all processes on the
machine. Min and max batch sizes are always set explicitly: Beam's adaptive
batching collapses towards one element with a shared model otherwise, and
``max_batch_weight`` is never passed (it crashes ``BatchElements`` in 2.77).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from apache_beam.metrics.metric import Metrics
from apache_beam.ml.inference.base import ModelHandler

from footprints import contracts
from footprints.errors import ConfigError, ContractError, Reason
from pipeline import runtimes
from pipeline.inference.onnx_runtime import CONCRETE_RUNTIMES, classifier_scorer
from pipeline.inference.serving import ServingFunction
from pipeline.runtimes import MODEL_FORMATS
from pipeline.settings import SERVING_GRAPHS
from pipeline.values import ChipMeta

NAMESPACE = contracts.METRICS_SCORE
INFERENCE_STAGE = "inference"

_ACCELERATOR_RE = re.compile(r"^type:[A-Za-z0-9_.-]+;count:([1-9][0-9]*)(;[A-Za-z0-9_:.=-]+)*$")


class Scorer(Protocol):
    """A loaded classifier: serialized chip records in, one float32 score per record out.

    A scorer may also name the exceptions that mean "a record is bad"
    (``data_errors``); without them, TensorFlow's ``InvalidArgumentError``.
    """

    def score(self, records: Sequence[bytes]) -> np.ndarray:
        """float32 scores, one per record, in order."""
        ...


@dataclasses.dataclass(frozen=True)
class InferenceFailure:
    """Why one record got no score: its reason and a message for a person."""

    error: Reason
    message: str


def score_outcome(score: float) -> float | InferenceFailure:
    """A model's score for one record, or why it cannot be labelled.

    The classifier contract's ``score`` is a probability: NaN and infinity
    (``non_finite_score``) and anything outside [0, 1] (``score_out_of_range``:
    a logit, a percentage, a model without its final sigmoid) are dead letters,
    never labelled as if they ranked with the rest.

    Example: ``0.25`` -> ``0.25``; ``7.5`` -> ``InferenceFailure("score_out_of_range", ...)``.
    """
    if not math.isfinite(score):
        return InferenceFailure(
            Reason.NON_FINITE_SCORE,
            f"the model returned {score} for this record; check the model's input normalization",
        )
    if not 0.0 <= score <= 1.0:
        return InferenceFailure(
            Reason.SCORE_OUT_OF_RANGE,
            f"the model returned {score!r} for this record, outside [0, 1]; the classifier "
            f"contract's {contracts.CLASSIFIER_OUTPUT!r} is a probability: end the model with a "
            "sigmoid (or export it with `footprints train classifier`)",
        )
    return score


def enable_memory_growth() -> None:
    """Lets TensorFlow take GPU memory as needed instead of all of it up front.

    Without it the first model in a process reserves the whole GPU, and a
    second process on the same GPU fails to start.
    """
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # GPUs already initialized in this process
            logging.info("TensorFlow GPU memory growth could not be set; GPUs in use")


# The SavedModel last loaded in this process, by local directory: the flag check
# loads the model before the job starts, and on an in-process runner (the
# DirectRunner) the job's RunInference then scores with that same object instead
# of restoring the graph and its variables a second time (MobileNetV2: about 3 CPU
# seconds, and the first call's graph optimization again). One entry only, so a
# launcher that submits the job elsewhere holds at most one model.
_LOADED: dict[str, Any] = {}


def load_saved_model(local_dir: str) -> Any:
    """``tf.saved_model.load(local_dir)``, reusing this process's last load of it.

    Loaded SavedModels are immutable at serving time and their signatures are
    safe to call from several threads, so sharing one is what Beam's
    ``shared.Shared`` does within a worker anyway.
    """
    import tensorflow as tf

    key = os.path.realpath(local_dir)
    if key not in _LOADED:
        enable_memory_growth()  # before the first load touches the GPUs
        _LOADED.clear()
        _LOADED[key] = tf.saved_model.load(local_dir)
    return _LOADED[key]


class SavedModelScorer:
    """A TF2 SavedModel's ``serving_default``, called on a batch of records.

    Args:
        model_dir: The classifier SavedModel directory.
        serving_graph: ``frozen`` (the default: variables folded into constants,
            checked against the saved graph on the first batch) or ``saved``; see
            :mod:`pipeline.inference.serving`.
    """

    def __init__(self, model_dir: str, serving_graph: str = "frozen") -> None:
        import tensorflow as tf

        enable_memory_growth()
        self._fn = ServingFunction(
            load_saved_model(contracts.local_model_dir(model_dir)), serving_graph, NAMESPACE
        )
        self._tf = tf

    def score(self, records: Sequence[bytes]) -> np.ndarray:
        """Scores serialized chip records; returns float32 [len(records)]."""
        examples = self._tf.constant(list(records), dtype=self._tf.string)
        out = self._fn(contracts.CLASSIFIER_INPUT, examples)[contracts.CLASSIFIER_OUTPUT]
        return np.asarray(out, dtype=np.float32).reshape(-1)


class TfxScorer:
    """tfx-bsl's in-process SavedModel handler, reduced to one score per record."""

    def __init__(self, handler: ModelHandler[Any, Any, Any], output_key: str) -> None:
        enable_memory_growth()
        self._handler = handler
        self._session = handler.load_model()
        self._output_key = output_key

    def score(self, records: Sequence[bytes]) -> np.ndarray:
        """Scores serialized chip records; returns float32 [len(records)]."""
        import tensorflow as tf

        logs = self._handler.run_inference(list(records), self._session)
        out = [
            tf.make_ndarray(log.predict_log.response.outputs[self._output_key]).reshape(-1)[0]
            for log in logs
        ]
        return np.asarray(out, dtype=np.float32)


def _tfx_handler(
    model_dir: str, min_batch_size: int, max_batch_size: int
) -> ModelHandler[Any, Any, Any]:
    from tfx_bsl.public.beam.run_inference import CreateModelHandler
    from tfx_bsl.public.proto import model_spec_pb2

    spec = model_spec_pb2.InferenceSpecType(
        saved_model_spec=model_spec_pb2.SavedModelSpec(
            model_path=model_dir, signature_name=[contracts.SIGNATURE]
        )
    )
    spec.batch_parameters.min_batch_size = min_batch_size
    spec.batch_parameters.max_batch_size = max_batch_size
    handler: ModelHandler[Any, Any, Any] = CreateModelHandler(spec)
    return handler


def tfx_output_key(model_dir: str) -> str:
    """The output of a TFX model's ``serving_default`` that holds the score.

    ``score`` when the signature has it, else its only output.

    Raises:
        ContractError: if the signature is not ``examples``-like (one string
            input) or has several outputs and none is named ``score``.
    """
    import tensorflow as tf

    local = contracts.local_model_dir(model_dir)
    if not os.path.exists(os.path.join(local, "saved_model.pb")):
        raise ContractError(
            f"{model_dir!r} is not a SavedModel directory (no saved_model.pb); pass the "
            "directory the TFX Trainer or Pusher exported"
        )
    loaded = tf.saved_model.load(local)
    if contracts.SIGNATURE not in loaded.signatures:
        raise ContractError(f"SavedModel {model_dir!r} has no {contracts.SIGNATURE!r} signature")
    fn = loaded.signatures[contracts.SIGNATURE]
    _, inputs = fn.structured_input_signature
    if len(inputs) != 1 or next(iter(inputs.values())).dtype != tf.string:
        raise ContractError(
            f"{model_dir!r}: a TFX model's {contracts.SIGNATURE} must take one tf.string input "
            f"of serialized tf.Example, it takes {inputs}"
        )
    outputs = fn.structured_outputs
    if contracts.CLASSIFIER_OUTPUT in outputs:
        return contracts.CLASSIFIER_OUTPUT
    if len(outputs) == 1:
        only: str = next(iter(outputs))
        return only
    raise ContractError(
        f"{model_dir!r}: {contracts.SIGNATURE} returns {sorted(outputs)}; name the residential "
        f"probability {contracts.CLASSIFIER_OUTPUT!r} or return a single output"
    )


def check_model(
    model_dir: str, model_format: str, runtime: str = runtimes.TENSORFLOW, int8: bool = False
) -> None:
    """Raises ConfigError/ContractError unless ``model_dir`` can score chips.

    On ``onnxruntime`` the ONNX file is what serves, so it is the one checked
    (and its session kept for the job, :func:`onnx_runtime.classifier_scorer`):
    TensorFlow is not imported.
    """
    if model_format not in MODEL_FORMATS:
        raise ConfigError(f"--model-format {model_format!r} must be one of {MODEL_FORMATS}")
    if runtime == runtimes.ONNXRUNTIME:
        classifier_scorer(model_dir, int8)
    elif model_format == runtimes.TFX:
        tfx_output_key(model_dir)
    else:
        contracts.check_classifier_model(model_dir, load=load_saved_model)


def accelerator_count(accelerator: str) -> int:
    """Validates a Beam ``accelerator`` hint; returns its GPU count.

    Example: ``type:nvidia-tesla-t4;count:1;install-nvidia-driver`` -> 1.
    """
    match = _ACCELERATOR_RE.match(accelerator)
    if not match:
        raise ConfigError(
            f"--accelerator {accelerator!r} is not a Beam accelerator hint; write it as "
            "type:GPU_TYPE;count:N[;install-nvidia-driver], for example "
            "type:nvidia-tesla-t4;count:1;install-nvidia-driver"
        )
    return int(match.group(1))


def tf_error_reason(exc: Exception) -> str:
    """The line of a TensorFlow error that says what went wrong, without graph noise.

    Example: ``Graph execution error: ... Invalid PNG. Failed to initialize
    decoder. [[{{node ...}}]]`` -> ``Invalid PNG. Failed to initialize decoder.``
    """
    text = getattr(exc, "message", None) or str(exc)
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(noise):
            return line
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


#: What the handler scores: a chip's metadata and its serialized record.
ChipRecord = tuple[ChipMeta, bytes]
#: What it returns for a whole batch: the metas and each one's score or failure, in order.
BatchOutcomes = tuple[list[ChipMeta], list[float | InferenceFailure]]


class ChipScoreHandler(ModelHandler[ChipRecord, BatchOutcomes, Scorer]):
    """Scores ``(ChipMeta, serialized record)`` pairs with a classifier.

    Args:
        model_dir: The classifier SavedModel directory.
        min_batch_size: Smallest batch handed to the model (the last batch of
            a bundle may still be smaller).
        max_batch_size: Largest batch handed to the model.
        model_format: ``savedmodel`` (TF2 signature) or ``tfx`` (tfx-bsl).
        accelerator: A Beam accelerator resource hint for the inference
            step, or None for CPU.
        model_copies: Load this many copies per machine, shared by all its
            worker processes (one per GPU); None loads one per process.
        serving_graph: ``frozen`` or ``saved`` (:mod:`pipeline.inference.serving`);
            the ``tfx`` format always runs its own session over the saved graph.
        runtime: ``tensorflow`` or ``onnxruntime``, already resolved
            (:func:`~pipeline.inference.onnx_runtime.resolve_runtime`).
        int8: With ``onnxruntime``: serve the int8 ONNX file.
    """

    def __init__(
        self,
        model_dir: str,
        *,
        min_batch_size: int,
        max_batch_size: int,
        model_format: str = runtimes.SAVEDMODEL,
        accelerator: str | None = None,
        model_copies: int | None = None,
        serving_graph: str = "frozen",
        runtime: str = runtimes.TENSORFLOW,
        int8: bool = False,
    ) -> None:
        if not 1 <= min_batch_size <= max_batch_size:
            raise ConfigError(
                f"batch sizes must satisfy 1 <= min ({min_batch_size}) <= max "
                f"({max_batch_size}); set --min-batch-size no larger than --batch-size"
            )
        if model_format not in MODEL_FORMATS:
            raise ConfigError(f"model format {model_format!r} must be one of {MODEL_FORMATS}")
        if serving_graph not in SERVING_GRAPHS:
            raise ConfigError(f"serving graph {serving_graph!r} must be one of {SERVING_GRAPHS}")
        if runtime not in CONCRETE_RUNTIMES or (
            runtime != runtimes.TENSORFLOW and model_format == runtimes.TFX
        ):
            raise ConfigError(
                f"runtime {runtime!r} must be one of {CONCRETE_RUNTIMES} (tensorflow for tfx "
                "models); resolve --runtime auto with onnx_runtime.resolve_runtime first"
            )
        super().__init__(
            min_batch_size=min_batch_size, max_batch_size=max_batch_size, model_copies=model_copies
        )
        self._runtime = runtime
        self._int8 = int8
        self._model_dir = model_dir
        self._model_format = model_format
        self._accelerator = accelerator
        self._serving_graph = serving_graph
        self._tfx: ModelHandler[Any, Any, Any] | None = None
        self._tfx_key: str | None = None
        if model_format == runtimes.TFX:
            # Built here so a bad model fails at construction, before the job runs.
            self._tfx = _tfx_handler(model_dir, min_batch_size, max_batch_size)
            self._tfx_key = tfx_output_key(model_dir)
        self._batch_sizes = Metrics.distribution(NAMESPACE, "batch_size")
        self._isolated = Metrics.counter(NAMESPACE, "records_isolated_by_bisection")

    def load_model(self) -> Scorer:
        """Loads the model; Beam calls this once per process (or per copy)."""
        if self._tfx is not None and self._tfx_key is not None:  # the tfx format
            return TfxScorer(self._tfx, self._tfx_key)
        if self._runtime == runtimes.ONNXRUNTIME:
            return classifier_scorer(self._model_dir, self._int8)
        return SavedModelScorer(self._model_dir, self._serving_graph)

    def run_inference(
        self,
        batch: Sequence[ChipRecord],
        model: Scorer,
        inference_args: dict[str, Any] | None = None,
    ) -> list[BatchOutcomes]:
        """Scores a batch; returns ONE element: ``(metas, outcomes)`` for the whole batch.

        Each outcome is a score or an :class:`InferenceFailure`, in batch order.
        Returning the batch as one element (RunInference emits what this
        returns) keeps the stages after inference per batch, not per chip.
        """
        self._batch_sizes.update(len(batch))
        records = [record for _, record in batch]
        return [([meta for meta, _ in batch], self._score_isolating(model, records))]

    def _score_isolating(
        self, model: Scorer, records: list[bytes]
    ) -> list[float | InferenceFailure]:
        data_errors = getattr(model, "data_errors", None)
        if data_errors is None:  # the TensorFlow scorers: a record the graph cannot decode
            import tensorflow as tf

            data_errors = (tf.errors.InvalidArgumentError,)
        try:
            scores = model.score(records)
        except data_errors as exc:
            if len(records) == 1:
                self._isolated.inc()
                return [
                    InferenceFailure(
                        Reason.MODEL_REJECTED_RECORD,
                        f"the model could not score this record: {tf_error_reason(exc)} "
                        "The image is probably damaged inside its pixel data; re-encode the chip.",
                    )
                ]
            half = len(records) // 2
            return self._score_isolating(model, records[:half]) + self._score_isolating(
                model, records[half:]
            )
        if len(scores) != len(records):
            raise ContractError(
                f"the model returned {len(scores)} scores for {len(records)} records; its "
                f"{contracts.CLASSIFIER_OUTPUT!r} output must have one value per input record"
            )
        return [score_outcome(s) for s in scores.tolist()]

    def get_num_bytes(self, batch: Sequence[ChipRecord]) -> int:
        """Size of a batch as its records' bytes (cheaper than the default's pickling)."""
        # The default pickles the whole batch just to measure it.
        return sum(len(record) for _, record in batch)

    def get_metrics_namespace(self) -> str:
        """Namespace of the RunInference metrics."""
        return NAMESPACE

    def get_resource_hints(self) -> dict[str, Any]:
        """Asks for the accelerator when one was given."""
        return {"accelerator": self._accelerator} if self._accelerator else {}

    def __repr__(self) -> str:
        return (
            f"ChipScoreHandler({self._model_dir!r}, format={self._model_format}, "
            f"runtime={self._runtime}{'/int8' if self._int8 else ''}, "
            f"batch={self.batch_elements_kwargs()})"
        )
