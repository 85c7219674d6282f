"""Chip shards: ``PREFIX-00000-of-000NN.tfrecord[.gz]``, replacing older runs.

Beam's ``WriteToTFRecord`` writes each shard under a temporary name and
renames the set into place when the write is complete, so a killed run
leaves no shard that looks finished. Shards of an earlier run with another
shard count are removed afterwards, so ``PREFIX-*`` always globs exactly one
complete set.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes

from footprints import contracts
from pipeline.ptransform import DataclassTransform
from pipeline.writers.files import RemoveStaleShards


def shard_glob(prefix: str) -> str:
    """The glob of every shard, plain or GZIP, written under ``prefix``."""
    return f"{prefix}-*-of-*.tfrecord*"


@dataclasses.dataclass
class WriteChips(DataclassTransform):
    """Writes serialized chip records as a complete, sharded set.

    Attributes:
        prefix: Path prefix of the shards (``out/chips/area``).
        num_shards: Number of shards (fixed, so the names are predictable).
        compression: ``none`` or ``gzip``.

    Returns:
        One element: the sorted list of shard paths.
    """

    prefix: str
    num_shards: int = 4
    compression: str = "none"

    def expand(self, records):
        """Writes the shards and removes stale ones; returns the list of files."""
        gzip = self.compression == "gzip"
        written = records | "WriteTFRecord" >> beam.io.WriteToTFRecord(
            self.prefix,
            file_name_suffix=contracts.shard_suffix(self.compression),
            num_shards=self.num_shards,
            shard_name_template=contracts.SHARD_TEMPLATE,
            compression_type=CompressionTypes.GZIP if gzip else CompressionTypes.UNCOMPRESSED,
        )
        return written | "ReplaceOlder" >> RemoveStaleShards(shard_glob(self.prefix))
