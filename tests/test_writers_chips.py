"""Chip shard names: the glob a run's shards are found by (``pipeline.writers.chips``)."""

import fnmatch

from footprints import contracts
from pipeline.writers.chips import shard_glob


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
