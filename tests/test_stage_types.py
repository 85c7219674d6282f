"""Stage boundaries carry Beam type hints, which Beam checks when the pipeline is built.

Each stage transform declares what it takes (``with_input_types``), so a
stage applied to the wrong kind of PCollection fails while the job is built,
naming the stage, instead of deep inside a worker. A PCollection whose type
Beam does not know (``Any``: most of ours) passes, as before the hints; one
declared with the stage's own type passes too, through every step inside it.
Nothing here runs a pipeline.
"""

from __future__ import annotations

from fractions import Fraction

import apache_beam as beam
import pytest
from apache_beam.typehints.decorators import TypeCheckError

from pipeline.polygonize import Polygonize
from pipeline.thresholds import LabelChipsFn, LabelExactFraction, SplitByBracketFn
from pipeline.thresholds.fractions import RegionFractions
from pipeline.values import ScoredBatch, WrittenMask
from pipeline.writers.scores import WriteCsv, WriteScoresBigQuery


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
