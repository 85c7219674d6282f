"""Finding what a folder holds: its runs, the files each run wrote, its summaries.

A folder may hold one run (a ``score`` or ``segment`` output) or a demo,
whose ``demo_summary.json`` names a run per stage in subfolders. A run's
``summary.json`` lists the files it wrote (``files``, relative paths); when
it does, only those are read, so nothing an earlier run left behind is
mixed in. What ``footprints export`` adds later (``export/``) is found
beside the run.
"""

from __future__ import annotations

import glob
import json
import os

from pipeline.monitoring import INPUT_PATH_KEYS, resolve_path
from pipeline.summary import SUMMARY_FILE

DEMO_SUMMARY = "demo_summary.json"
EXPORT_DIR = "export"
#: The pipeline's stages in the order they run, for the demo's stage table.
STAGE_ORDER = (
    "training_area",
    "sample_area",
    "prepare",
    "train_classifier",
    "train_segmenter",
    "score",
    "segment",
    "export",
)


def read_json(path: str) -> dict:
    """A JSON file as a dict ({} when it is missing)."""
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def summary(run_dir: str) -> dict:
    """A run's ``summary.json`` ({} when it has none), its input paths usable from here.

    summary.json holds paths relative to the run folder (so a moved run still
    points at its inputs); the report reads the models and the imagery it
    names, so its input paths are resolved against the run folder here, once.
    """
    path = os.path.join(run_dir, SUMMARY_FILE)
    data = read_json(path)
    for section in ("inputs", "scores"):
        part = data.get(section)
        if not isinstance(part, dict):
            continue
        for key in INPUT_PATH_KEYS & part.keys():
            if isinstance(part[key], str) and part[key]:
                part[key] = resolve_path(path, part[key])
    return data


def run_files(directory: str, suffix: str) -> list[str]:
    """The ``*suffix`` files of ``directory`` that its run wrote.

    A run's summary.json lists its files (``files``, relative to the run
    folder); when it does, only those are read, so nothing an earlier run
    left behind is mixed in. Older runs without the list: a glob.
    """
    run_dir, name = os.path.split(directory.rstrip("/"))
    listed = summary(run_dir).get("files")
    if listed is None:
        return sorted(glob.glob(os.path.join(directory, f"*{suffix}")))
    return sorted(
        os.path.join(run_dir, f)
        for f in listed
        if f.startswith(f"{name}/") and f.count("/") == 1 and f.endswith(suffix)
    )


def listed_files(run_dir: str, folder: str) -> list[str]:
    """Every file the run's summary lists under ``folder/`` (any depth)."""
    listed = summary(run_dir).get("files") or []
    return sorted(os.path.join(run_dir, f) for f in listed if f.startswith(f"{folder}/"))


def stac_root(run_dir: str) -> tuple[str, int] | None:
    """The STAC catalogue's root (``catalog.json``, else ``collection.json``) and its file count."""
    files = listed_files(run_dir, "stac")
    if not files:
        return None
    for name in ("catalog.json", "collection.json"):
        top = os.path.join(run_dir, "stac", name)
        if top in files:
            return top, len(files)
    return files[0], len(files)


def read_table(directory: str, columns: list[str] | None = None):
    """The Parquet files a run wrote in ``directory`` as one Arrow table (None: none).

    Columns that the files lack are left out rather than failing, so older
    runs still report.
    """
    import pyarrow.parquet as pq

    files = run_files(directory, ".parquet")
    if not files:
        return None
    if columns is not None:
        have = set(pq.read_schema(files[0]).names)
        columns = [c for c in columns if c in have]
    return pq.read_table(files, columns=columns)


def export_files(run_dir: str) -> list[str]:
    """What ``footprints export`` wrote for this run (``export/*``), if anything."""
    return sorted(p for p in glob.glob(os.path.join(run_dir, EXPORT_DIR, "*")) if os.path.isfile(p))


def kind(run_dir: str) -> str | None:
    """``segment``, ``score`` or None (not a run folder)."""
    job = summary(run_dir).get("job")
    return job if job in ("segment", "score") else None


def find_runs(output_dir: str) -> list[tuple[str, str]]:
    """``(kind, folder)`` of every run in ``output_dir`` (itself or one level down)."""
    runs = []
    for folder in [output_dir] + sorted(glob.glob(os.path.join(output_dir, "*", ""))):
        folder = folder.rstrip("/")
        found = kind(folder)
        if found:
            runs.append((found, folder))
    return runs


def stages_in_order(stages: dict) -> list[tuple[str, dict]]:
    """The demo's stages in pipeline order (:data:`STAGE_ORDER`), others after."""
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    return sorted(stages.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
