"""End-to-end tests of classifier training: real Keras training on generated chips,
the exported SavedModel checked against the contract and served back."""

from __future__ import annotations

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from oracles import apply_platt

from footprints import contracts
from footprints.errors import ConfigError
from footprints_app import cli
from model_training import classifier_models, data, export, synthetic
from model_training.classifier import train_classifier
from model_training.configs import ClassifierConfig

SIZE = 32
FAST = dict(image_size=SIZE, batch_size=32, verbose=0, seed=3)


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chips")
    synthetic.write_chip_shards(
        str(folder), 360, seed=7, size=40, num_shards=3, formats=("png", "jpeg"), grey_fraction=0.1
    )
    return str(folder / "chips-*.tfrecord")


def _history(output):
    with open(os.path.join(output, "history.csv"), encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_classifier_learns_a_separable_set_and_exports_the_contract(chips, tmp_path):
    output = str(tmp_path / "run")
    result = train_classifier(ClassifierConfig(train=chips, output=output, epochs=6, **FAST))
    print(f"classifier validation metrics: {result.metrics}")

    # Measured through the exported SavedModel on the held-out footprints.
    assert result.metrics["accuracy"] >= 0.85, result.metrics
    assert result.metrics["auc"] >= 0.9
    contracts.check_classifier_model(result.model_dir)
    card = contracts.read_model_card(result.model_dir)
    assert card["validation_metrics"]["accuracy"] == result.metrics["accuracy"]
    assert np.sum(card["validation_metrics"]["confusion_matrix"]) == result.metrics["examples"]
    assert card["input"]["image_size"] == SIZE
    assert card["class_mapping"] == {"0": "non-residential", "1": "residential"}
    assert len(card["training_data"]["train"]["fingerprint"]["sha256"]) == 64
    assert card["libraries"]["tensorflow"] == tf.__version__
    assert os.path.getsize(result.curves_path) > 5000

    # The serving signature takes raw records; a non-image record scores NaN
    # without failing its batch.
    records = [r for r in tf.data.TFRecordDataset(tf.io.gfile.glob(chips)).take(6)]
    bad = contracts.encode_chip(contracts.Chip("broken", b"not an image", label=1))
    serve = export.load_serving(result.model_dir)
    scores = serve(examples=tf.stack(records[:3] + [tf.constant(bad)] + records[3:]))["score"]
    scores = scores.numpy()
    assert scores.shape == (7,) and scores.dtype == np.float32
    assert np.isnan(scores[3]) and np.all(
        (scores[[0, 1, 2, 4, 5, 6]] >= 0) & (scores[[0, 1, 2, 4, 5, 6]] <= 1)
    )
    assert serve(examples=tf.constant([], tf.string))["score"].shape == (0,)

    # The .keras copy is the same network, fed decoded images; the served
    # score is its output through the card's Platt calibration.
    copy = keras.models.load_model(result.keras_path)
    parsed = data.parse_chips(tf.stack(records))
    images = tf.stack([data.decode_resize(e, SIZE) for e in parsed[contracts.IMAGE_KEY]])
    calibration = card["calibration"]
    np.testing.assert_allclose(
        apply_platt(copy(images).numpy()[:, 0], calibration["a"], calibration["b"]),
        serve(examples=tf.stack(records))["score"].numpy(),
        atol=1e-4,
    )
    assert card["quality"]["weak"] is False and card["quality"]["ece"] <= 0.15
    assert card["splits"]["validation"]["chips"] == result.metrics["examples"]
    assert os.path.getsize(os.path.join(result.model_dir, "assets", "reliability.png")) > 5000

    # A fresh run over it is refused; --resume continues with one more epoch.
    flags = [
        "train",
        "classifier",
        "--train",
        chips,
        "--output",
        output,
        "--image-size",
        str(SIZE),
        "--epochs",
        "7",
        "--quiet",
        "--seed",
        "3",
    ]
    assert cli.main(flags) == 2
    assert len(_history(output)) == 6
    assert cli.main(flags + ["--resume"]) == 0
    rows = _history(output)
    assert [int(r["epoch"]) for r in rows] == list(range(7))
    assert contracts.read_model_card(result.model_dir)["epochs_trained"] == 7


def test_mobilenetv2_loads_a_local_weights_file(tmp_path):
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), include_top=False, weights=None, alpha=0.35, pooling="avg"
    )
    weights = str(tmp_path / "mobilenet_v2_0.35_no_top.weights.h5")
    base.save_weights(weights)
    model = classifier_models.build_classifier("mobilenetv2", SIZE, weights, alpha=0.35)
    loaded = model.get_layer(classifier_models.BASE_NAME)
    for ours, theirs in zip(loaded.weights, base.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    scores = model(tf.random.uniform((2, SIZE, SIZE, 3), 0, 255)).numpy()
    assert scores.shape == (2, 1) and np.all((scores >= 0) & (scores <= 1))
    with pytest.raises(ConfigError, match="same alpha"):
        classifier_models.build_classifier("mobilenetv2", SIZE, weights, alpha=1.0)


def _with_backbone(size):
    """A small model shaped like the mobilenetv2 classifier: a named base and a head."""
    base = keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
        ],
        name=classifier_models.BASE_NAME,
    )
    inputs = keras.Input((size, size, 3))
    x = base(keras.layers.Rescaling(1 / 255)(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x), name="tiny")


@pytest.mark.slow
def test_freeze_then_fine_tune_keeps_the_base_fixed_first(chips, tmp_path, monkeypatch):
    from model_training import fitting

    model = _with_backbone(SIZE)
    initial = [w.numpy().copy() for w in model.get_layer(classifier_models.BASE_NAME).weights]
    after_phase = []
    real_fit = fitting.fit

    def fit_and_snapshot(model, *args, **kwargs):
        real_fit(model, *args, **kwargs)
        after_phase.append(
            [w.numpy().copy() for w in model.get_layer(classifier_models.BASE_NAME).weights]
        )

    monkeypatch.setattr(fitting, "fit", fit_and_snapshot)
    config = ClassifierConfig(
        train=chips,
        output=str(tmp_path / "ft"),
        backbone="mobilenetv2",
        epochs=2,
        freeze_epochs=1,
        **FAST,
    )
    result = train_classifier(config, model=model)

    assert len(after_phase) == 2
    for before, frozen in zip(initial, after_phase[0], strict=True):
        np.testing.assert_array_equal(before, frozen)
    assert any(not np.array_equal(a, b) for a, b in zip(initial, after_phase[1], strict=True))
    # One epoch at the full rate with the base frozen, one fine-tuning at a tenth.
    rates = [float(r["learning_rate"]) for r in _history(config.output)]
    assert rates == pytest.approx([1e-3, 1e-4])
    contracts.check_classifier_model(result.model_dir)
    assert contracts.read_model_card(result.model_dir)["backbone"] == "custom (tiny)"


def test_bad_flags_and_inputs_exit_2_before_training(tmp_path, capsys):
    empty = tmp_path / contracts.shard_name("empty", 0, 1)
    tf.io.TFRecordWriter(str(empty)).close()
    assert (
        cli.main(["train", "classifier", "--train", str(empty), "--output", str(tmp_path / "o")])
        == 2
    )
    assert "empty" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "train",
                "classifier",
                "--train",
                str(empty),
                "--output",
                str(tmp_path / "o"),
                "--backbone",
                "mobilenetv2",
                "--weights",
                str(tmp_path / "missing.h5"),
            ]
        )
        == 2
    )
    assert (
        cli.main(
            [
                "train",
                "classifier",
                "--train",
                str(empty),
                "--output",
                str(tmp_path / "o"),
                "--freeze-epochs",
                "2",
            ]
        )
        == 2
    )
    assert "mobilenetv2" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="does not exist"):
        classifier_models.mobilenetv2(SIZE, str(tmp_path / "missing.h5"))


def test_help_lists_the_subcommands_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "classifier", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--backbone {small-cnn,mobilenetv2}" in text and "examples:" in text
    assert json.dumps(ClassifierConfig(train="x", output="y").batch_size) in text
