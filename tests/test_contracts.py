import json

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf

from footprints import contracts
from footprints.errors import ContractError


def test_chip_round_trip_keeps_every_feature():
    chip = contracts.Chip(
        "fp-1", b"\x89PNGdata", region="county-a", label=1, wkb=b"\x01\x03", crs="EPSG:32615"
    )
    assert contracts.decode_chip(contracts.encode_chip(chip)) == chip


def test_chip_round_trip_optional_features_absent():
    chip = contracts.Chip("ümlaut/é", b"jpeg")
    record = contracts.encode_chip(chip)
    example = tf.train.Example.FromString(record)
    assert set(example.features.feature) == {contracts.IMAGE_KEY, contracts.ID_KEY}
    assert contracts.decode_chip(record) == chip


def test_records_parse_with_tf_feature_spec():
    """The contract's names and types are what tf.io.parse_example sees."""
    records = [
        contracts.encode_chip(contracts.Chip(f"id{i}", b"img", label=i % 2)) for i in range(3)
    ]
    parsed = tf.io.parse_example(
        records,
        {
            contracts.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            contracts.ID_KEY: tf.io.FixedLenFeature([], tf.string),
            contracts.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        },
    )
    assert parsed[contracts.ID_KEY].numpy().tolist() == [b"id0", b"id1", b"id2"]
    assert parsed[contracts.LABEL_KEY].numpy().tolist() == [0, 1, 0]


def _example(**features) -> bytes:
    ex = tf.train.Example()
    for key, value in features.items():
        if isinstance(value, int):
            ex.features.feature[key].int64_list.value.append(value)
        else:
            ex.features.feature[key].bytes_list.value.append(value)
    return ex.SerializeToString()


@pytest.mark.parametrize(
    "record, fragment",
    [
        (_example(**{"footprint/id": b"a"}), "image/encoded"),
        (_example(**{"image/encoded": b"x"}), "footprint/id"),
        (_example(**{"image/encoded": b"x", "footprint/id": b"a", "label": b"1"}), "int64"),
        (_example(**{"image/encoded": b"x", "footprint/id": b"a", "label": 7}), "label 7"),
        (_example(**{"image/encoded": b"x", "footprint/id": b""}), "non-empty"),
        (b"\xff\xfe not a proto", "tf.train.Example"),
    ],
)
def test_decode_rejects_records_off_contract(record, fragment):
    with pytest.raises(ContractError, match=fragment):
        contracts.decode_chip(record)


def test_polygon_without_crs_is_rejected():
    with pytest.raises(ContractError, match="CRS"):
        contracts.Chip("a", b"x", wkb=b"\x01")


def test_shard_names_round_trip():
    name = contracts.shard_name("out/chips/area", 3, 12, "gzip")
    assert name == "out/chips/area-00003-of-00012.tfrecord.gz"
    assert contracts.parse_shard_name(name) == ("out/chips/area", 3, 12, "gzip")
    assert contracts.compression_of(name) == "gzip"
    with pytest.raises(ContractError):
        contracts.parse_shard_name("area-3-of-12.tfrecord")


def test_segmenter_assets_json_round_trip_and_validation():
    assets = contracts.SegmenterAssets(
        window_size=256,
        bands=(1, 2, 3, 4),
        raw_dtype="uint16",
        offset=(10.0,) * 4,
        scale=(0.06,) * 4,
        band_names=("red", "green", "blue", "nir"),
        receptive_halo=32,
    )
    back = contracts.SegmenterAssets.from_json(assets.to_json())
    assert back == assets and back.band_count == 4
    with pytest.raises(ContractError, match="one value per band"):
        contracts.SegmenterAssets(256, (1, 2), "uint8", (0.0,), (1.0, 1.0))
    bad = json.loads(assets.to_json())
    bad["colour"] = 1
    with pytest.raises(ContractError, match="unknown keys"):
        contracts.SegmenterAssets.from_json(json.dumps(bad))


def test_scale_to_model_input_maps_uint16_to_uint8():
    assets = contracts.SegmenterAssets(
        64, (1, 2), "uint16", offset=(100.0, 0.0), scale=(0.1, 255 / 4095)
    )
    raw = np.array([[[100, 0], [2650, 4095], [60000, 2047]]], dtype=np.uint16)
    out = contracts.scale_to_model_input(raw, assets)
    assert out.dtype == np.uint8
    assert out[0].tolist() == [[0, 0], [255, 255], [255, 127]]
    with pytest.raises(ContractError, match="bands"):
        contracts.scale_to_model_input(np.zeros((2, 2, 3), np.uint16), assets)


class _Classifier(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        return {"score": tf.zeros_like(examples, dtype=tf.float32)}


class _WrongOutput(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        return {"probability": tf.zeros_like(examples, dtype=tf.float32)}


def test_classifier_contract_check(tmp_path):
    good, bad = _Classifier(), _WrongOutput()
    tf.saved_model.save(good, str(tmp_path / "good"), signatures={"serving_default": good.serve})
    tf.saved_model.save(bad, str(tmp_path / "bad"), signatures={"serving_default": bad.serve})
    contracts.check_classifier_model(str(tmp_path / "good"))
    with pytest.raises(ContractError, match="'score'"):
        contracts.check_classifier_model(str(tmp_path / "bad"))
    with pytest.raises(ContractError, match="not a SavedModel"):
        contracts.check_classifier_model(str(tmp_path / "missing"))


def test_segmenter_contract_needs_assets(tmp_path):
    class Seg(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        def serve(self, images):
            return {"mask": tf.cast(images[..., 0], tf.float32) / 255.0}

    seg = Seg()
    path = tmp_path / "seg"
    tf.saved_model.save(seg, str(path), signatures={"serving_default": seg.serve})
    with pytest.raises(ContractError, match="segmenter.json"):
        contracts.check_segmenter_model(str(path))
    (path / "assets").mkdir(exist_ok=True)
    (path / "assets" / contracts.SEGMENTER_ASSETS).write_text(
        contracts.SegmenterAssets.identity(64, 3).to_json()
    )
    assert contracts.check_segmenter_model(str(path)).window_size == 64
    (path / "assets" / contracts.SEGMENTER_ASSETS).write_text(
        contracts.SegmenterAssets.identity(64, 4).to_json()
    )
    with pytest.raises(ContractError, match="3 channels"):
        contracts.check_segmenter_model(str(path))


def test_output_schemas_accept_contract_rows_and_reject_others():
    row = dict(
        footprint_id="a",
        region="all",
        score=0.7,
        percentile=0.5,
        is_residential=True,
        label=None,
        threshold=0.6,
        target_fraction=0.4,
        classifier_model_id="m",
        run_id="r",
        geometry=None,
    )
    table = contracts.validate_rows([row], contracts.SCORES_SCHEMA)
    assert table.schema.field("score").type == pa.float32()
    with pytest.raises(ContractError):
        contracts.validate_rows([{**row, "score": "high"}], contracts.SCORES_SCHEMA)
    err = contracts.ErrorRecord("s.tfrecord", "12", "read", "corrupt_shard", "bad crc")
    assert contracts.validate_rows([err.to_row()], contracts.ERRORS_SCHEMA).num_rows == 1


def test_a_dead_letter_takes_only_a_reason_code_and_writes_it_as_plain_text():
    from footprints.errors import Reason

    err = contracts.ErrorRecord("s.tfrecord", "12", "read", "corrupt_shard", "bad crc")
    assert err.error == Reason.CORRUPT_SHARD and type(err.error) is str
    err = contracts.ErrorRecord("s.tfrecord", "12", "read", Reason.CORRUPT_SHARD, "bad crc")
    assert type(err.error) is str  # plain text in Beam (a key coder needs no enum)
    row = err.to_row()
    assert type(row["error"]) is str and row["error"] == "corrupt_shard"
    with pytest.raises(ContractError, match="'corrupt' is not a reason code"):
        contracts.ErrorRecord("s.tfrecord", "12", "read", "corrupt", "bad crc")


def test_every_rejection_carrier_makes_the_same_dead_letter():
    """ChipError, TileRejected and ShardDamage were three shapes (.error, .reason, .reason)."""
    from footprints.errors import InputError, Reason
    from footprints.tiles import TileRejected
    from pipeline.chipping import ChipError
    from pipeline.sources.chips import ShardDamage

    carriers = [
        ChipError(Reason.NO_RASTER, "no tile under it"),
        TileRejected(Reason.NO_CRS, "no CRS"),
        ShardDamage(7, Reason.TRUNCATED_SHARD, "ends early"),
    ]
    rows = [c.to_error("src", "stage", record="r", hint="fix it").to_row() for c in carriers]
    assert all(isinstance(c, contracts.Rejected) for c in carriers)
    assert isinstance(carriers[1], InputError)  # still the user's error when read_header raises
    assert [r["error"] for r in rows] == ["no_raster", "no_crs", "truncated_shard"]
    assert [r["message"] for r in rows] == [
        "no tile under it; fix it",
        "no CRS; fix it",
        "truncated_shard at byte 7: ends early; fix it",
    ]


def test_a_model_id_column_is_named_after_its_model_in_every_table():
    """scores/ said ``model_id`` and classified/ ``classifier_model_id`` for one value."""
    tables = {
        "scores": contracts.SCORES_SCHEMA,
        "footprints": contracts.FOOTPRINTS_SCHEMA,
        "classified": contracts.CLASSIFIED_SCHEMA,
    }
    ids = {
        name: {f for f in schema.names if f.endswith("model_id")} for name, schema in tables.items()
    }
    assert ids == {
        "scores": {"classifier_model_id"},
        "footprints": {"segmenter_model_id"},
        "classified": {"segmenter_model_id", "classifier_model_id"},
    }
    for name in ("scores", "classified"):
        assert tables[name].field("classifier_model_id").type == pa.string()


def test_pipeline_names_every_reason_by_its_member_not_a_string_literal():
    """One vocabulary: a dead letter or rejection built from a literal bypasses Reason's names.

    ErrorRecord refuses unknown codes at run time; this finds literals on paths no test runs.
    """
    import ast
    import pathlib

    carriers = {"ErrorRecord", "ChipError", "TileRejected", "ShardDamage", "InferenceFailure"}
    root = pathlib.Path(__file__).resolve().parents[1]
    found = []
    for path in sorted((root / "pipeline").rglob("*.py")) + [root / "footprints" / "tiles.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            reason = next((k.value for k in node.keywords if k.arg in ("error", "reason")), None)
            if reason is None and name in carriers and node.args:
                # ShardDamage(offset, reason, ...); ErrorRecord(source, record, stage, error, ...)
                position = {"ShardDamage": 1, "ErrorRecord": 3}.get(name, 0)
                reason = node.args[position] if len(node.args) > position else None
            if name in carriers and isinstance(reason, ast.Constant):
                found.append(f"{path.relative_to(root)}:{node.lineno} {name}({reason.value!r})")
    assert found == []
