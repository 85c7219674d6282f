"""The ONNX Runtime seam: ``--runtime onnxruntime`` for ``score`` and ``segment``.

A model folder may hold, beside ``saved_model.pb``, the ONNX copy of its
network (:data:`footprints.contracts.ONNX_MODEL`, written by training or by
``footprints convert onnx``) and its int8 twin
(:data:`footprints.contracts.ONNX_INT8_MODEL`). The runtime is chosen once,
before the job starts (:func:`resolve_runtime`): ``auto`` takes ONNX Runtime
when the folder has the ONNX file and ``onnxruntime`` is installed, and
TensorFlow otherwise.

Both scorers here have the methods of their TensorFlow twins, so the model
handlers stay the one seam per runtime:

* :class:`OnnxClassifierScorer`: the chips are decoded without TensorFlow
  (:mod:`pipeline.inference.chip_decode`: the same pixels as the SavedModel's
  decoding graph, a damaged record raises ``ChipDecodeError`` and is isolated
  and dead-lettered as on the TensorFlow runtime), so a worker on this
  runtime never imports TensorFlow; the network and the calibration run in
  ONNX Runtime. ``decode="tensorflow"`` runs the SavedModel's own decoding
  (its frozen ``serving_default`` pruned at the cut the ONNX file names)
  instead, for comparison.
* :class:`OnnxSegmenter`: the whole segmenter on uint8 windows.

Sessions are set up for a worker that also decodes and stitches on the same
cores (:class:`SessionRunner`, :func:`session_options`). On the CPU each batch
is cut into as many parts as the worker has cores (``FOOTPRINTS_ORT_THREADS``
to change it) and the parts run at once, each a single-threaded run of the
same session on its own core: one thread per run does the same work with
no hand-offs between threads at every operator, which is 9-15 % less CPU per
chip in the network than one run on two intra-op threads, and under load
the gap grows (the intra-op threads wait for each other's core; issue 24,
benchmarks/README.md). Threads sleep instead of spinning between runs
(spinning threads took the cores the decoding needed: 265-726 chips/s
against a steady 800 on two cores), execution is sequential (these graphs
are chains) and every graph optimization is on. Measured and not taken
(``ort_variants.py``): a model optimized offline, an NCHW input without
tf2onnx's Transpose (ONNX Runtime already folds it into its NCHWc reorder).
GPU workers: the CUDA provider is used when ``onnxruntime-gpu`` offers it,
one run per batch; ``FOOTPRINTS_ORT_PROVIDERS`` picks providers explicitly (for example
``TensorrtExecutionProvider,CUDAExecutionProvider,CPUExecutionProvider``),
see docs/deploy.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from footprints import contracts
from footprints.errors import ConfigError, ContractError
from pipeline import runtimes

#: ``--runtime`` choices (the registry: :mod:`pipeline.runtimes`).
RUNTIMES = runtimes.CHOICES
#: What ``auto`` resolves to.
CONCRETE_RUNTIMES = tuple(runtimes.RUNTIMES)
#: Environment variables a deployment may set on the workers.
THREADS_ENV = "FOOTPRINTS_ORT_THREADS"
PROVIDERS_ENV = "FOOTPRINTS_ORT_PROVIDERS"
#: GPU providers used when present, best first (TensorRT only when named in PROVIDERS_ENV:
#: it builds an engine per new batch shape, minutes on a cold worker).
GPU_PROVIDERS = ("CUDAExecutionProvider",)


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` can be imported here."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_file(model_dir: str, int8: bool = False) -> str:
    """The path of the model's ONNX (or int8 ONNX) file, in its local copy."""
    name = contracts.ONNX_INT8_MODEL if int8 else contracts.ONNX_MODEL
    return os.path.join(contracts.local_model_dir(model_dir), name)


def check_int8(model_dir: str, allow_inexact: bool) -> None:
    """Refuses an int8 model its card does not vouch for, unless ``allow_inexact``.

    Raises:
        ConfigError: if the card has no int8 verdict or says the int8 model
            was not within tolerance of the fp32 one.
    """
    int8 = contracts.read_model_card(model_dir).get("onnx", {}).get("int8", {})
    if int8.get("within_tolerance") is True or allow_inexact:
        return
    if not int8:
        why = "its model card has no onnx.int8 verdict"
    else:
        why = f"its model card says the int8 model is not within tolerance ({int8.get('why')})"
    raise ConfigError(
        f"--int8: {model_dir!r} cannot be served in int8 as it is: {why}; serve it in fp32 "
        "(leave out --int8) or pass --allow-inexact-int8 to accept its answers anyway"
    )


def _has_file(model_dir: str, name: str) -> bool:
    """Whether ``model_dir`` holds ``name``, without copying a remote model to find out."""
    if "://" in model_dir:
        from apache_beam.io.filesystems import FileSystems

        return bool(FileSystems.exists(model_dir.rstrip("/") + "/" + name))
    return os.path.exists(os.path.join(model_dir, name))


def resolve_runtime(
    model_dir: str, runtime: str, *, int8: bool = False, model_format: str = "savedmodel"
) -> str:
    """``tensorflow`` or ``onnxruntime``: what ``--runtime`` means for this model here.

    Raises:
        ConfigError: an unknown runtime, or ``onnxruntime`` asked for (or implied
            by ``int8``) where the ONNX file or the package is missing.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime!r} must be one of {RUNTIMES}")
    if int8 and runtime == "tensorflow":
        raise ConfigError("--int8 runs an ONNX model; use it with --runtime auto or onnxruntime")
    if model_format != "savedmodel":
        if runtime == "onnxruntime" or int8:
            raise ConfigError(
                f"--runtime onnxruntime serves SavedModels with an ONNX copy, not "
                f"--model-format {model_format}"
            )
        return "tensorflow"
    if runtime == "tensorflow":
        return runtime
    name = contracts.ONNX_INT8_MODEL if int8 else contracts.ONNX_MODEL
    have_file = _has_file(model_dir, name)
    have_package = onnxruntime_available()
    if runtime == "auto" and not int8:
        return "onnxruntime" if have_file and have_package else "tensorflow"
    if not have_file:
        raise ConfigError(
            f"--runtime onnxruntime: {model_dir!r} has no {name}; write it "
            f"with `footprints convert onnx {model_dir}`"
            + (" --int8 --calibration-chips ..." if int8 else "")
            + " or use --runtime tensorflow"
        )
    if not have_package:
        raise ConfigError(
            "--runtime onnxruntime needs the onnxruntime package; `pip install onnxruntime` "
            "(or onnxruntime-gpu on GPU workers) or use --runtime tensorflow"
        )
    return "onnxruntime"


def providers() -> list[str]:
    """Execution providers, best first: ``FOOTPRINTS_ORT_PROVIDERS``, else CUDA if offered, CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    named = [p.strip() for p in os.environ.get(PROVIDERS_ENV, "").split(",") if p.strip()]
    if named:
        missing = [p for p in named if p not in available]
        if missing:
            raise ConfigError(
                f"{PROVIDERS_ENV} names {missing}, which this onnxruntime does not offer "
                f"({available}); install onnxruntime-gpu for CUDA and TensorRT"
            )
        return named
    return [p for p in GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]


def cpu_cores() -> int:
    """Cores a worker's network runs on: ``FOOTPRINTS_ORT_THREADS``, else all of them."""
    env = os.environ.get(THREADS_ENV)
    if env is None:
        return os.cpu_count() or 1
    if not env.strip().isdigit() or int(env) < 1:
        raise ConfigError(f"{THREADS_ENV}={env!r} must be a whole number of cores, at least 1")
    return int(env)


def session_options(threads: int | None = None) -> Any:
    """Session options for a worker that decodes on the same cores (see the module doc).

    Args:
        threads: Intra-op threads of one run (default: :func:`cpu_cores`).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only; the providers' warnings are for developers
    return options


class SessionRunner:
    """An ONNX Runtime session that runs a batch as single-threaded parts at once.

    On the CPU provider a batch is cut into :func:`cpu_cores` parts (along its
    first axis) that run concurrently on a thread pool, each a one-thread run
    of the one session (ONNX Runtime sessions may run from several threads);
    their outputs are joined in order, so the result is the whole batch's.
    On a GPU provider, or with ``threads`` given, a batch is one run with
    that many intra-op threads (``threads``: what benchmarks compare against).

    Args:
        path: The ONNX file.
        threads: Intra-op threads of one whole-batch run, or None for the parts.
    """

    def __init__(self, path: str, threads: int | None = None):
        import onnxruntime as ort

        if not os.path.exists(path):
            raise ContractError(f"{path!r} does not exist; write it with `footprints convert onnx`")
        chosen = providers()
        on_cpu = chosen[0] == "CPUExecutionProvider"
        self.parts = cpu_cores() if on_cpu and threads is None else 1
        intra = threads or (1 if self.parts > 1 else None)
        self.session = ort.InferenceSession(path, session_options(intra), providers=chosen)
        self._pool: ThreadPoolExecutor | None = None

    def run(self, name: str, batch: np.ndarray) -> np.ndarray:
        """The session's first output for ``batch`` fed to input ``name``."""
        parts = min(self.parts, len(batch))
        if parts <= 1:
            return np.asarray(self.session.run(None, {name: batch})[0])
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parts, thread_name_prefix="onnxruntime")
        outputs = self._pool.map(
            lambda part: self.session.run(None, {name: part})[0], np.array_split(batch, parts)
        )
        return np.concatenate(list(outputs))


def _saved_decode_function(path: str, images: str, valid: str) -> Any:
    """The decoding :data:`~footprints.contracts.ONNX_DECODE_GRAPH` holds, as a function."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    (feed,) = [n.name for n in graph_def.node if n.op == "Placeholder"]
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.compat.v1.import_graph_def(graph_def, name=""), []
    )
    pruned = wrapped.prune(
        wrapped.graph.get_tensor_by_name(feed + ":0"),
        [wrapped.graph.get_tensor_by_name(n) for n in (images, valid)],
    )
    return tf.function(lambda x: pruned(x), input_signature=[tf.TensorSpec([None], tf.string)])


def _decode_function(loaded: Any, images: str, valid: str) -> Any:
    """The SavedModel's decoding: its frozen signature pruned to ``(images, valid)``."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    saved = loaded.signatures[contracts.SIGNATURE]
    frozen = convert_variables_to_constants_v2(saved)
    (feed,) = [t for t in frozen.inputs if t.dtype == tf.string]
    pruned = frozen.prune(feed, [frozen.graph.get_tensor_by_name(n) for n in (images, valid)])
    return tf.function(lambda x: pruned(x), input_signature=[tf.TensorSpec([None], tf.string)])


#: ``decode`` choices of :class:`OnnxClassifierScorer`.
DECODERS = ("python", "tensorflow")


class OnnxClassifierScorer:
    """Decodes the chips (without TensorFlow by default), scores in ONNX Runtime.

    Args:
        model_dir: The classifier model folder (SavedModel and ONNX file).
        int8: Serve ``model.int8.onnx`` instead of ``model.onnx``.
        threads: ONNX Runtime intra-op threads (default: see :func:`session_options`).
        decode: ``python`` (the default: :class:`pipeline.inference.chip_decode.ChipDecoder`,
            the same pixels without importing TensorFlow) or ``tensorflow`` (the
            SavedModel's own decoding graph, for comparison).
    """

    #: Errors of a batch that mean "a record in it is bad" (split and dead-letter it).
    data_errors: tuple[type[Exception], ...]

    def __init__(
        self,
        model_dir: str,
        int8: bool = False,
        threads: int | None = None,
        decode: str = "python",
    ):
        if decode not in DECODERS:
            raise ConfigError(f"decode {decode!r} must be one of {DECODERS}")
        self.runner = SessionRunner(onnx_file(model_dir, int8), threads)
        session = self.runner.session
        meta = session.get_modelmeta().custom_metadata_map
        keys = contracts.ONNX_DECODE_KEYS
        if meta.get("kind") != "classifier" or any(k not in meta for k in keys):
            raise ContractError(
                f"{onnx_file(model_dir, int8)!r} is not a classifier's ONNX copy (its metadata "
                f"lacks {keys}); rewrite it with `footprints convert onnx {model_dir}`"
            )
        self._input = session.get_inputs()[0].name
        if decode == "python":
            from pipeline.inference.chip_decode import ChipDecodeError, ChipDecoder

            self._decode = ChipDecoder(_image_size(session, model_dir))
            self.data_errors = (ChipDecodeError,)
        else:
            self._decode = _tf_decoder(model_dir, meta[keys[0]], meta[keys[1]])
            import tensorflow as tf

            self.data_errors = (tf.errors.InvalidArgumentError,)

    def decode(self, records: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """float32 images [N, S, S, 3] and the "decodable" mask [N] of serialized records."""
        return self._decode(records)

    def score(self, records: Sequence[bytes]) -> np.ndarray:
        """Scores serialized chip records; returns float32 [len(records)] (NaN: not an image)."""
        if not records:  # an empty batch: nothing to decode or run
            return np.zeros(0, np.float32)
        images, valid = self.decode(records)
        scores = np.asarray(self.runner.run(self._input, images), np.float32).reshape(-1)
        return np.where(valid, scores, np.float32(np.nan))


# The ONNX classifier last opened in this process, as :data:`handlers._LOADED` keeps
# the last SavedModel: the flag check opens it before the job starts, and on an
# in-process runner the job scores with that same session (ONNX Runtime sessions
# are safe to run from several threads). One entry only.
_SCORERS: dict[tuple[str, bool], OnnxClassifierScorer] = {}


def classifier_scorer(model_dir: str, int8: bool = False) -> OnnxClassifierScorer:
    """:class:`OnnxClassifierScorer` of ``model_dir``, reusing this process's last one."""
    key = (os.path.realpath(onnx_file(model_dir, int8)), int8)
    if key not in _SCORERS:
        _SCORERS.clear()
        _SCORERS[key] = OnnxClassifierScorer(model_dir, int8)
    return _SCORERS[key]


def _image_size(session: Any, model_dir: str) -> int:
    """The classifier's input size S from its ONNX input ``[N, S, S, 3]``."""
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or not isinstance(shape[1], int) or shape[1] != shape[2]:
        raise ContractError(
            f"{onnx_file(model_dir)!r} takes images shaped {shape}, not [N, S, S, 3] with a "
            f"fixed S; rewrite it with `footprints convert onnx {model_dir}`"
        )
    return shape[1]


def _tf_decoder(model_dir: str, images: str, valid: str) -> Any:
    """The model's decoding in TensorFlow, called on a batch of records: ``(images, valid)``."""
    import tensorflow as tf

    from pipeline.inference.handlers import load_saved_model

    decode_graph = os.path.join(contracts.local_model_dir(model_dir), contracts.ONNX_DECODE_GRAPH)
    if os.path.exists(decode_graph):  # the decoding alone: no variables to restore
        fn = _saved_decode_function(decode_graph, images, valid)
    else:  # cut from the SavedModel's own graph
        fn = _decode_function(load_saved_model(contracts.local_model_dir(model_dir)), images, valid)

    def decode(records: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        out_images, out_valid = fn(tf.constant(list(records), dtype=tf.string))
        return out_images.numpy(), out_valid.numpy()

    return decode


class OnnxSegmenter:
    """A segmenter's ONNX copy, called on uint8 windows as the TensorFlow ``Segmenter`` is."""

    def __init__(self, model_dir: str, int8: bool = False, threads: int | None = None):
        self.model_dir = model_dir
        self.runner = SessionRunner(onnx_file(model_dir, int8), threads)
        self._input = self.runner.session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``images`` uint8 [N, H, W, C] -> probabilities float32 [N, H, W]."""
        if not len(images):
            return np.zeros(images.shape[:3], np.float32)
        mask = self.runner.run(self._input, np.ascontiguousarray(images))
        if mask.shape != images.shape[:3]:
            raise ValueError(
                f"{self.model_dir!r} (ONNX) returned a mask shaped {mask.shape} for images "
                f"shaped {images.shape}; the segmenter contract wants [N, H, W]"
            )
        return np.asarray(mask)
