"""Calibration, quality gates and repeatability of the classifier, and the
score run's expected shares and warnings.

The unit tests check the measures on inputs whose answer is known by hand or
by construction (a known Platt distortion of true probabilities); the slow
tests train real classifiers: twice with one seed (bit-identical), and on
shuffled labels (the gate must trip), and score with a constant-output
contract model (the score run must warn).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from oracles import apply_platt

from footprints import contracts
from footprints_app import cli
from footprints_app.commands.train import quality_gate
from model_training import evaluation
from pipeline.thresholds import expected
from tests.score_helpers import chip_record, save_classifier, write_shards

# --------------------------------------------------------------------------
# Calibration measures
# --------------------------------------------------------------------------


def test_ece_of_a_worked_example():
    # bins of width 1/15: 0.1 alone (gap 0.1), three 0.9s with label 1 (gap 0.1)
    assert evaluation.expected_calibration_error(
        [0, 1, 1, 1], [0.1, 0.9, 0.9, 0.9]
    ) == pytest.approx(0.1)
    table = evaluation.reliability([0, 1, 1, 1], [0.1, 0.9, 0.9, 0.9])
    assert len(table["bin_edges"]) == evaluation.ECE_BINS + 1
    assert sum(table["count"]) == 4 and table["count"][1] == 1 and table["count"][13] == 3
    assert table["fraction_positive"][13] == 1.0 and table["mean_score"][0] is None


def _distorted(seed: int, n: int = 20_000):
    """True probabilities, labels drawn from them, and scores distorted by a
    known Platt map: logit(raw) = (logit(p) + 3) / 3, so a = 3, b = -3 undo it."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.7, 0.7, n)
    labels = (rng.random(n) < p).astype(np.int64)
    raw = 1.0 / (1.0 + np.exp(-(evaluation.logit(p) + 3.0) / 3.0))
    return p, labels, raw


def test_platt_recovers_a_known_distortion_and_cuts_the_ece():
    p, labels, raw = _distorted(seed=11)
    a, b = evaluation.fit_platt(labels, raw)
    assert a == pytest.approx(3.0, rel=0.1) and b == pytest.approx(-3.0, rel=0.1)
    calibrated = apply_platt(raw, a, b)
    before = evaluation.expected_calibration_error(labels, raw)
    after = evaluation.expected_calibration_error(labels, calibrated)
    print(f"ECE before {before:.3f}, after {after:.3f}")
    assert before > 0.1 and after < 0.02
    # Platt keeps the order of the scores, so the AUC does not move.
    assert evaluation.binary_auc(labels, calibrated) == pytest.approx(
        evaluation.binary_auc(labels, raw)
    )
    # Nothing to fit on one class: the identity.
    assert evaluation.fit_platt(np.ones(5), raw[:5]) == (1.0, 0.0)


def test_weak_reasons_name_each_degenerate_case():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 400)
    noise = rng.random(400)
    good = np.clip(labels * 0.6 + rng.random(400) * 0.4, 0, 1)
    assert evaluation.weak_reasons(labels, good) == []
    assert any("AUC" in r for r in evaluation.weak_reasons(labels, noise))
    constant = np.full(400, 0.57)
    reasons = evaluation.weak_reasons(labels, constant)
    assert any("predicted residential" in r for r in reasons)
    assert any("hardly vary" in r for r in reasons)
    assert len(reasons) == 3  # constant scores also give AUC 0.5


def test_quality_gate_exit_codes(capsys):
    weak = {
        "weak": True,
        "reasons": ["validation AUC 0.500 is below 0.6"],
        "ece": 0.2,
        "ece_uncalibrated": 0.3,
    }
    assert quality_gate(weak, allow_weak=False) == 3
    out = capsys.readouterr().out
    assert "WARNING: weak model" in out and "AUC 0.500" in out and "--allow-weak-model" in out
    assert quality_gate(weak, allow_weak=True) == 0
    assert quality_gate({"weak": False, "ece": 0.01, "ece_uncalibrated": 0.1}, False) == 0


# --------------------------------------------------------------------------
# Expected share and rankability per region
# --------------------------------------------------------------------------


def _stats(*batches):
    fn = expected.ScoreStatsFn()
    accs = []
    for batch in batches:
        accs.append(fn.add_input(fn.create_accumulator(), np.asarray(batch, np.float32)))
    return fn.extract_output(fn.merge_accumulators(accs))


def test_expected_share_is_the_poisson_binomial_mean_and_sd():
    stats = _stats([0.2, 0.4], [0.6, 0.8])
    assert stats["n"] == 4
    assert stats["expected_fraction"] == pytest.approx(0.5)
    assert stats["expected_sd"] == pytest.approx(np.sqrt(0.16 + 0.24 + 0.24 + 0.16) / 4)
    # Compared with the exact Poisson-binomial distribution by simulation.
    rng = np.random.default_rng(1)
    p = rng.random(300)
    draws = (rng.random((20_000, 300)) < p).mean(axis=1)
    s = _stats(p)
    assert s["expected_fraction"] == pytest.approx(draws.mean(), abs=0.002)
    assert s["expected_sd"] == pytest.approx(draws.std(), rel=0.05)
    assert expected.share_line("A", 0.45, {"expected_fraction": 0.41, "expected_sd": 0.03}) == (
        "region A: target 45%, model expects 41% +/- 3%"
    )


def test_narrow_or_tied_scores_cannot_rank():
    rng = np.random.default_rng(2)
    assert _stats(rng.random(500))["can_rank"]
    narrow = _stats(0.57 + rng.random(500) * 0.01)
    tied = _stats(np.r_[np.full(400, 0.5), rng.random(100)])
    assert not narrow["can_rank"] and narrow["spread"] < expected.MIN_SPREAD
    assert not tied["can_rank"] and tied["tied_share"] >= 0.8
    warnings = expected.rank_warnings({"a": narrow, "b": _stats(rng.random(50)), "c": tied})
    assert [w["code"] for w in warnings] == ["scores_cannot_rank"] * 2
    assert "region a" in warnings[0]["message"] and "region c" in warnings[1]["message"]


# --------------------------------------------------------------------------
# End to end: the score run warns about a degenerate model
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_score_warns_about_a_constant_model(tmp_path, capsys):
    # The brightness contract model on chips of one grey level: every score
    # is the same, and the card says it failed its gate.
    model = save_classifier(str(tmp_path / "constant"), "brightness")
    os.makedirs(os.path.join(model, "assets"), exist_ok=True)
    with open(os.path.join(model, "assets", contracts.MODEL_CARD), "w") as f:
        json.dump(
            {
                "quality": {
                    "weak": True,
                    "reasons": [
                        "every one of the 40 validation footprints is predicted residential"
                    ],
                }
            },
            f,
        )
    records = [
        chip_record(f"fp-{i}", 140, region="north" if i % 2 else "south", label=int(i % 3 == 0))
        for i in range(60)
    ]
    write_shards(str(tmp_path / "chips"), records)
    out = str(tmp_path / "out")
    code = cli.main(
        [
            "score",
            "--chips",
            str(tmp_path / "chips" / "*.tfrecord"),
            "--model",
            model,
            "--residential-fraction",
            "0.4",
            "--output",
            out,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    codes = [w["code"] for w in summary["warnings"]]
    assert codes == ["weak_model", "scores_cannot_rank", "scores_cannot_rank"], codes
    north = summary["regions"]["north"]["scores"]
    assert north["n"] == 30 and north["tied_share"] == 1.0
    assert north["expected_fraction"] == pytest.approx(140 / 255, abs=1e-6)
    assert "WARNING [weak_model]" in printed and "WARNING [scores_cannot_rank]" in printed
    assert "region north: target 40%, model expects 55% +/- 9%" in printed


# --------------------------------------------------------------------------
# Real training: repeatable, and the gate trips on a model that learned nothing
# --------------------------------------------------------------------------


def _train_flags(chips: str, output: str, seed: int) -> list[str]:
    return [
        "train",
        "classifier",
        "--train",
        chips,
        "--output",
        output,
        "--image-size",
        "32",
        "--epochs",
        "2",
        "--quiet",
        "--seed",
        str(seed),
        "--no-tensorboard",
    ]


def _served_scores(model_dir: str, chips: str) -> np.ndarray:
    import tensorflow as tf

    from model_training import export

    records = list(tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(chips))).take(64))
    return export.load_serving(model_dir)(examples=tf.stack(records))["score"].numpy()


@pytest.fixture(scope="module")
def small_chips(tmp_path_factory):
    from model_training import synthetic

    folder = tmp_path_factory.mktemp("repeat")
    synthetic.write_chip_shards(
        str(folder), 160, seed=4, size=32, num_shards=3, formats=("png", "jpeg")
    )
    return str(folder / "chips-*.tfrecord")


@pytest.mark.slow
def test_one_seed_gives_bit_identical_weights_and_scores(small_chips, tmp_path):
    import keras

    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("other", 4)):
        output = str(tmp_path / name)
        assert cli.main(_train_flags(small_chips, output, seed)) in (0, 3)
        model = keras.models.load_model(os.path.join(output, "model.keras"))
        runs[name] = (
            [w.copy() for w in model.get_weights()],
            _served_scores(os.path.join(output, "model"), small_chips),
        )
    (weights_a, scores_a), (weights_b, scores_b) = runs["a"], runs["b"]
    assert len(weights_a) == len(weights_b)
    for wa, wb in zip(weights_a, weights_b, strict=True):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(scores_a, scores_b)
    # The test can fail: another seed gives other weights.
    assert np.max(np.abs(runs["other"][1] - scores_a)) > 1e-4


@pytest.mark.slow
def test_train_exits_3_on_shuffled_labels_and_score_warns(tmp_path, capsys):
    from model_training import synthetic

    # Images of both classes, labels drawn independently of them: nothing to learn.
    rng = np.random.default_rng(9)
    records = []
    for i in range(160):
        image = synthetic.synthetic_chip(rng, int(rng.random() < 0.5), 32)
        records.append(
            contracts.encode_chip(
                contracts.Chip(
                    footprint_id=f"shuffled-{i}",
                    image=synthetic.encode_image(image),
                    region="a",
                    label=int(rng.random() < 0.5),
                )
            )
        )
    write_shards(str(tmp_path / "chips"), records, num_shards=2)
    chips = str(tmp_path / "chips" / "*.tfrecord")
    output = str(tmp_path / "weak")
    assert cli.main(_train_flags(chips, output, 1)) == 3
    printed = capsys.readouterr().out
    assert "WARNING: weak model" in printed
    card = contracts.read_model_card(os.path.join(output, "model"))
    assert card["quality"]["weak"] is True and card["quality"]["reasons"]
    assert set(card["quality"]["reliability"]) == {
        "bin_edges",
        "mean_score",
        "fraction_positive",
        "count",
    }

    code = cli.main(
        [
            "score",
            "--chips",
            chips,
            "--model",
            os.path.join(output, "model"),
            "--residential-fraction",
            "0.5",
            "--output",
            str(tmp_path / "scored"),
        ]
    )
    assert code == 0
    with open(tmp_path / "scored" / "summary.json") as f:
        summary = json.load(f)
    assert summary["warnings"][0]["code"] == "weak_model"
    assert "WARNING [weak_model]" in capsys.readouterr().out


def test_demo_held_out_quality_reads_the_scores_table(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from footprints_app.commands.demo import held_out_quality

    folder = tmp_path / "scores"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "score": pa.array([0.1, 0.9, 0.9, 0.9, 0.4], pa.float32()),
                "label": pa.array([0, 1, 1, 1, None], pa.int8()),
                "is_residential": [False, True, True, False, True],
            }
        ),
        str(folder / "part-0.parquet"),
    )
    quality = held_out_quality(str(folder))
    assert quality["footprints"] == 4  # the unlabelled row is left out
    assert quality["accuracy_at_target"] == pytest.approx(0.75)
    assert quality["ece"] == pytest.approx(0.1, abs=1e-6) and quality["ece_bins"] == 15
    assert quality["auc"] == 1.0


def test_expected_share_is_the_same_to_the_last_digit_however_bundles_split():
    # Runners split and merge a region's batches in different orders; float sums
    # then differ in the last digit, fixed-point sums do not.
    p = np.random.default_rng(7).random(1000).astype(np.float32)
    whole = _stats(p)
    assert _stats(p[:3], p[3:500], p[500:]) == whole
    assert _stats(p[::-1][:10], p[::-1][10:]) == whole
