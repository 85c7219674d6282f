"""Rerun-safe file outputs: sharded writes that replace, and atomic JSON.

Beam's file sinks already write every shard to a temporary folder and rename
it into place when the whole write has finished, so a killed job leaves no
final-looking shard behind. Two things remain for a rerun into the same
folder, and this module does them:

* shards of an earlier run with another shard count (``-of-00004`` when this
  run wrote ``-of-00002``) would be read back together with the new ones by
  any glob; :class:`RemoveStaleShards` deletes them once the new set is
  complete;
* single files written by the driver or a DoFn (``summary.json``) go through
  :func:`write_json_atomic`: a temporary name, then a rename.

Everything goes through Beam's ``FileSystems``, so the same code writes to a
local disk, ``gs://`` or any filesystem Beam knows.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import uuid
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems


def join(directory: str, *names: str) -> str:
    """Joins path parts for local paths and URLs alike."""
    return FileSystems.join(directory, *names)


def stale_shards(pattern: str, written: Iterable[str]) -> list[str]:
    """Files matching ``pattern`` that are not in ``written``, sorted."""
    keep = {posixpath.normpath(p) for p in written}
    matched = FileSystems.match([pattern])[0].metadata_list
    return sorted(m.path for m in matched if posixpath.normpath(m.path) not in keep)


def remove_stale_shards(written: list[str], pattern: str) -> list[str]:
    """Deletes the files matching ``pattern`` that this run did not write.

    Returns:
        The files this run wrote (``written``), sorted, so the step can be
        chained.
    """
    stale = stale_shards(pattern, written)
    if stale:
        FileSystems.delete(stale)
    return sorted(written)


@dataclasses.dataclass
class RemoveStaleShards(beam.PTransform):
    """After a sharded write, deletes older shards that match ``pattern``.

    Input: the PCollection of file names a Beam file sink returns. Output: one
    element, the sorted list of this run's files.
    """

    pattern: str

    def __post_init__(self):
        super().__init__()

    def expand(self, written):
        return (written
                | "AllWritten" >> beam.combiners.ToList()
                | "DeleteStale" >> beam.Map(remove_stale_shards, self.pattern))


def write_json_atomic(path: str, obj: Any) -> str:
    """Writes ``obj`` as indented JSON to ``path`` through a temporary name."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(tmp, mime_type="application/json") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8"))
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([tmp], [path])
    return path


@dataclasses.dataclass
class WriteJson(beam.PTransform):
    """Writes the single element of a PCollection as a JSON file, atomically."""

    path: str

    def __post_init__(self):
        super().__init__()

    def expand(self, pcoll):
        return pcoll | "WriteJsonFile" >> beam.Map(lambda obj, path: write_json_atomic(path, obj),
                                                   self.path)


def read_json(path: str) -> Any:
    """Reads a JSON file through Beam's FileSystems."""
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))
