"""The frozen serving graph: faster, the same scores, and the saved graph whenever it is not.

``pipeline.inference.serving.ServingFunction`` freezes a SavedModel's
``serving_default`` and checks the frozen graph against the saved one on the
first batch. These tests run real SavedModels: the project's own exported
classifier (Keras, BatchNormalization folded by the freeze), a conv net
written by hand, a model whose variable changes after freezing (the check must catch it) and
one that writes a variable (it cannot be frozen).
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from footprints import contracts
from pipeline.inference import handlers, serving
from tests.score_helpers import png, save_classifier

pytestmark = pytest.mark.slow  # exports SavedModels


def _jpeg_records(n: int, size: int = 48) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(11)
    records = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
        records.append(contracts.encode_chip(contracts.Chip(f"fp-{i}", buf.getvalue())))
    return records


def _damaged_record() -> bytes:
    """A PNG whose header and IEND are intact and whose pixel data is zeros: the decoder fails."""
    good = png(99)
    damaged = good[:41] + bytes(len(good) - 53) + good[-12:]
    return contracts.encode_chip(contracts.Chip("bad", damaged))


def _saved_scores(model_dir: str, records: list[bytes]) -> np.ndarray:
    import tensorflow as tf

    fn = tf.saved_model.load(model_dir).signatures[contracts.SIGNATURE]
    return fn(examples=tf.constant(records))[contracts.CLASSIFIER_OUTPUT].numpy()


def _serving(model_dir: str, graph: str = "frozen") -> serving.ServingFunction:
    import tensorflow as tf

    return serving.ServingFunction(tf.saved_model.load(model_dir), graph)


def _call(fn: serving.ServingFunction, records: list[bytes]) -> np.ndarray:
    import tensorflow as tf

    return fn(contracts.CLASSIFIER_INPUT, tf.constant(records))[contracts.CLASSIFIER_OUTPUT]


@pytest.fixture(scope="module")
def keras_classifier(tmp_path_factory):
    """The project's small CNN (BatchNormalization after every conv), exported as training does."""
    import keras

    from model_training.classifier_models import small_cnn
    from model_training.export import export_classifier

    keras.utils.set_random_seed(3)
    model = small_cnn(48)
    # Statistics and scales away from 0/1, so folding them into the convolutions matters.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            rng = np.random.default_rng(n)
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.05, 0.5, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, n).astype("float32"))
    return export_classifier(model, str(tmp_path_factory.mktemp("keras") / "model"), 48)


def test_the_frozen_keras_classifier_scores_as_the_saved_graph(keras_classifier):
    records = _jpeg_records(40)
    expected = _saved_scores(keras_classifier, records)
    fn = _serving(keras_classifier)
    assert fn.graph == "frozen"
    first = _call(fn, records[:16])  # checked against the saved graph
    rest = _call(fn, records[16:])  # frozen only
    assert fn.graph == "frozen"
    got = np.concatenate([first, rest])
    assert np.max(np.abs(got - expected)) <= serving.FROZEN_TOLERANCE
    assert np.ptp(expected) > 1e-3  # the scores tell chips apart, so the check means something


def test_the_frozen_graph_really_holds_no_variables(keras_classifier):
    fn = _serving(keras_classifier)
    assert fn._saved.variables  # the saved signature reads its weights from variables
    assert not fn._frozen.get_concrete_function().variables


def test_a_frozen_graph_that_differs_from_the_saved_one_is_not_served(tmp_path):
    model = save_classifier(str(tmp_path / "offset"), kind="offset")
    fn = _serving(model)
    assert fn.graph == "frozen"
    # The variable changes after freezing: the saved graph reads 0.25, the frozen one holds 0.
    fn._loaded.offset.assign(0.25)
    records = _jpeg_records(8)
    scores = _call(fn, records)
    assert fn.graph == "saved"
    fresh = _call(_serving(model, "saved"), records)  # a fresh load: offset 0
    np.testing.assert_allclose(scores, fresh + 0.25, atol=1e-6)  # the saved graph's scores


def test_a_model_that_cannot_be_frozen_is_served_as_saved(tmp_path):
    model = save_classifier(str(tmp_path / "counting"), kind="counting")
    fn = _serving(model)
    records = _jpeg_records(6)
    scores = _call(fn, records)
    assert fn.graph == "saved"
    np.testing.assert_array_equal(scores, _saved_scores(model, records))


def test_saved_asks_for_the_signature_as_it_is(tmp_path):
    model = save_classifier(str(tmp_path / "conv"), kind="convnet")
    fn = _serving(model, "saved")
    assert fn.graph == "saved" and fn._frozen is None
    records = _jpeg_records(5)
    np.testing.assert_array_equal(_call(fn, records), _saved_scores(model, records))
    with pytest.raises(ValueError, match="frozen"):
        _serving(model, "fast")


def test_a_bad_record_still_fails_its_batch_and_the_check_waits(tmp_path):
    import tensorflow as tf

    model = save_classifier(str(tmp_path / "conv"), kind="convnet")
    fn = _serving(model)
    good = _jpeg_records(4)
    bad = _damaged_record()
    with pytest.raises(tf.errors.InvalidArgumentError):
        _call(fn, [*good[:2], bad])
    assert not fn._checked
    _call(fn, good)
    assert fn._checked and fn.graph == "frozen"


def test_the_handler_isolates_bad_records_through_the_frozen_graph(tmp_path):
    model = save_classifier(str(tmp_path / "conv"), kind="convnet")
    good = _jpeg_records(6)
    records = [*good[:3], _damaged_record(), *good[3:]]
    handlers._LOADED.clear()
    handler = handlers.ChipScoreHandler(model, min_batch_size=7, max_batch_size=7)
    [(_, outcomes)] = handler.run_inference(list(enumerate(records)), handler.load_model())
    assert isinstance(outcomes[3], handlers.InferenceFailure)
    scores = np.asarray([o for i, o in enumerate(outcomes) if i != 3], dtype=np.float32)
    assert np.max(np.abs(scores - _saved_scores(model, good))) <= serving.FROZEN_TOLERANCE


def test_max_difference_treats_moved_nans_and_shapes_as_infinitely_different():
    a = {"score": np.array([0.1, np.nan, 0.3], np.float32)}
    assert serving.max_difference(a, {"score": np.array([0.1, np.nan, 0.3], np.float32)}) == 0
    moved = {"score": np.array([np.nan, 0.2, 0.3], np.float32)}
    assert serving.max_difference(a, moved) == float("inf")
    assert serving.max_difference(a, {"score": np.zeros(2, np.float32)}) == float("inf")
    close = {"score": np.array([0.1 + 2e-6, np.nan, 0.3], np.float32)}
    assert 1e-6 < serving.max_difference(a, close) < 3e-6


def test_a_fallback_becomes_a_warning_only_when_frozen_was_asked_for():
    summary = {"metrics": {"counters": {"footprints.score/serving_graph_saved": 2}}}
    [warning] = serving.serving_graph_warnings(summary, "frozen")
    assert warning["code"] == "serving_graph_saved" and "2 worker" in warning["message"]
    assert serving.serving_graph_warnings(summary, "saved") == []
    assert serving.serving_graph_warnings({"metrics": {}}, "frozen") == []


# --------------------------------------------------------------------------
# An empty batch, with TensorFlow's oneDNN kernels on and off
# --------------------------------------------------------------------------

# Run in a fresh interpreter: TF_ENABLE_ONEDNN_OPTS is read when TensorFlow is
# imported. oneDNN is on by default on x86 hosts with AVX-512 VNNI or AMX and off
# on AVX2-only ones, which is why an empty batch failed on one machine only.
_EMPTY_BATCH_PROBE = """
import json, sys
import numpy as np
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port
from footprints import contracts
from pipeline.inference import serving

classifier, convnet, segmenter, shard = sys.argv[1:5]
records = tf.constant([r.numpy() for r in tf.data.TFRecordDataset(shard)])
empty = tf.constant([], tf.string)
out = {"onednn": bool(_pywrap_util_port.IsMklEnabled())}

def load(path):
    return tf.saved_model.load(path)

# The exported classifier: its saved signature, then the frozen graph the jobs serve.
saved = load(classifier).signatures[contracts.SIGNATURE]
out["saved_empty"] = list(saved(examples=empty)["score"].shape)
out["saved_scores"] = saved(examples=records)["score"].numpy().tolist()
fn = serving.ServingFunction(load(classifier), "frozen")
out["frozen_scores"] = fn("examples", records)["score"].tolist()
out["graph"] = fn.graph
frozen = fn._frozen(empty)
out["frozen_graph_empty"] = list(frozen[0].shape) if isinstance(frozen, list) else list(
    tf.nest.flatten(frozen)[0].shape)
out["served_empty"] = list(fn("examples", empty)["score"].shape)

# A hand-written conv net exported without the guard: the serving function answers
# an empty batch without running its graph.
conv_fn = serving.ServingFunction(load(convnet))
out["convnet_empty"] = list(conv_fn("examples", empty)["score"].shape)

# The exported segmenter.
seg = load(segmenter).signatures[contracts.SIGNATURE]
images = tf.constant(np.random.default_rng(0).integers(0, 256, (2, 24, 20, 3), dtype=np.uint8))
out["segmenter_empty"] = list(seg(images=images[:0])["mask"].shape)
out["segmenter_mask"] = list(seg(images=images)["mask"].shape)
seg_fn = serving.ServingFunction(load(segmenter), "frozen")
out["segmenter_frozen_mask"] = list(seg_fn("images", images)["mask"].shape)
out["segmenter_frozen_empty"] = list(seg_fn("images", images[:0])["mask"].shape)
print("PROBE " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def keras_segmenter(tmp_path_factory):
    """A small conv + BatchNormalization segmenter, exported as training exports the U-Net."""
    import keras

    from model_training.export import export_segmenter

    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Conv2D(8, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Conv2D(1, 1, activation="sigmoid"),
        ]
    )
    assets = contracts.SegmenterAssets(24, (1, 2, 3), "uint8", (0.0,) * 3, (1 / 255,) * 3)
    return export_segmenter(
        model, str(tmp_path_factory.mktemp("segmenter") / "model"), assets, multiple=4
    )


@pytest.mark.parametrize("onednn", ["0", "1"])
def test_an_empty_batch_is_served_with_onednn_on_and_off(
    keras_classifier, keras_segmenter, tmp_path, onednn
):
    import json
    import os
    import subprocess
    import sys

    from tests.score_helpers import write_shards

    convnet = save_classifier(str(tmp_path / "conv"), kind="convnet", size=32)
    records = _jpeg_records(6)
    (shard,) = write_shards(str(tmp_path / "chips"), records, num_shards=1)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {
        **os.environ,
        "TF_ENABLE_ONEDNN_OPTS": onednn,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _EMPTY_BATCH_PROBE,
            keras_classifier,
            convnet,
            keras_segmenter,
            shard,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [x for x in run.stdout.splitlines() if x.startswith("PROBE ")]
    got = json.loads(line[len("PROBE ") :])
    assert got["onednn"] is (onednn == "1")  # the setting took effect in that process
    assert got["saved_empty"] == [0]
    assert got["frozen_graph_empty"] == [0]  # the frozen graph itself, not only the short cut
    assert got["served_empty"] == [0] and got["convnet_empty"] == [0]
    assert got["graph"] == "frozen"
    # A normal batch: the frozen graph scores as the saved one, and as this process does
    # (whichever kernels it runs) within the float error of a reordered sum.
    here = _saved_scores(keras_classifier, records)
    np.testing.assert_allclose(
        got["frozen_scores"], got["saved_scores"], atol=serving.FROZEN_TOLERANCE
    )
    np.testing.assert_allclose(got["saved_scores"], here, atol=1e-4)
    assert got["segmenter_empty"] == [0, 24, 20] and got["segmenter_mask"] == [2, 24, 20]
    assert got["segmenter_frozen_mask"] == [2, 24, 20]
    assert got["segmenter_frozen_empty"] == [0, 24, 20]


def test_empty_outputs_take_open_dimensions_from_the_input():
    import tensorflow as tf

    outputs = {
        "score": tf.TensorSpec([None], tf.float32),
        "mask": tf.TensorSpec([None, None, None], tf.float32),
        "fixed": tf.TensorSpec([None, 7], tf.int64),
    }
    got = serving.empty_outputs(outputs, tf.zeros([0, 24, 20, 3], tf.uint8))
    assert {k: (v.shape, v.dtype) for k, v in got.items()} == {
        "score": ((0,), np.float32),
        "mask": ((0, 24, 20), np.float32),
        "fixed": ((0, 7), np.int64),
    }
