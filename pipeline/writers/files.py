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
import datetime
import errno
import fcntl
import glob
import json
import os
import posixpath
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import PCollection
from apache_beam.transforms import combiners

from footprints.errors import ConfigError
from footprints.files import match_files
from pipeline.ptransform import DataclassTransform

#: Where scoring parks its scored batches between passes (removed when the job ends;
#: a killed run's folder is cleared by the next run): see ``pipeline.thresholds.spill``.
SPILL_DIR = ".spill"
#: The lock a run holds on its output while it runs (:class:`OutputLock`): ``OUTPUT/run.lock``
#: for a folder, ``PREFIX-run.lock`` beside a prefix.
LOCK_NAME = "run.lock"
#: What any footprints run writes into its output folder (score, segment, report, export):
#: the one list :meth:`OutputLocation.recognises` and so :func:`check_output` and
#: :func:`claim_output` read.
FOLDER_OUTPUTS = frozenset(
    {
        SPILL_DIR,
        LOCK_NAME,
        "summary.json",
        "report.html",
        "masks",
        "stac",
        "truth",
        "export",  # footprints export's default: OUTPUT/export/footprints.gpkg
        *(
            f"{table}{suffix}"
            for table in ("scores", "errors", "footprints", "classified")
            for suffix in ("", ".csv", ".bigquery.json")
        ),
    }
)
#: Names beside a prepare prefix ``P``: ``P-00000-of-00004.tfrecord[.gz]``, ``P-errors``, ...
_PREFIX_OUTPUT = re.compile(
    r"-(\d{5}-of-\d{5}\.tfrecord(\.gz)?|errors(\.bigquery\.json)?|summary\.json|parts|run\.lock)$"
)
#: Temporary names of an interrupted atomic write (see :func:`write_json_atomic`).
_TMP = re.compile(r"\.tmp-[0-9a-f]{32}$")
#: The temporary folder of a Beam file sink writing ``NAME`` (``scores.csv``, ``errors``):
#: ``beam-temp-NAME-HEX`` beside it, left behind when the run is killed.
_BEAM_TEMP = re.compile(r"beam-temp-(.+)-[0-9a-f]{32}")
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


@beam.typehints.with_input_types(str)
@dataclasses.dataclass
class RemoveStaleShards(DataclassTransform):
    """After a sharded write, deletes older shards that match ``pattern``.

    Input: the PCollection of file names a Beam file sink returns. Output: one
    element, the sorted list of this run's files.
    """

    pattern: str

    def expand(self, written: PCollection[str]) -> PCollection[list[str]]:
        """Deletes the stale shards; returns this run's sorted file list."""
        result: PCollection[list[str]] = (
            written
            | "AllWritten" >> combiners.ToList()
            | "DeleteStale" >> beam.Map(remove_stale_shards, self.pattern)
        )
        return result


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

    def expand(self, pcoll: PCollection[Any]) -> PCollection[str]:
        """Writes the element to ``path``."""
        result: PCollection[str] = pcoll | "WriteJsonFile" >> beam.Map(
            lambda obj, path: write_json_atomic(path, obj), self.path
        )
        return result


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

    @property
    def lock_path(self) -> str:
        """Path of the lock the run holds while it runs (:class:`OutputLock`)."""
        return f"{self.path}-{LOCK_NAME}" if self.prefix else join(self.path, LOCK_NAME)

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
        beam_temp = _BEAM_TEMP.fullmatch(name)
        if beam_temp:
            name = beam_temp.group(1)
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


#: File systems that hold no files of their own (kernel and process views): an output
#: there cannot work, and writing into them can change the running system.
_PSEUDO_FILE_SYSTEMS = frozenset(
    {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "debugfs",
        "tracefs",
        "securityfs",
        "pstore",
        "bpf",
        "configfs",
        "fusectl",
        "mqueue",
        "binfmt_misc",
        "efivarfs",
        "autofs",
        "nsfs",
        "rpc_pipefs",
    }
)
#: Room the longest name a run adds needs: beside a prefix
#: (``-errors.bigquery.json.tmp-`` + 32 hex digits), and below a folder (a table,
#: a mask's temporary name: ``masks/TILE.tif.stitch.tmp-HEX``).
_PREFIX_SUFFIX_ROOM = 64
_PATH_ROOM = 128


def file_system_type(path: str) -> str | None:
    """The type of the file system ``path`` lies on (``ext4``, ``proc``), from /proc/self/mounts.

    None where the mount table cannot be read (not Linux).
    """
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    real = os.path.realpath(path)
    best, kind = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _check_names(path: str, parent: str, prefix: bool, what: str) -> None:
    """Every name of ``path`` fits the file system of ``parent`` (its nearest existing folder)."""
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
        path_max = os.pathconf(parent, "PC_PATH_MAX")
    except (OSError, ValueError):  # no limit reported
        return
    names = os.path.relpath(path, parent).split(os.sep)
    for i, name in enumerate(names):
        room = _PREFIX_SUFFIX_ROOM if prefix and i == len(names) - 1 else 0
        size = len(os.fsencode(name))
        if size + room > name_max:
            shown = name if len(name) <= 40 else f"{name[:37]}..."
            raise ConfigError(
                f"{what}: the name {shown!r} is {size} bytes; the file system at "
                f"{parent!r} allows {name_max} bytes a name"
                + (f" and a run adds up to {room} to a prefix" if room else "")
                + "; use a shorter name"
            )
    size = len(os.fsencode(path))
    if size + _PATH_ROOM > path_max:
        raise ConfigError(
            f"{what}: the path is {size} bytes; the file system allows {path_max} bytes a "
            f"path and a run adds up to {_PATH_ROOM} below it; use a shorter path"
        )


def _check_local(folder: str, what: str, prefix: bool = False, path: str | None = None) -> None:
    """``folder`` (to be created if needed) can hold this run's files."""
    path = os.path.abspath(path or folder)
    folder_path = os.path.abspath(folder)
    if os.path.exists(folder_path) and not os.path.isdir(folder_path):
        raise ConfigError(
            f"{what}: {folder!r} is a file, not a folder; pass a folder path "
            "(it is created if needed) or delete the file"
        )
    parent = folder_path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(
            f"{what}: {folder!r} lies under {parent!r}, which is a file; pass a "
            "path whose parents are folders"
        )
    kind = file_system_type(parent)
    if kind in _PSEUDO_FILE_SYSTEMS:
        raise ConfigError(
            f"{what}: {folder!r} lies on {kind}, a pseudo file system of the kernel "
            "that holds no files of its own; pass a folder on a disk (or a gs:// path)"
        )
    _check_names(path, parent, prefix, what)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{what}: cannot write in {parent!r} (permission denied); pass a "
            "folder you can write to, or fix its permissions"
        )


def _check_gcs(folder: str, what: str, translate_only: bool = False) -> None:
    """A well-formed ``gs://`` folder that this machine can reach with credentials.

    Without credentials Beam's client connects anonymously and fails minutes
    later (after its retries), so a missing login is refused here unless
    ``STORAGE_EMULATOR_HOST`` points at an emulator or the run is only
    translated (``--dry_run=True`` on Dataflow: nothing is written). With
    credentials, the folder is listed once with a short timeout.
    """
    if not _GCS.match(folder):
        raise ConfigError(
            f"{what}: {folder!r} is not a valid gs:// path; write "
            "gs://BUCKET/path with a lower-case bucket name"
        )
    if translate_only:
        return
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        try:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError
        except ImportError:
            raise ConfigError(
                f"{what} {folder!r}: gs:// needs the gcp extra; pip install 'footprints[gcp]'"
            ) from None
        try:
            google.auth.default()
        except DefaultCredentialsError:
            raise ConfigError(
                f"{what} {folder!r}: no Google Cloud credentials on this machine, so the "
                "bucket would be reached anonymously and the run would fail minutes later; "
                "run `gcloud auth application-default login`, or set "
                "GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
            ) from None
    try:
        from google.cloud import storage  # type: ignore[attr-defined]

        bucket, _, name = folder[len("gs://") :].partition("/")
        client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or "footprints")
        list(client.list_blobs(bucket, prefix=name, max_results=1, timeout=20, retry=None))
    except Exception as exc:
        raise ConfigError(
            f"{what}: {folder!r} cannot be listed ({type(exc).__name__}: "
            f"{str(exc)[:300]}); check the bucket name and your access to it"
        ) from None


def check_output(
    location: OutputLocation, overwrite: bool = False, translate_only: bool = False
) -> None:
    """Validates an output location before anything is read or built.

    Args:
        location: Where the run writes.
        overwrite: Entries no footprints run writes may be deleted.
        translate_only: The run is only translated (Beam's ``--dry_run=True``
            on Dataflow): a ``gs://`` location needs no credentials.

    Raises:
        ConfigError: the location is a file, lies under a file, cannot be
            written, lies on a pseudo file system (``/proc``), has a name
            longer than its file system allows, is a malformed ``gs://``
            path or one without credentials, or (a folder) holds entries no
            footprints run writes and ``overwrite`` is False.
    """
    what = "--output"
    if location.prefix and location.path.endswith(("/", os.sep)):
        raise ConfigError(
            f"{what} {location.path!r} must be a path prefix such as "
            "out/chips/area (shards become out/chips/area-00000-of-...)"
        )
    folder = location.folder
    if folder.startswith("gs://"):
        _check_gcs(folder, what, translate_only)
    elif "://" not in folder:
        _check_local(folder, what, location.prefix, location.path)
    if location.prefix or overwrite or translate_only:  # translated only: nothing is claimed
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
    lock = posixpath.basename(location.lock_path)
    names = [
        n
        for n in _entries(folder)
        if n != lock and location.owns(n) and (overwrite or location.recognises(n))
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


def _glob_base(pattern: str) -> str:
    """The part of a glob before its first wildcard: ``out/chips/*.tfrecord`` -> ``out/chips``."""
    parts = pattern.split("/")
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return "/".join(fixed) or "."


def _entry_of(folder: str, path: str) -> str | None:
    """The entry of ``folder`` that ``path`` lies in (``"."`` for the folder), or None."""
    if "://" in folder or "://" in path:
        root = folder.rstrip("/")
        if path.rstrip("/") == root:
            return "."
        return path[len(root) + 1 :].split("/", 1)[0] if path.startswith(root + "/") else None
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(folder))
    if rel == os.curdir:
        return "."
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return None
    return rel.split(os.sep, 1)[0]


def check_inputs_outside(location: OutputLocation, inputs: dict[str, str]) -> None:
    """Refuses an input that lies where the run's claim on its output would delete it.

    A run replaces its output (:func:`claim_output`; with ``--overwrite``
    everything in a folder), so chips, tiles, a model or a footprints file
    inside ``--output`` would be deleted before they are read. Called before
    anything is claimed.

    Args:
        location: The run's output.
        inputs: Each input flag (``--chips``) and its value, a path or a glob.

    Raises:
        ConfigError: naming the flag, the input and what to do.
    """
    folder = location.folder
    for flag, pattern in inputs.items():
        candidates = [
            _glob_base(pattern),
            *(match_files(pattern) if glob.has_magic(pattern) else []),
        ]
        for path in candidates:
            entry = _entry_of(folder, path)
            if entry is None or not (entry == "." and not location.prefix or location.owns(entry)):
                continue
            where = "the output folder itself" if entry == "." else entry
            raise ConfigError(
                f"{flag} {pattern!r} lies inside --output {location.path!r} ({where}), which "
                "the run replaces: the input would be deleted before it is read; move it out "
                "of the output folder, or pass another --output"
            )


#: Locks this process holds: lock path -> [the OutputLock that took it, depth].
_HELD: dict[str, list[Any]] = {}


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(sys.argv)[:300],
    }


def _in_use(location: OutputLocation, other: dict[str, Any], stale_hint: str = "") -> str:
    who = (
        f"pid {other.get('pid', '?')} on {other.get('host', '?')}, started "
        f"{other.get('started', '?')}: {other.get('command', '?')}"
        if other
        else "no details written yet"
    )
    return (
        f"--output {location.path!r} is in use by another footprints run ({who}); two runs "
        "into one output would mix their files: wait for that run to end, or pass another "
        f"--output{stale_hint}"
    )


class OutputLock:
    """An exclusive hold on an output location for the length of a run.

    Local disk: ``run.lock`` (``PREFIX-run.lock``) locked with ``flock``,
    holding the pid, host, start time and command line of the run. The
    kernel drops the lock when the process ends however it ends, so a lock
    file a killed run left is taken over (no stale lock can block a folder).
    ``gs://``: the same object created with ``if-generation-match=0``, which
    only one writer can win; it is deleted when the run ends, and one left
    by a killed run on this host (its pid gone) is taken over; elsewhere
    the message says to delete it. A second run into a held location gets
    a :class:`ConfigError` (exit 2) naming the holder, before it touches
    anything. Re-entrant within a process (the CLI takes it, then the job).
    """

    def __init__(self, location: OutputLocation):
        self.location = location
        self.path = location.lock_path
        # One lock per place, however the path was spelled ("out", "./out/", absolute).
        self._key = self.path if "://" in self.path else os.path.realpath(self.path)
        self._fd: int | None = None
        self._created = False
        self._blob: Any = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the lock, or raises ConfigError naming the run that holds it."""
        held = _HELD.get(self._key)
        if held is not None:
            held[1] += 1
            return
        if self.path.startswith("gs://"):
            self._acquire_object()
        elif "://" not in self.path:
            self._acquire_file()
        _HELD[self._key] = [self, 1]

    def release(self) -> None:
        """Gives the lock back (deletes the lock file) when the outermost holder ends."""
        held = _HELD.get(self._key)
        if held is None:
            return
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[self._key]
        held[0]._release()

    def _acquire_file(self) -> None:
        folder = self.location.folder
        self._created = not os.path.isdir(folder)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"--output: cannot create {folder!r} ({exc.strerror}); pass a folder you can "
                "write to"
            ) from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                self._remove_created()
                raise ConfigError(
                    f"--output: cannot write in {folder!r} ({exc.strerror}); pass a folder "
                    "on a writable disk"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = _parse_holder(os.pread(fd, 4096, 0))
                os.close(fd)
                raise ConfigError(_in_use(self.location, other)) from None
            try:  # its last holder may have deleted the file after this run opened it
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode("utf-8"), 0)
        self._fd = fd

    def _acquire_object(self) -> None:
        try:
            from google.api_core.exceptions import PreconditionFailed
            from google.cloud import storage  # type: ignore[attr-defined]
        except ImportError:  # no gcp extra: check_output already refused gs://
            return
        bucket, _, name = self.path[len("gs://") :].partition("/")
        client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or "footprints")
        blob = client.bucket(bucket).blob(name)
        body = json.dumps(_holder())
        generation = 0
        for _ in range(2):
            try:
                blob.upload_from_string(
                    body, content_type="application/json", if_generation_match=generation
                )
                self._blob = blob
                return
            except PreconditionFailed:
                blob.reload()
                other = _parse_holder(blob.download_as_bytes())
                if other.get("host") != socket.gethostname() or _alive(other.get("pid")):
                    raise ConfigError(
                        _in_use(
                            self.location,
                            other,
                            f"; if no run is writing there (a killed run leaves its lock), "
                            f"delete {self.path}",
                        )
                    ) from None
                generation = blob.generation  # left by a killed run on this host: take it over
        raise ConfigError(_in_use(self.location, {}))

    def _release(self) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None
            self._remove_created()
        if self._blob is not None:
            try:
                self._blob.delete(if_generation_match=self._blob.generation)
            except Exception:  # gone or taken over: nothing of ours to delete
                pass
            self._blob = None

    def _remove_created(self) -> None:
        """Removes the folder the lock created if the run left it empty (it stopped early)."""
        if self._created:
            try:
                os.rmdir(self.location.folder)
            except OSError:
                pass
            self._created = False


def _parse_holder(data: bytes) -> dict[str, Any]:
    try:
        other = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return other if isinstance(other, dict) else {}


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def no_space_left(location: OutputLocation, exc: BaseException) -> str | None:
    """Why a failed run failed, when it is the output's disk being full; else None.

    GDAL reports a full disk as an IO error of its own (``TIFFWriteDirectoryTagData:
    IO error``, ``Write error``) with no errno, and Beam wraps it; so an
    ``ENOSPC`` anywhere in the chain, or an IO error of any writer while the
    output's file system has less than 4 MiB free, reads as a full disk.
    """
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            break
        error = error.__cause__ or error.__context__
    folder = location.folder
    if "://" in folder:
        return None if error is None else f"no space left on device under {folder!r}"
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    free = stats.f_bavail * stats.f_frsize
    text = str(exc).lower()
    io_error = any(word in text for word in ("io error", "write error", "no space", "i/o error"))
    if error is None and not (io_error and free < 4 * 1024 * 1024):
        return None
    return (
        f"no space left on device: {os.path.abspath(folder)!r} has {free / 1024:,.0f} KiB free; "
        "free some space or pass an --output on a larger disk (the outputs there are "
        "incomplete: the next run replaces them)"
    )


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
    ours = {posixpath.basename(location.summary_path), posixpath.basename(location.lock_path)}
    return sorted(f for f in files if f not in ours)
