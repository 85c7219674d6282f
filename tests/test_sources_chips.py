"""The chip shard reader and the pre-batch validation, without a pipeline."""

from __future__ import annotations

import gzip
import io
import struct

import pytest
import shapely

from footprints import contracts
from footprints.contracts import ErrorRecord
from pipeline.sources.chips import (
    MAX_CHIP_PIXELS,
    ShardDamage,
    image_problem,
    image_size,
    iter_tfrecords,
    masked_crc32c,
    peek_crs,
    read_shard,
    validate_chip,
)
from pipeline.values import LocatedRecord
from tests.score_helpers import (
    bomb_png,
    chip_record,
    jpeg,
    png,
    with_raw_features,
    write_shards,
)


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


# --------------------------------------------------------------------------
# One bad field costs one record: every field is checked where it is read
# --------------------------------------------------------------------------

_POLYGON = shapely.box(500000, 4600000, 500012, 4600009).wkb


def _record(footprint_id="fp-9", image=None, **raw):
    chip = contracts.Chip(
        footprint_id,
        image if image is not None else png(90, size=16),
        region="county-a",
        label=1,
        wkb=_POLYGON,
        crs="EPSG:32615",
    )
    return with_raw_features(contracts.encode_chip(chip), **raw)


def _validate(record, **kwargs):
    return validate_chip(
        LocatedRecord("chips-00000-of-00001.tfrecord", "offset 640", record), **kwargs
    )


@pytest.mark.parametrize(
    "raw, reason, record, words",
    [
        # Latin-1 bytes from a system that does not write UTF-8.
        ({"region": "Norrköping".encode("latin-1")}, "invalid_record", "offset 640", "'region'"),
        ({"footprint__crs": b"EPSG:\xff26915"}, "invalid_record", "offset 640", "'footprint/crs'"),
        ({"footprint__wkb": b"\x01\x03\x00\x00\x00garbage"}, "invalid_geometry", "fp-9", "not WKB"),
        ({"footprint__wkb": shapely.Point(500000, 4600000).wkb}, "not_a_polygon", "fp-9", "Point"),
        ({"footprint__wkb": shapely.Polygon().wkb}, "missing_geometry", "fp-9", "empty Polygon"),
        ({"footprint__crs": b"EPSG:999999"}, "invalid_crs", "fp-9", "'EPSG:999999'"),
        ({"footprint__crs": b"UTM zone 15"}, "invalid_crs", "fp-9", "EPSG:26915"),
        ({"image__mask": b"GIF89a not a png mask"}, "undecodable_image", "fp-9", "mask"),
    ],
)
def test_a_bad_field_is_a_dead_letter_with_its_reason(raw, reason, record, words):
    # Each of these chips validated before and failed a later stage (the text
    # decode, ToRows' shapely parse or pyproj), taking the whole job with it.
    good = _validate(_record())
    assert isinstance(good, contracts.Chip) and good.crs == "EPSG:32615"
    bad = _validate(_record(**raw))
    assert isinstance(bad, ErrorRecord), bad
    assert (bad.source, bad.record, bad.stage, bad.error) == (
        "chips-00000-of-00001.tfrecord",
        record,
        "validate",
        reason,
    )
    assert words in bad.message and "offset 640" in bad.message + bad.record


def test_the_decode_limit_is_checked_on_the_header_before_any_decode():
    bomb = bomb_png(5000, 4000)  # 20 megapixels in a few kilobytes: over the default limit
    assert len(bomb) < 64 * 1024 and 5000 * 4000 > MAX_CHIP_PIXELS
    assert image_problem(bomb) is None  # a valid, complete PNG
    bad = _validate(_record(image=bomb))
    assert (bad.record, bad.error) == ("fp-9", "image_too_large")
    assert "5000 x 4000 = 20,000,000 pixels" in bad.message
    assert f"{MAX_CHIP_PIXELS:,}" in bad.message and "--max-chip-pixels" in bad.message
    # Raised, it passes; a limit of one pixel less than a chip rejects it.
    assert isinstance(_validate(_record(image=bomb), max_pixels=20_000_000), contracts.Chip)
    small = _record(image=png(3, size=16))
    assert isinstance(_validate(small, max_pixels=256), contracts.Chip)
    assert _validate(small, max_pixels=255).error == "image_too_large"

    # A JPEG whose frame header declares 20000 x 20000, and a mask that does.
    big_jpeg = jpeg(120, size=16, declared=(20000, 20000))
    assert image_size(big_jpeg) == (20000, 20000) and image_size(jpeg(1, 24)) == (24, 24)
    assert _validate(_record(image=big_jpeg)).error == "image_too_large"
    mask_bomb = _record(image__mask=bomb_png(5000, 4000))
    bad_mask = _validate(mask_bomb)
    assert bad_mask.error == "image_too_large" and "mask" in bad_mask.message


def test_peek_crs_skips_records_with_a_bad_crs(tmp_path):
    records = [
        _record("fp-1", footprint__crs=b"EPSG:999999"),
        chip_record("fp-2", 3, wkb=_POLYGON, crs="EPSG:26915"),
    ]
    paths = write_shards(str(tmp_path), records, num_shards=1)
    assert peek_crs(paths) == "EPSG:26915"


@pytest.mark.parametrize(
    "mode, options",
    [
        ("RGB", {}),
        ("RGB", {"progressive": True}),
        ("L", {}),
        ("CMYK", {}),
        ("RGB", {"exif": b"Exif\x00\x00" + bytes(300), "quality": 40}),
    ],
)
def test_image_size_reads_what_pillow_reads(mode, options):
    import numpy as np
    from PIL import Image, JpegImagePlugin

    rng = np.random.default_rng(4)
    for width, height in [(96, 96), (17, 300), (4000, 3)]:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buf, format="JPEG", **options)
        data = buf.getvalue()
        pillow = JpegImagePlugin.JpegImageFile(io.BytesIO(data)).size
        assert image_size(data) == pillow == (width, height)
        buf = io.BytesIO()
        Image.fromarray(pixels).convert("RGB" if mode == "CMYK" else mode).save(buf, "PNG")
        assert image_size(buf.getvalue()) == (width, height)


def test_a_jpeg_without_a_frame_header_is_undecodable():
    data = jpeg(30, 16)
    sof = data.index(b"\xff\xc0")
    no_frame = data[:sof] + b"\xff\xfe\x00\x04ab" + data[-2:]  # a comment, then the end
    with pytest.raises(ValueError, match="frame header"):
        image_size(no_frame)
    bad = _validate(_record(image=no_frame))
    assert (bad.error, bad.record) == ("undecodable_image", "fp-9")
