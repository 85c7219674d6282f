"""The chip shard reader and the pre-batch validation, without a pipeline."""

from __future__ import annotations

import gzip
import io
import struct

import pytest

from footprints import contracts
from footprints.contracts import ErrorRecord
from pipeline.sources.chips import (
    LocatedRecord,
    ShardDamage,
    image_problem,
    iter_tfrecords,
    masked_crc32c,
    read_shard,
    validate_chip,
)
from tests.score_helpers import chip_record, png, write_shards


@pytest.fixture(scope="module")
def records():
    return [chip_record(f"fp-{i}", i * 10 % 256, region="a") for i in range(20)]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_reader_matches_tensorflow(tmp_path, records, compression):
    import tensorflow as tf

    (path,) = write_shards(str(tmp_path), records, 1, compression)
    ours = [r.record for r in read_shard(path)]
    theirs = [
        r.numpy()
        for r in tf.data.TFRecordDataset(
            path, compression_type="GZIP" if compression == "gzip" else ""
        )
    ]
    assert ours == theirs == records


def test_offsets_are_record_starts(tmp_path, records):
    (path,) = write_shards(str(tmp_path), records[:3], 1)
    offsets = [r.position for r in read_shard(path)]
    sizes = [len(r) + 16 for r in records[:2]]
    assert offsets == ["offset 0", f"offset {sizes[0]}", f"offset {sizes[0] + sizes[1]}"]


def _framed(records):
    buf = io.BytesIO()
    offsets = []
    for r in records:
        offsets.append(buf.tell())
        length = struct.pack("<Q", len(r))
        buf.write(
            length
            + struct.pack("<I", masked_crc32c(length))
            + r
            + struct.pack("<I", masked_crc32c(r))
        )
    return buf.getvalue(), offsets


@pytest.mark.parametrize("cut", [5, 12, 30, -3])
def test_truncated_stream_yields_records_before_the_damage(records, cut):
    data, offsets = _framed(records[:4])
    end = offsets[3] + cut if cut > 0 else len(data) + cut
    got = []
    with pytest.raises(ShardDamage) as damage:
        for _offset, r in iter_tfrecords(io.BytesIO(data[:end])):
            got.append(r)
    assert got == records[:3]
    assert damage.value.reason == "truncated_shard"
    assert damage.value.offset == offsets[3]


def test_corrupt_data_crc_is_caught_at_its_record(records):
    data, offsets = _framed(records[:4])
    data = bytearray(data)
    data[offsets[2] + 20] ^= 0xFF
    got = []
    with pytest.raises(ShardDamage) as damage:
        for _, r in iter_tfrecords(io.BytesIO(bytes(data))):
            got.append(r)
    assert got == records[:2]
    assert (damage.value.reason, damage.value.offset) == ("corrupt_shard", offsets[2])


def test_corrupt_length_crc_is_caught(records):
    data, offsets = _framed(records[:2])
    data = bytearray(data)
    data[offsets[1]] ^= 0x01  # the length no longer matches its CRC
    with pytest.raises(ShardDamage, match="length fails"):
        list(iter_tfrecords(io.BytesIO(bytes(data))))


def test_damaged_shard_gives_records_then_one_dead_letter(tmp_path, records):
    data, offsets = _framed(records[:5])
    path = tmp_path / "chips-00000-of-00001.tfrecord"
    path.write_bytes(data[: offsets[4] + 7])
    items = list(read_shard(str(path)))
    assert [i.record for i in items[:-1]] == records[:4]
    err = items[-1]
    assert isinstance(err, ErrorRecord)
    assert (err.source, err.record, err.stage, err.error) == (
        str(path),
        f"offset {offsets[4]}",
        "read",
        "truncated_shard",
    )
    assert "Rewrite the shard" in err.message


def test_truncated_gzip_shard(tmp_path, records):
    data, _ = _framed(records[:10])
    packed = gzip.compress(data)
    path = tmp_path / "chips-00000-of-00001.tfrecord.gz"
    path.write_bytes(packed[: len(packed) // 2])
    items = list(read_shard(str(path)))
    assert isinstance(items[-1], ErrorRecord)
    assert items[-1].error in ("truncated_shard", "unreadable_shard")
    assert "(uncompressed stream)" in items[-1].record
    assert [i.record for i in items[:-1]] == records[: len(items) - 1]


def test_image_problem():
    from PIL import Image

    good = png(7)
    assert image_problem(good) is None
    assert "truncated" in image_problem(good[:-20])
    assert "neither PNG nor JPEG" in image_problem(b"GIF89a....")
    bad_header = bytearray(good)
    bad_header[18] ^= 0xFF  # width byte: the IHDR CRC no longer matches
    assert "CRC" in image_problem(bytes(bad_header))
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    assert image_problem(jpeg) is None
    assert "JPEG is truncated" in image_problem(jpeg[:-10])


def test_validate_chip_dead_letters_with_reason():
    ok = validate_chip(LocatedRecord("s", "offset 0", chip_record("fp-1", 3, region="x")))
    assert ok.footprint_id == "fp-1" and ok.region == "x"

    not_example = validate_chip(LocatedRecord("s", "offset 16", b"\xff\xfe not a proto"))
    assert (not_example.record, not_example.error) == ("offset 16", "invalid_record")

    from tensorflow.core.example import example_pb2

    ex = example_pb2.Example()
    ex.features.feature[contracts.IMAGE_KEY].bytes_list.value.append(png(1))
    no_id = validate_chip(LocatedRecord("s", "offset 32", ex.SerializeToString()))
    assert no_id.error == "invalid_record" and "footprint/id" in no_id.message

    garbage_image = contracts.encode_chip(contracts.Chip("fp-2", b"not an image"))
    bad = validate_chip(LocatedRecord("s", "offset 48", garbage_image))
    assert (bad.record, bad.stage, bad.error) == ("fp-2", "validate", "undecodable_image")
