"""The one way to declare a PTransform with settings: a dataclass over :class:`DataclassTransform`.

A dataclass's generated ``__init__`` does not call ``beam.PTransform.__init__``
(which sets the label and the side-input bookkeeping Beam needs), so every
dataclass transform used to carry its own ``__post_init__`` calling
``super().__init__()``. The base class does it once::

    @dataclasses.dataclass
    class WriteMasks(DataclassTransform):
        directory: str

        def expand(self, masks): ...

A transform that checks its settings defines ``__post_init__`` and calls
``super().__post_init__()`` first.
"""

from __future__ import annotations

import apache_beam as beam


class DataclassTransform(beam.PTransform):
    """Base of dataclass PTransforms: initializes the PTransform after the fields are set."""

    def __post_init__(self) -> None:
        """Runs ``beam.PTransform.__init__`` (the dataclass ``__init__`` does not)."""
        super().__init__()
