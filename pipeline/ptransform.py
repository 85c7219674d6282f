"""The one way to declare a PTransform with settings: a dataclass over :class:`DataclassTransform`.

A dataclass's generated ``__init__`` does not call ``beam.PTransform.__init__``
(which sets the label and the side-input bookkeeping Beam needs), so every
dataclass transform used to carry its own ``__post_init__`` calling
``super().__init__()``. The base class does it once::

    @beam.typehints.with_input_types(WrittenMask)
    @dataclasses.dataclass
    class WriteMasks(DataclassTransform):
        directory: str

        def expand(self, masks: PCollection[WrittenMask]) -> PCollection[str]: ...

A transform that checks its settings defines ``__post_init__`` and calls
``super().__post_init__()`` first.

The element types are each subclass's. ``expand``'s annotations are for mypy:
under ``from __future__ import annotations`` Beam reads them as strings and
ignores them. Beam checks, when the pipeline is built, the input type given by
``@beam.typehints.with_input_types``. Output hints are left out on purpose: an
output hint on a composite transform becomes its PCollection's element type,
and so its coder (``str`` -> ``StrUtf8Coder``, ``list[str]`` -> ``ListCoder``,
where an unhinted PCollection is pickled), which would change what crosses a
shuffle.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam


class DataclassTransform(beam.PTransform[Any, Any]):
    """Base of dataclass PTransforms: initializes the PTransform after the fields are set."""

    def __post_init__(self) -> None:
        """Runs ``beam.PTransform.__init__`` (the dataclass ``__init__`` does not)."""
        super().__init__()
