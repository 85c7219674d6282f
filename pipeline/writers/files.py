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

A run also owns its output location (:class:`OutputLocation`: a folder for
``score`` and ``segment``, a path prefix for ``prepare``).
:func:`check_output` validates it before anything is read or built (creatable,
writable, not a file, not under a file; ``gs://`` syntax, and access where
credentials exist) and refuses a folder holding something no footprints run
writes, unless ``--overwrite``; :func:`claim_output` then removes everything
an earlier run of any command could have left there (a ``scores.csv`` from a
``--csv`` run, ``scores/`` from a ``segment --classifier`` run), so nothing
stale sits beside the new outputs; :func:`written_files` lists what the run
wrote, for ``summary.json``'s ``files``.

Everything goes through Beam's ``FileSystems``, so the same code writes to a
local disk, ``gs://`` or any filesystem Beam knows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import posixpath
import re
import shutil
import uuid
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from footprints.errors import ConfigError
from footprints.files import match_files
from pipeline.ptransform import DataclassTransform

#: Where scoring parks its scored batches between passes (removed when the job ends;
#: a killed run's folder is cleared by the next run): see ``pipeline.thresholds.spill``.
SPILL_DIR = ".spill"
#: What any footprints run writes into its output folder (score, segment, report).
FOLDER_OUTPUTS = frozenset(
    {
        SPILL_DIR,
        "summary.json",
        "report.html",
        "masks",
        "stac",
        "truth",
        *(
            f"{table}{suffix}"
            for table in ("scores", "errors", "footprints", "classified")
            for suffix in ("", ".csv", ".bigquery.json")
        ),
    }
)
#: Names beside a prepare prefix ``P``: ``P-00000-of-00004.tfrecord[.gz]``, ``P-errors``, ...
_PREFIX_OUTPUT = re.compile(
    r"-(\d{5}-of-\d{5}\.tfrecord(\.gz)?|errors(\.bigquery\.json)?|summary\.json|parts)$"
)
#: Temporary names of an interrupted atomic write (see :func:`write_json_atomic`).
_TMP = re.compile(r"\.tmp-[0-9a-f]{32}$")
_GCS = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")


def join(directory: str, *names: str) -> str:
    """Joins path parts for local paths and URLs alike."""
    return FileSystems.join(directory, *names)


def stale_shards(pattern: str, written: Iterable[str]) -> list[str]:
    """Files matching ``pattern`` that are not in ``written``, sorted."""
    keep = {posixpath.normpath(p) for p in written}
    return [p for p in match_files(pattern) if posixpath.normpath(p) not in keep]


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
class RemoveStaleShards(DataclassTransform):
    """After a sharded write, deletes older shards that match ``pattern``.

    Input: the PCollection of file names a Beam file sink returns. Output: one
    element, the sorted list of this run's files.
    """

    pattern: str

    def expand(self, written):
        """Deletes the stale shards; returns this run's sorted file list."""
        return (
            written
            | "AllWritten" >> beam.combiners.ToList()
            | "DeleteStale" >> beam.Map(remove_stale_shards, self.pattern)
        )


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
class WriteJson(DataclassTransform):
    """Writes the single element of a PCollection as a JSON file, atomically."""

    path: str

    def expand(self, pcoll):
        """Writes the element to ``path``."""
        return pcoll | "WriteJsonFile" >> beam.Map(
            lambda obj, path: write_json_atomic(path, obj), self.path
        )


def read_json(path: str) -> Any:
    """Reads a JSON file through Beam's FileSystems."""
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


@dataclasses.dataclass(frozen=True)
class OutputLocation:
    """Where a run writes: a folder (``score``, ``segment``) or a prefix (``prepare``).

    Attributes:
        path: ``--output`` as given: ``out/score`` or ``gs://b/runs/x``; for a
            prefix, ``out/chips/area`` (shards ``out/chips/area-00000-of-...``).
        prefix: True when ``path`` is a path prefix.
    """

    path: str
    prefix: bool = False

    @property
    def folder(self) -> str:
        """The folder the outputs lie in; ``files`` in summary.json are relative to it."""
        if not self.prefix:
            return self.path.rstrip("/") or "/"
        return (
            posixpath.dirname(self.path)
            if "://" in self.path
            else (os.path.dirname(self.path) or ".")
        )

    @property
    def summary_path(self) -> str:
        """Path of the run's summary JSON."""
        return f"{self.path}-summary.json" if self.prefix else join(self.path, "summary.json")

    @classmethod
    def of_summary(cls, summary_path: str) -> OutputLocation:
        """The location a run's ``summary.json`` belongs to (its name tells the layout)."""
        if summary_path.endswith("-summary.json"):
            return cls(summary_path[: -len("-summary.json")], prefix=True)
        return cls(
            posixpath.dirname(summary_path)
            if "://" in summary_path
            else os.path.dirname(summary_path)
        )

    def recognises(self, name: str) -> bool:
        """Whether ``name`` (an entry of :attr:`folder`) is something a run writes here."""
        name = _TMP.sub("", name)
        if self.prefix:
            base = posixpath.basename(self.path)
            return name.startswith(base) and bool(_PREFIX_OUTPUT.fullmatch(name[len(base) :]))
        return name in FOLDER_OUTPUTS

    def owns(self, name: str) -> bool:
        """Whether ``name`` belongs to this run: everything in a folder, ``P-*`` for a prefix."""
        return self.recognises(name) if self.prefix else True


def _entries(folder: str) -> list[str]:
    """Names directly in ``folder`` (local or any Beam filesystem); [] if it does not exist."""
    if "://" not in folder:
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    matched = match_files(join(folder, "**"))
    return sorted({p[len(folder.rstrip("/")) + 1 :].split("/", 1)[0] for p in matched})


def _check_local(folder: str, what: str) -> None:
    """``folder`` (to be created if needed) can hold this run's files."""
    path = os.path.abspath(folder)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(
            f"{what}: {folder!r} is a file, not a folder; pass a folder path "
            "(it is created if needed) or delete the file"
        )
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(
            f"{what}: {folder!r} lies under {parent!r}, which is a file; pass a "
            "path whose parents are folders"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{what}: cannot write in {parent!r} (permission denied); pass a "
            "folder you can write to, or fix its permissions"
        )


def _check_gcs(folder: str, what: str) -> None:
    if not _GCS.match(folder):
        raise ConfigError(
            f"{what}: {folder!r} is not a valid gs:// path; write "
            "gs://BUCKET/path with a lower-case bucket name"
        )
    try:
        import google.auth

        google.auth.default()
    except Exception:  # no credentials here (e.g. a template build): Dataflow checks later
        return
    try:
        FileSystems.match([join(folder, "*")])
    except Exception as exc:
        raise ConfigError(
            f"{what}: {folder!r} cannot be listed ({type(exc).__name__}: "
            f"{exc}); check the bucket name and your access to it"
        ) from None


def check_output(location: OutputLocation, overwrite: bool = False) -> None:
    """Validates an output location before anything is read or built.

    Raises:
        ConfigError: the location is a file, lies under a file, cannot be
            written, is a malformed ``gs://`` path, or (a folder) holds
            entries no footprints run writes and ``overwrite`` is False.
    """
    what = "--output"
    if location.prefix and location.path.endswith(("/", os.sep)):
        raise ConfigError(
            f"{what} {location.path!r} must be a path prefix such as "
            "out/chips/area (shards become out/chips/area-00000-of-...)"
        )
    folder = location.folder
    if folder.startswith("gs://"):
        _check_gcs(folder, what)
    elif "://" not in folder:
        _check_local(folder, what)
    if location.prefix or overwrite:
        return
    strange = [n for n in _entries(folder) if not location.recognises(n)]
    if strange:
        shown = ", ".join(strange[:5]) + (" ..." if len(strange) > 5 else "")
        raise ConfigError(
            f"{what} {location.path!r} holds {len(strange)} entries no footprints run "
            f"writes ({shown}); a run replaces its output folder, so pass an empty or new "
            "folder, or add --overwrite to delete them"
        )


def claim_output(location: OutputLocation, overwrite: bool = False) -> list[str]:
    """Removes what earlier runs left at ``location``; returns the removed names.

    Recognised outputs of any command go (a ``scores.csv`` this run will not
    write, ``scores/`` of a ``segment --classifier`` run); anything else
    stays unless ``overwrite``. The folder is created.
    """
    folder = location.folder
    names = [
        n for n in _entries(folder) if location.owns(n) and (overwrite or location.recognises(n))
    ]
    for name in names:
        path = join(folder, name)
        if "://" not in path:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            continue
        # Object stores have no folders: delete the objects under the name, then the name.
        inner = match_files(join(path, "**"))
        if inner:
            FileSystems.delete(inner)
        if FileSystems.exists(path):
            FileSystems.delete([path])
    if not FileSystems.exists(folder):
        FileSystems.mkdirs(folder)
    return names


def written_files(location: OutputLocation) -> list[str]:
    """Every file of this run at ``location``, relative to its folder, sorted.

    Called when the run has finished; :func:`claim_output` cleared the
    location at its start, so what is there now is what the run wrote. The
    summary itself is not listed (it is the list).
    """
    folder = location.folder.rstrip("/") or "/"
    if "://" in folder:
        paths = [p[len(folder) + 1 :] for p in match_files(join(folder, "**"))]
    else:
        paths = [
            os.path.relpath(os.path.join(d, f), folder).replace(os.sep, "/")
            for d, _, names in os.walk(folder)
            for f in names
        ]
    files = [p for p in paths if location.owns(p.split("/", 1)[0]) and not _TMP.search(p)]
    summary = posixpath.basename(location.summary_path)
    return sorted(f for f in files if f != summary)
