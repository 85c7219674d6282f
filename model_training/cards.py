"""Model cards and training curves: what a trained model says about itself.

A model card is a JSON file stored with the model at
``<model>/assets/model_card.json`` (:data:`footprints.contracts.MODEL_CARD`),
so it travels with the SavedModel wherever it is copied. It records what a
reviewer needs to trust or reproduce the model: validation metrics, the
input the model expects, the class mapping, a fingerprint of the training
data (content hashes, so the same files under another name match) and the
library versions it was trained with. See ``docs/training.md`` for the keys.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

import footprints
from footprints import contracts

_CHUNK = 1 << 20


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a trained model's behaviour."""
    import keras
    import tensorflow as tf

    return {
        "footprints": footprints.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's content (read through tf.io.gfile, so gs:// works)."""
    import tensorflow as tf

    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(files: Iterable[str]) -> dict[str, Any]:
    """A content fingerprint of a set of files.

    Returns:
        ``{"sha256": ..., "files": [{"name", "bytes", "sha256"}, ...]}`` where the
        top-level hash covers the sorted per-file hashes: it changes when any
        file's content changes, and not when the files move to another folder.
    """
    import tensorflow as tf

    entries = []
    for path in sorted(set(files)):
        entries.append(
            {
                "name": os.path.basename(path),
                "bytes": tf.io.gfile.stat(path).length,
                "sha256": file_sha256(path),
            }
        )
    overall = hashlib.sha256("\n".join(sorted(e["sha256"] for e in entries)).encode())
    return {"sha256": overall.hexdigest(), "files": entries}


def base_card(model_type: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys every model card shares: type, contract, time, versions, config."""
    return {
        "model_type": model_type,
        "contract_version": contracts.CONTRACT_VERSION,
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "libraries": library_versions(),
        "training_config": _jsonable(dict(config)),
    }


def write_card(model_dir: str, card: Mapping[str, Any]) -> str:
    """Writes the card to ``<model_dir>/assets/model_card.json``; returns the path."""
    assets = os.path.join(model_dir, "assets")
    os.makedirs(assets, exist_ok=True)
    path = os.path.join(assets, contracts.MODEL_CARD)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_jsonable(dict(card)), f, indent=2, sort_keys=False)
        f.write("\n")
    return path


def _jsonable(value: Any) -> Any:
    """Converts tuples, numpy scalars and arrays to plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_history(csv_path: str) -> dict[str, list[float]]:
    """Reads a Keras CSVLogger file into ``{column: values}``, epochs in order.

    A resumed run appends to the same file; if an epoch was logged twice
    (a run killed after logging but before its checkpoint), the later row wins.
    """
    if not os.path.exists(csv_path):
        return {}
    rows: dict[int, dict[str, str]] = {}
    with open(csv_path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row.get("epoch", "").isdigit():
                rows[int(row["epoch"])] = row
    history: dict[str, list[float]] = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            try:
                history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
    return history


def plot_history(history: Mapping[str, Sequence[float]], path: str, title: str) -> str:
    """Draws loss and each metric, training against validation, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = [
        k
        for k in history
        if not k.startswith("val_") and k not in ("epoch",) and k != "learning_rate"
    ]
    names = sorted(names, key=lambda n: (n != "loss", n))
    panels = max(1, len(names)) + ("learning_rate" in history)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.2), squeeze=False)
    epochs = history.get("epoch") or list(range(len(next(iter(history.values()), []))))
    epochs = [int(e) + 1 for e in epochs]
    for ax, name in zip(axes[0], names, strict=False):
        ax.plot(epochs, history[name], label="train", marker=".")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="validation", marker=".")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    if "learning_rate" in history:
        ax = axes[0][-1]
        ax.plot(epochs, history["learning_rate"], marker=".")
        ax.set_yscale("log")
        ax.set_title("learning rate (end of epoch)")
        ax.set_xlabel("epoch")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


#: File name of the reliability diagram, beside the model card in ``assets/``.
RELIABILITY_PNG = "reliability.png"


def reliability_path(model_dir: str) -> str:
    """``<model_dir>/assets/reliability.png`` (the folder is created)."""
    assets = os.path.join(model_dir, "assets")
    os.makedirs(assets, exist_ok=True)
    return os.path.join(assets, RELIABILITY_PNG)


def plot_reliability(
    calibrated: Mapping[str, Sequence], uncalibrated: Mapping[str, Sequence], path: str, title: str
) -> str:
    """Draws a reliability diagram (fraction positive against mean score per bin).

    Args:
        calibrated: Bins of :func:`model_training.evaluation.reliability` for
            the served (calibrated) scores.
        uncalibrated: The same bins for the network's own scores.
        path: PNG to write.
        title: What was scored, for the subtitle.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(4.2, 5.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for bins, name, marker in (
        (uncalibrated, "before calibration", "x"),
        (calibrated, "after calibration", "o"),
    ):
        pairs = [
            (m, f)
            for m, f in zip(bins["mean_score"], bins["fraction_positive"], strict=True)
            if m is not None
        ]
        if pairs:
            xs, ys = zip(*pairs, strict=True)
            ax.plot(xs, ys, marker=marker, label=name)
    ax.set_ylabel("fraction residential")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small", loc="upper left")
    ax.set_title(f"Reliability ({len(calibrated['count'])} bins)\n{title}", fontsize="medium")
    edges = calibrated["bin_edges"]
    hist.bar(edges[:-1], calibrated["count"], width=np.diff(edges), align="edge", edgecolor="white")
    hist.set_xlabel("score (after calibration)")
    hist.set_ylabel("footprints")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
