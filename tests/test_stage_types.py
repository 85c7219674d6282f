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
from fractions import Fraction

import apache_beam as beam
import pytest
from apache_beam.pvalue import PCollection
from apache_beam.typehints.decorators import TypeCheckError, get_type_hints
from apache_beam.typehints.native_type_compatibility import convert_to_beam_type

from footprints.contracts import ErrorRecord
from footprints.errors import Reason
from pipeline.inference import ChipScoreHandler, ScoreRecords
from pipeline.inference.segmenter import RunSegmenter, SegmenterModelHandler
from pipeline.polygonize import Polygonize
from pipeline.sources.rasters import ReadWindows, ValidateTiles
from pipeline.stitching.transforms import PlanWindows
from pipeline.thresholds import LabelChipsFn, LabelExactFraction, SplitByBracketFn
from pipeline.thresholds.fractions import RegionFractions
from pipeline.values import ScoredBatch, WrittenMask
from pipeline.writers.chips import WriteChips
from pipeline.writers.files import RemoveStaleShards
from pipeline.writers.masks import WriteMasks
from pipeline.writers.scores import WriteCsv, WriteScoresBigQuery
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
    LabelExactFraction,
    Polygonize,
    WriteCsv,
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


def _stages(tmp_path):
    return {
        "LabelExactFraction": LabelExactFraction(
            RegionFractions(Fraction(1, 2)), spill_dir=str(tmp_path / "spill")
        ),
        "Polygonize": Polygonize(threshold=0.5, simplify_pixels=1.0, min_area_m2=0.0),
        "WriteCsv": WriteCsv(str(tmp_path / "rows.csv")),
        "WriteScoresBigQuery": WriteScoresBigQuery("project:dataset.table"),
    }


@pytest.mark.parametrize(
    "name", ["LabelExactFraction", "Polygonize", "WriteCsv", "WriteScoresBigQuery"]
)
def test_a_stage_applied_to_the_wrong_type_fails_when_the_job_is_built(tmp_path, name):
    p = beam.Pipeline()
    numbers = p | beam.Create([1, 2]).with_output_types(int)
    with pytest.raises(TypeCheckError, match=name):
        _ = numbers | name >> _stages(tmp_path)[name]


@pytest.mark.parametrize(
    "name", ["LabelExactFraction", "Polygonize", "WriteCsv", "WriteScoresBigQuery"]
)
def test_a_stage_takes_a_pcollection_of_unknown_type(tmp_path, name):
    p = beam.Pipeline()
    _ = p | beam.Create([]) | name >> _stages(tmp_path)[name]


def test_the_stages_build_on_their_declared_input_types(tmp_path):
    # The hint agrees with every step inside the stage (Beam checks each one).
    stages = _stages(tmp_path)
    p = beam.Pipeline()
    _ = (
        p
        | "Batches" >> beam.Create([]).with_output_types(ScoredBatch)
        | stages["LabelExactFraction"]
    )
    _ = p | "Masks" >> beam.Create([]).with_output_types(WrittenMask) | stages["Polygonize"]
    _ = p | "Rows" >> beam.Create([]).with_output_types(dict[str, int]) | stages["WriteCsv"]


@pytest.mark.parametrize("fn", [SplitByBracketFn, LabelChipsFn])
def test_the_spill_passes_read_file_names(fn):
    p = beam.Pipeline()
    plans = beam.pvalue.AsDict(p | "Plans" >> beam.Create([("r", None)]))
    bracket = beam.pvalue.AsIter(p | "Bracket" >> beam.Create([]))
    sides = [plans] if fn is SplitByBracketFn else [plans, plans, bracket]
    numbers = p | "Numbers" >> beam.Create([1]).with_output_types(int)
    with pytest.raises(TypeCheckError, match="str"):
        _ = numbers | "Pass" >> beam.ParDo(fn(), *sides)
    paths = p | "Paths" >> beam.Create(["a.parquet"]).with_output_types(str)
    _ = paths | "PassPaths" >> beam.ParDo(fn(), *sides)
