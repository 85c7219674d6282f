"""The scoring job's serving path: one model load per process, same scores as a fresh load.

``footprints score`` checks the model before the job starts and then scores
with it; on an in-process runner both use one loaded SavedModel
(:func:`pipeline.inference.handlers.load_saved_model`). These tests pin that
the shared object is really shared, and that scoring through the handler
gives the scores a plain ``tf.saved_model.load`` + ``serving_default`` call
gives, on a real conv-net classifier and real JPEG chip records.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from footprints import contracts
from pipeline.inference import handlers
from tests.score_helpers import save_classifier

pytestmark = pytest.mark.slow  # exports a SavedModel


def _jpeg_records(n: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(7)
    records = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
        records.append(contracts.encode_chip(contracts.Chip(f"fp-{i}", buf.getvalue())))
    return records


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_classifier(str(tmp_path_factory.mktemp("serving") / "model"), kind="convnet")


def test_check_and_scoring_share_one_load(model):
    handlers._LOADED.clear()
    handlers.check_model(model, "savedmodel")
    first = handlers.load_saved_model(model)
    scorer = handlers.ChipScoreHandler(model, min_batch_size=4, max_batch_size=4).load_model()
    assert scorer._fn._loaded is first
    other = save_classifier(model + "-other", kind="brightness")
    assert handlers.load_saved_model(other) is not first
    # One entry only: a launcher never accumulates models.
    assert list(handlers._LOADED) == [handlers.os.path.realpath(other)]


def test_handler_scores_equal_a_fresh_load(model):
    import tensorflow as tf

    records = _jpeg_records(10)
    fresh = tf.saved_model.load(model).signatures[contracts.SIGNATURE]
    expected = fresh(examples=tf.constant(records))[contracts.CLASSIFIER_OUTPUT].numpy()
    handler = handlers.ChipScoreHandler(model, min_batch_size=4, max_batch_size=4)
    [(metas, outcomes)] = handler.run_inference(
        [(i, r) for i, r in enumerate(records)], handler.load_model()
    )
    assert metas == list(range(10))
    assert np.max(np.abs(np.asarray(outcomes) - expected)) <= 1e-5
    assert len(set(np.round(expected, 4))) > 1  # the scores tell chips apart


def test_model_copies_reach_beams_model_handler(model, tmp_path):
    from pipeline.score import ScoreConfig
    from pipeline.scoring import ScoreChips

    handler = ScoreChips(model, "0.3", batch_size=8, model_copies=2).handler()
    assert handler.model_copies() == 2 and handler.share_model_across_processes()
    assert handler.batch_elements_kwargs() == {"min_batch_size": 8, "max_batch_size": 8}
    default = ScoreChips(model, "0.3").handler()
    assert default.model_copies() == 1 and not default.share_model_across_processes()
    chips = tmp_path / "chips-00000-of-00001.tfrecord"
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(chips)) as w:
        for record in _jpeg_records(2):
            w.write(record)
    config = ScoreConfig.create(
        chips=str(chips),
        model_dir=model,
        residential_fraction="0.3",
        output=str(tmp_path / "out"),
        model_copies=3,
        check_model_dir=False,
    )
    assert config.model_copies == 3
