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
