"""The model runtimes and formats, in one registry: what ``--runtime`` and ``--model-format`` name.

``footprints score`` and ``footprints segment`` serve their model with one of
:data:`RUNTIMES`, or ``auto`` (:data:`AUTO`: ONNX Runtime when the model folder
has its ONNX copy and the package is installed, else TensorFlow; resolved by
:func:`pipeline.inference.onnx_runtime.resolve_runtime`). The flag's choices
(``footprints_app/commands/_flags.py``), the checks of the configs and
handlers (``pipeline.inference``) and the table in docs/architecture.md ("a
model runtime") all read this registry, so a runtime is added here once.

The classifier's model formats (``--model-format`` of ``footprints score``)
are :data:`MODEL_FORMATS`, read the same way by the flag and by
:func:`pipeline.inference.handlers.check_model`.

Plain data, importable without Beam or TensorFlow: the command line reads it
while it builds ``--help``.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Runtime:
    """One way to serve a SavedModel's signature.

    Attributes:
        name: The ``--runtime`` value.
        package: The Python package it needs on the workers.
        serves: What of the model folder it runs (for the docs and ``--help``).
    """

    name: str
    package: str
    serves: str


TENSORFLOW = "tensorflow"
ONNXRUNTIME = "onnxruntime"
#: ``--runtime auto``: the best runtime the model folder and the installed packages allow.
AUTO = "auto"

#: The runtimes by name, TensorFlow (every model can use it) first.
RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime(TENSORFLOW, "tensorflow", "the SavedModel"),
        Runtime(ONNXRUNTIME, "onnxruntime", "the ONNX copy (decoding stays in TensorFlow)"),
    )
}

#: The ``--runtime`` choices: ``auto``, then every runtime.
CHOICES: tuple[str, ...] = (AUTO, *RUNTIMES)

#: The classifier's model formats: ``savedmodel``, the TF2 signature of the classifier
#: contract (the default); ``tfx``, tfx-bsl's handler for TFX-trained models.
SAVEDMODEL = "savedmodel"
TFX = "tfx"
MODEL_FORMATS: tuple[str, ...] = (SAVEDMODEL, TFX)
