"""Chip shards (``pipeline.writers.chips``): the glob they are found by, the streaming write."""

import fnmatch
import os

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from footprints import contracts
from pipeline.writers.chips import WriteChips, shard_glob, shard_of


def test_shard_glob_matches_every_shard_name_plain_and_gzip_and_nothing_else():
    pattern = shard_glob("out/chips/area")
    for compression in ("none", "gzip"):
        for index, total in ((0, 1), (3, 4)):
            name = contracts.shard_name("out/chips/area", index, total, compression)
            assert fnmatch.fnmatch(name, pattern), name
    for other in (
        "out/chips/area-summary.json",
        "out/chips/area-errors/part-00000-of-00001.parquet",
        "out/chips/other-00000-of-00001.tfrecord",
    ):
        assert not fnmatch.fnmatch(other, pattern), other


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_write_chips_streams_every_record_into_its_crc_shard(tmp_path, compression):
    import tensorflow as tf

    prefix = str(tmp_path / "chips" / "area")
    # Records of uneven sizes, as JPEG chips are; 3 shards, one may stay empty.
    records = [f"record-{i}-".encode() * (1 + i % 7) for i in range(40)]
    with beam.Pipeline() as p:
        files = p | beam.Create(records) | WriteChips(prefix, 3, compression)
        assert_that(
            files,
            equal_to([[contracts.shard_name(prefix, i, 3, compression) for i in range(3)]]),
        )
    read_back = []
    for i in range(3):
        path = contracts.shard_name(prefix, i, 3, compression)
        kind = "GZIP" if compression == "gzip" else ""
        shard = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type=kind)]
        assert all(shard_of(r, 3) == i for r in shard), path
        read_back += shard
    assert sorted(read_back) == sorted(records)
    # Only the shards remain beside the prefix: the parts folder is gone.
    assert sorted(os.listdir(tmp_path / "chips")) == sorted(
        os.path.basename(contracts.shard_name(prefix, i, 3, compression)) for i in range(3)
    )


def test_chip_records_are_tensorflow_examples_byte_for_byte_without_tensorflow():
    import subprocess
    import sys

    # Written in a process that never imports TensorFlow...
    code = (
        "import sys; from footprints import contracts; "
        "chip = contracts.Chip(footprint_id='b1', image=b'\\xff\\xd8jpeg', mask=b'png', "
        "region='north', label=1, wkb=b'\\x01\\x03', crs='EPSG:4326'); "
        "sys.stdout.buffer.write(contracts.encode_chip(chip)); "
        "assert 'tensorflow' not in sys.modules"
    )
    record = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, env=dict(os.environ)
    ).stdout
    # ...it is the tf.train.Example TensorFlow writes for the same features.
    import tensorflow as tf

    def feature(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    want = tf.train.Example(
        features=tf.train.Features(
            feature={
                contracts.IMAGE_KEY: feature(b"\xff\xd8jpeg"),
                contracts.ID_KEY: feature(b"b1"),
                contracts.REGION_KEY: feature(b"north"),
                contracts.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
                contracts.WKB_KEY: feature(b"\x01\x03"),
                contracts.CRS_KEY: feature(b"EPSG:4326"),
                contracts.MASK_KEY: feature(b"png"),
            }
        )
    )
    assert record == want.SerializeToString(deterministic=True)
    assert contracts.decode_chip(want.SerializeToString()).footprint_id == "b1"


def test_a_killed_runs_parts_folder_is_cleared_by_the_next_run_and_never_globbed():
    from pipeline.writers.chips import parts_folder
    from pipeline.writers.files import OutputLocation

    prefix = "out/chips/area"
    name = os.path.basename(parts_folder(prefix))
    assert OutputLocation(prefix, prefix=True).recognises(name)  # claim_output removes it
    assert not fnmatch.fnmatch(f"out/chips/{name}/00000-x.tfrecord", shard_glob(prefix))
