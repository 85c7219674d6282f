"""Typed stage boundaries (issue 25 item 5): Beam checks a stage's input type when the job is built.

``expand``'s annotations are for mypy only: the modules use ``from __future__ import
annotations``, so Beam reads them as strings and ignores them. The element type Beam
checks is the ``@beam.typehints.with_input_types`` on the class. These tests hold the
two to the same type, and show that a stage fed the wrong elements fails while the
pipeline is built, before anything runs.
"""

from __future__ import annotations

import inspect
import typing

import apache_beam as beam
import pytest
from apache_beam.pvalue import PCollection
from apache_beam.typehints.decorators import TypeCheckError, get_type_hints
from apache_beam.typehints.native_type_compatibility import convert_to_beam_type

from footprints.contracts import ErrorRecord
from footprints.errors import Reason
from pipeline.inference import ChipScoreHandler, ScoreRecords
from pipeline.inference.segmenter import RunSegmenter, SegmenterModelHandler
from pipeline.sources.rasters import ReadWindows, ValidateTiles
from pipeline.stitching.transforms import PlanWindows
from pipeline.writers.chips import WriteChips
from pipeline.writers.files import RemoveStaleShards
from pipeline.writers.masks import WriteMasks
from pipeline.writers.tables import WriteErrors, WriteGeoTable, WriteTable, _FinishTable

HINTED = [
    ValidateTiles,
    ReadWindows,
    PlanWindows,
    WriteMasks,
    WriteChips,
    RemoveStaleShards,
    _FinishTable,
    WriteTable,
    WriteErrors,
    WriteGeoTable,
    ScoreRecords,
    RunSegmenter,
]


@pytest.mark.parametrize("transform", HINTED, ids=lambda t: t.__name__)
def test_beam_input_hint_is_the_element_type_expand_is_annotated_with(transform):
    self_, elements = inspect.signature(transform.expand).parameters
    assert self_ == "self"
    annotation = typing.get_type_hints(transform.expand)[elements]
    assert typing.get_origin(annotation) is PCollection, annotation
    (element,) = typing.get_args(annotation)
    inputs = get_type_hints(transform).input_types
    assert inputs is not None, f"{transform.__name__} has no Beam input type hint"
    assert inputs[0][0] == convert_to_beam_type(element)


def _error() -> ErrorRecord:
    return ErrorRecord("a.gpkg", "fp-1", "chip", Reason.READ_FAILED, "could not read")


def test_a_stage_fed_the_wrong_elements_fails_when_the_job_is_built(tmp_path):
    pipeline = beam.Pipeline()
    numbers = pipeline | "Numbers" >> beam.Create([1, 2])
    with pytest.raises(TypeCheckError, match="WriteErrors"):
        numbers | "WriteErrors" >> WriteErrors(str(tmp_path / "errors"))


def test_a_stage_fed_its_own_elements_is_built(tmp_path):
    pipeline = beam.Pipeline()
    errors = pipeline | "Errors" >> beam.Create([_error()])
    written = errors | "WriteErrors" >> WriteErrors(str(tmp_path / "errors"))
    assert isinstance(written, PCollection)


@pytest.mark.parametrize(
    "stage",
    [
        # Neither handler loads its model before the job runs; the directory is never read.
        lambda: ScoreRecords(ChipScoreHandler("unread", min_batch_size=1, max_batch_size=2)),
        lambda: RunSegmenter(SegmenterModelHandler("unread", min_batch_size=1, max_batch_size=2)),
    ],
    ids=["ScoreRecords", "RunSegmenter"],
)
def test_an_inference_stage_fed_bare_records_fails_when_the_job_is_built(stage):
    # Records without their metadata (ChipMeta, WindowInput): the pairs the handlers take.
    pipeline = beam.Pipeline()
    records = pipeline | "Records" >> beam.Create([b"a record", b"another"])
    with pytest.raises(TypeCheckError, match="Infer"):
        records | "Infer" >> stage()
