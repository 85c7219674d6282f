"""pipeline.beam_costs: Beam's stateful-DoFn question, cached per class, answers as Beam does."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from pipeline.beam_costs import memoize_dofn_specs


class _Plain(beam.DoFn):
    def process(self, element):
        yield element


class _Counting(beam.DoFn):
    SEEN = ReadModifyWriteStateSpec("seen", VarIntCoder())

    def process(self, element, seen=beam.DoFn.StateParam(SEEN)):  # noqa: B008 (Beam's idiom)
        total = (seen.read() or 0) + 1
        seen.write(total)
        yield element[0], total


def _count_beams_answers(monkeypatch) -> tuple[list[type], object]:
    """Puts a counting wrapper around Beam's own function, then the cache; returns both."""
    calls: list[type] = []
    original = userstate.get_dofn_specs

    def counted(dofn):
        calls.append(type(dofn))
        return original(dofn)

    monkeypatch.setattr(userstate, "get_dofn_specs", counted)
    memoize_dofn_specs()
    return calls, original


def test_the_cached_answers_equal_beams_own_and_the_class_is_asked_once(monkeypatch):
    calls, original = _count_beams_answers(monkeypatch)
    memoize_dofn_specs()  # idempotent: not wrapped twice
    for _ in range(3):
        assert userstate.get_dofn_specs(_Plain()) == original(_Plain()) == (set(), set())
        assert userstate.is_stateful_dofn(_Counting())
        assert userstate.get_dofn_specs(_Counting()) == original(_Counting())
    assert calls == [_Plain, _Counting]  # one question per class
    # A caller changing what it got does not change the next answer.
    userstate.get_dofn_specs(_Counting())[0].clear()
    assert userstate.get_dofn_specs(_Counting())[0] == {_Counting.SEEN}


def test_an_instance_holding_its_own_bound_method_is_asked_afresh(monkeypatch):
    calls, _ = _count_beams_answers(monkeypatch)
    fn = _Plain()
    fn.extra = _Counting().process  # a bound method with a state parameter, on the instance
    assert userstate.get_dofn_specs(fn) == ({_Counting.SEEN}, set())
    assert userstate.get_dofn_specs(fn) == ({_Counting.SEEN}, set())
    assert calls == [_Plain, _Plain]  # never cached


def test_a_stateful_dofn_still_keeps_its_state_in_a_pipeline(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", userstate.get_dofn_specs)  # restored after
    memoize_dofn_specs()
    with beam.Pipeline() as p:
        out = (
            p
            | beam.Create([("a", 1), ("a", 2), ("b", 3), ("a", 4)])
            | beam.ParDo(_Counting())
            | beam.combiners.Top.PerKey(1)
        )
        assert_that(out, equal_to([("a", [3]), ("b", [1])]))
