"""The ONNX Runtime path (issue 24): export, conversion checks, scorers, jobs, int8 rules.

The SavedModel is the reference throughout: a Keras classifier exported by
:func:`model_training.export.export_classifier` (decode in the graph, Platt
calibration after the network) and converted by
:mod:`model_training.onnx_export` must score real PNG, JPEG and masked chip
records like the SavedModel does, fail on the same records, and give the
same labels in a whole ``footprints score`` run; a dilated-conv segmenter and
a U-Net must give the same masks within 1/255.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import score_helpers
import segment_helpers
from raster_fixtures import write_geotiff

from footprints import contracts
from footprints.errors import ConfigError
from footprints_app import cli
from pipeline.inference import onnx_runtime
from pipeline.inference.handlers import ChipScoreHandler, InferenceFailure, SavedModelScorer

onnx_export = pytest.importorskip("model_training.onnx_export")
SIZE = 24


def _jpeg(rng, size=40) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _records(n: int, seed: int = 3) -> list[bytes]:
    """JPEG chips (resized by the model), grey PNGs and masked chips, labelled by brightness."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            image, label = _jpeg(rng), i % 2
        elif kind == 1:
            value = int(rng.integers(0, 256))
            image, label = score_helpers.png(value, size=SIZE, noise_seed=i), int(value > 128)
        else:
            image, label = score_helpers.png(int(rng.integers(0, 256)), size=SIZE), i % 2
        mask = score_helpers.png(255, size=SIZE) if kind == 2 and i % 2 else None
        chip = contracts.Chip(f"fp-{i:04d}", image, label=label, mask=mask)
        records.append(contracts.encode_chip(chip))
    return records


def _keras_classifier(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from model_training.export import export_classifier

    model_dir = str(tmp_path_factory.mktemp("onnx") / "classifier")
    export_classifier(_keras_classifier(), model_dir, SIZE, calibration=(1.7, -0.3))
    entry = onnx_export.export_beside(model_dir)
    onnx_export.update_card(model_dir, entry)
    return model_dir


@pytest.mark.slow  # exports and converts a model
def test_onnx_scores_equal_the_savedmodels_within_the_tolerance(classifier):
    records = _records(30)
    not_image = contracts.encode_chip(contracts.Chip("bad", b"GIF89a not a chip"))
    records.append(not_image)
    want = SavedModelScorer(classifier, serving_graph="saved").score(records)
    got = onnx_runtime.OnnxClassifierScorer(classifier).score(records)
    assert np.isnan(want[-1]) and np.isnan(got[-1])
    assert np.max(np.abs(want[:-1] - got[:-1])) <= onnx_export.SCORE_TOLERANCE
    assert np.ptp(want[:-1]) > 0.01  # the chips score differently: the test can fail
    assert onnx_runtime.OnnxClassifierScorer(classifier).score([]).shape == (0,)


@pytest.mark.slow
def test_without_the_decode_graph_the_savedmodel_is_cut_the_same_way(classifier, tmp_path):
    import shutil

    copy = str(tmp_path / "copy")
    shutil.copytree(classifier, copy)
    assert os.path.exists(os.path.join(copy, contracts.ONNX_DECODE_GRAPH))
    os.remove(os.path.join(copy, contracts.ONNX_DECODE_GRAPH))  # as a contract-3 file may lack
    records = _records(9)
    want = onnx_runtime.OnnxClassifierScorer(classifier, decode="tensorflow").score(records)
    got = onnx_runtime.OnnxClassifierScorer(copy, decode="tensorflow").score(records)
    np.testing.assert_array_equal(want, got)
    python = onnx_runtime.OnnxClassifierScorer(copy).score(records)  # the default: no TF
    assert np.max(np.abs(python - want)) <= onnx_export.SCORE_TOLERANCE
    card = contracts.read_model_card(classifier)["onnx"]
    assert card["file"] == contracts.ONNX_MODEL and card["max_difference"] <= 1e-5


@pytest.mark.slow
def test_a_damaged_record_is_dead_lettered_alone_on_both_runtimes(classifier):
    records = _records(7)
    damaged = contracts.encode_chip(contracts.Chip("cut", _jpeg(np.random.default_rng(0))[:300]))
    batch = [(i, r) for i, r in enumerate(records[:3] + [damaged] + records[3:])]
    outcomes = {}
    for runtime in ("tensorflow", "onnxruntime"):
        handler = ChipScoreHandler(classifier, min_batch_size=8, max_batch_size=8, runtime=runtime)
        [(metas, out)] = handler.run_inference(batch, handler.load_model())
        assert metas == list(range(8))
        assert isinstance(out[3], InferenceFailure) and out[3].error == "model_rejected_record"
        outcomes[runtime] = np.asarray([o for i, o in enumerate(out) if i != 3])
    assert np.max(np.abs(outcomes["tensorflow"] - outcomes["onnxruntime"])) <= 1e-5


@pytest.mark.slow  # runs two score jobs
def test_score_job_gives_the_same_labels_on_both_runtimes(classifier, tmp_path, capsys):
    chips = score_helpers.write_shards(str(tmp_path / "chips"), _records(40))
    tables = {}
    for runtime in ("tensorflow", "onnxruntime"):
        out = str(tmp_path / runtime)
        argv = ["score", "--chips", os.path.dirname(chips[0]) + "/*.tfrecord"]
        argv += ["--model", classifier, "--residential-fraction", "0.4", "--output", out]
        assert cli.main(argv + ["--runtime", runtime, "--runner", "DirectRunner"]) == 0
        assert json.load(open(os.path.join(out, "summary.json")))["inputs"]["runtime"] == runtime
        tables[runtime] = pq.read_table(os.path.join(out, "scores")).sort_by("footprint_id")
    tf_rows, ort_rows = (tables[r].to_pydict() for r in ("tensorflow", "onnxruntime"))
    assert tf_rows["footprint_id"] == ort_rows["footprint_id"] and len(tf_rows["score"]) == 40
    assert np.max(np.abs(np.subtract(tf_rows["score"], ort_rows["score"]))) <= 1e-5
    assert tf_rows["label"] == ort_rows["label"]


_NO_TENSORFLOW = """
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
            raise ImportError(f"{name} imported on the onnxruntime path")

sys.meta_path.insert(0, Refuse())
from footprints_app import cli
code = cli.main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print("TF-MODULES", loaded)
sys.exit(code)
"""


@pytest.mark.slow  # runs a score job in a fresh interpreter
def test_a_score_run_on_onnxruntime_never_imports_tensorflow(classifier, tmp_path):
    import subprocess
    import sys

    damaged = contracts.encode_chip(contracts.Chip("cut", _jpeg(np.random.default_rng(0))[:300]))
    chips = score_helpers.write_shards(str(tmp_path / "chips"), _records(20) + [damaged])
    out = str(tmp_path / "out")
    argv = ["score", "--chips", os.path.dirname(chips[0]) + "/*.tfrecord", "--model", classifier]
    argv += ["--residential-fraction", "0.4", "--output", out, "--runtime", "onnxruntime"]
    done = subprocess.run(
        [sys.executable, "-c", _NO_TENSORFLOW, *argv], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TF-MODULES []" in done.stdout
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["inputs"]["runtime"] == "onnxruntime"
    errors = pq.read_table(os.path.join(out, "errors")).to_pydict()
    # validation dead-letters the cut JPEG before the model, on either runtime
    assert errors["record"] == ["cut"] and errors["error"] == ["undecodable_image"]
    assert pq.read_table(os.path.join(out, "scores")).num_rows == 20


@pytest.mark.slow  # exports and converts models
@pytest.mark.parametrize("kind", ["dilated", "unet"])
def test_segmenter_masks_equal_the_savedmodels(kind, tmp_path):
    from pipeline.inference.segmenter import Segmenter

    model_dir = str(tmp_path / kind)
    if kind == "dilated":  # dilated SAME convolutions: explicit pads in the ONNX graph
        segment_helpers.save_conv_segmenter(model_dir, window_size=48, dilations=(1, 2, 4))
    else:
        import keras

        from model_training import configs, export, unet

        keras.utils.set_random_seed(0)
        config = configs.UNetConfig(depth=2, filters=4)
        model = unet.build_unet(3, config)
        assets = contracts.SegmenterAssets.identity(48)
        export.export_segmenter(model, model_dir, assets, config.multiple)
    onnx_export.export_beside(model_dir)
    images = np.random.default_rng(1).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    want = np.asarray(Segmenter(model_dir, "saved")(images))
    got = onnx_runtime.OnnxSegmenter(model_dir)(images)
    assert got.shape == (3, 48, 48)
    assert np.max(np.abs(want - got)) <= 1 / 255
    assert np.ptp(want) > 0.01


@pytest.mark.slow  # runs two segment jobs
def test_segment_job_writes_the_same_masks_on_both_runtimes(tmp_path):
    import rasterio

    model_dir = segment_helpers.save_conv_segmenter(
        str(tmp_path / "seg"), window_size=32, brightness=0.05
    )
    onnx_export.export_beside(model_dir)
    write_geotiff(
        str(tmp_path / "tiles" / "a.tif"), segment_helpers.random_image(70, 90).transpose(2, 0, 1)
    )
    masks = {}
    for runtime in ("tensorflow", "onnxruntime"):
        out = str(tmp_path / runtime)
        argv = ["segment", "--raster", str(tmp_path / "tiles" / "*.tif"), "--model", model_dir]
        argv += ["--output", out, "--runtime", runtime, "--runner", "DirectRunner"]
        assert cli.main(argv) == 0
        with rasterio.open(os.path.join(out, "masks", "a.tif")) as src:
            masks[runtime] = src.read(1).astype(int)
    assert np.max(np.abs(masks["tensorflow"] - masks["onnxruntime"])) <= 1
    assert np.ptp(masks["tensorflow"]) > 10


def test_auto_takes_onnx_only_where_the_file_is(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    assert onnx_runtime.resolve_runtime(str(model_dir), "auto") == "tensorflow"
    with pytest.raises(ConfigError, match="convert onnx"):
        onnx_runtime.resolve_runtime(str(model_dir), "onnxruntime")
    (model_dir / contracts.ONNX_MODEL).write_bytes(b"")
    assert onnx_runtime.resolve_runtime(str(model_dir), "auto") == "onnxruntime"
    assert onnx_runtime.resolve_runtime(str(model_dir), "tensorflow") == "tensorflow"
    assert onnx_runtime.resolve_runtime(str(model_dir), "auto", model_format="tfx") == "tensorflow"
    with pytest.raises(ConfigError, match="--int8"):
        onnx_runtime.resolve_runtime(str(model_dir), "tensorflow", int8=True)
    with pytest.raises(ConfigError, match="model.int8.onnx"):
        onnx_runtime.resolve_runtime(str(model_dir), "auto", int8=True)
    with pytest.raises(ConfigError, match="--runtime"):
        onnx_runtime.resolve_runtime(str(model_dir), "tensorrt")


def _card(model_dir, int8: dict) -> None:
    onnx_export.update_card(str(model_dir), {"int8": int8})


def test_int8_is_refused_unless_its_card_vouches_for_it(tmp_path):
    with pytest.raises(ConfigError, match="no onnx.int8 verdict"):
        onnx_runtime.check_int8(str(tmp_path), allow_inexact=False)
    _card(tmp_path, {"within_tolerance": False, "why": "3% of labels flip"})
    with pytest.raises(ConfigError, match="3% of labels flip.*--allow-inexact-int8"):
        onnx_runtime.check_int8(str(tmp_path), allow_inexact=False)
    onnx_runtime.check_int8(str(tmp_path), allow_inexact=True)
    _card(tmp_path, {"within_tolerance": True, "why": "0.1% flip"})
    onnx_runtime.check_int8(str(tmp_path), allow_inexact=False)


def test_label_flips_are_counted_at_the_enforced_fraction():
    from model_training import onnx_quantize

    # Each model labels its own top half: {0, 1} against {0, 2}: chips 1 and 2 flip.
    a = np.array([0.9, 0.8, 0.1, 0.2])
    b = np.array([0.9, 0.1, 0.8, 0.2])
    assert onnx_quantize._flip_share(a, b, 0.5) == 0.5
    # A monotone change of every score flips nothing, however large.
    assert onnx_quantize._flip_share(a, a**3, 0.5) == 0.0
    verdict = onnx_quantize.judge_classifier(np.array([1, 1, 0, 0]), a, b)
    assert verdict["within_tolerance"] is False and verdict["label_flip_share"] == 0.5
    # int8 AUC: positives 0.9 and 0.1 against negatives 0.8 and 0.2 win 2 of 4 pairs.
    assert verdict["fp32"]["auc"] == 1.0 and verdict["int8"]["auc"] == 0.5


def test_score_refuses_onnxruntime_without_the_file(tmp_path, capsys):
    model = score_helpers.save_classifier(str(tmp_path / "model"), kind="brightness")
    chips = score_helpers.write_shards(str(tmp_path / "chips"), [score_helpers.chip_record("a", 3)])
    argv = ["score", "--chips", chips[0], "--model", model, "--residential-fraction", "0.5"]
    argv += ["--output", str(tmp_path / "out"), "--runtime", "onnxruntime"]
    assert cli.main(argv) == 2
    assert "convert onnx" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.slow  # quantizes a model
def test_int8_scores_stay_float_and_are_judged_on_chips_calibration_did_not_see(
    classifier, tmp_path
):
    import shutil

    from model_training import onnx_quantize

    model = str(tmp_path / "model")
    shutil.copytree(classifier, model)
    rng = np.random.default_rng(5)
    records = [
        contracts.encode_chip(contracts.Chip(f"fp-{i:04d}", _jpeg(rng, SIZE), label=i % 2))
        for i in range(640)
    ]
    score_helpers.write_shards(str(tmp_path / "chips"), records, 1)  # one shard: read in order
    verdict = onnx_quantize.quantize_beside(model, str(tmp_path / "chips" / "*"), 640)
    assert verdict["calibration_items"] == 320 and verdict["chips"] == 320
    held_out = records[320:]
    fp32 = onnx_runtime.OnnxClassifierScorer(model).score(held_out)
    int8 = onnx_runtime.OnnxClassifierScorer(model, int8=True).score(held_out)
    assert len(np.unique(fp32)) == 320  # 320 different chips, 320 different scores
    # A score rounded to 8 bits (the sigmoid's output quantized) takes at most 256 values.
    assert len(np.unique(int8)) > 300
    # The verdict's figures are those of the held-out chips, not of all 640.
    assert verdict["max_score_difference"] == pytest.approx(np.max(np.abs(fp32 - int8)), abs=1e-6)
    assert verdict["fraction"] == 0.5
    assert verdict["why"].endswith("on 320 chips calibration did not see")


@pytest.mark.slow  # exports and converts a model (the module's classifier)
def test_a_batch_run_in_parts_gives_the_whole_batchs_outputs_in_order(classifier, monkeypatch):
    monkeypatch.setenv(onnx_runtime.THREADS_ENV, "3")
    path = onnx_runtime.onnx_file(classifier)
    parts = onnx_runtime.SessionRunner(path)
    whole = onnx_runtime.SessionRunner(path, threads=1)
    assert (parts.parts, whole.parts) == (3, 1)
    name = parts.session.get_inputs()[0].name
    images = np.random.default_rng(5).uniform(0, 255, (7, SIZE, SIZE, 3)).astype(np.float32)
    got = parts.run(name, images)
    one_by_one = np.concatenate([whole.run(name, images[i : i + 1]) for i in range(len(images))])
    assert got.shape == one_by_one.shape == (7,)
    np.testing.assert_allclose(got, one_by_one, atol=1e-6)  # each chip's own score, in order
    assert np.ptp(got) > 1e-3  # the images score differently, so an order mix-up would show
    np.testing.assert_allclose(parts.run(name, images[:2]), one_by_one[:2], atol=1e-6)


def test_a_cores_variable_that_is_not_a_count_is_a_config_error(monkeypatch):
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(onnx_runtime.THREADS_ENV, bad)
        with pytest.raises(ConfigError, match=onnx_runtime.THREADS_ENV):
            onnx_runtime.cpu_cores()
    monkeypatch.setenv(onnx_runtime.THREADS_ENV, "3")
    assert onnx_runtime.cpu_cores() == 3
