"""The training loop both trainers share: callbacks, checkpoints and resume.

A training run owns one output folder laid out as :class:`RunDir` describes.
Every epoch writes ``checkpoints/last.keras`` (model and optimizer state) and
then ``checkpoints/state.json`` (the epoch just finished and the best value of
the monitored metric); the best epoch by that metric is kept in
``checkpoints/best.keras``. A run started again with ``resume=True`` loads
``last.keras`` and continues from the next epoch, appending to the same CSV
history, so a killed run loses at most one epoch. Starting a fresh run over a
previous one's checkpoints is refused rather than silently mixing the two.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import logging
import os
import shutil
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from footprints.errors import ConfigError
from model_training import cards

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Makes a training run repeatable: one seed, deterministic ops.

    Seeds Python's, NumPy's and TensorFlow's generators (Keras' initializers
    and dropout draw from them) and turns on TensorFlow's op determinism,
    which picks deterministic kernels and makes tf.data keep element order
    and run maps with random ops one element at a time. With the input
    pipeline of :mod:`model_training.data`, the same chips and seed then give
    bit-identical weights on the same machine, TensorFlow build and thread
    count (see the README on what differs across machines).

    The setting is process-wide and stays on after training: it slows some
    ops a little, and on GPUs ops without a deterministic kernel raise
    ``UnimplementedError`` instead of silently differing.
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The files of one training run under ``root``."""

    root: str

    @property
    def checkpoints(self) -> str:
        """Folder of the checkpoints that resuming reads."""
        return os.path.join(self.root, "checkpoints")

    @property
    def last(self) -> str:
        """The last epoch's full Keras model (weights and optimizer)."""
        return os.path.join(self.checkpoints, "last.keras")

    @property
    def best(self) -> str:
        """Weights of the best epoch so far."""
        # Weights only: the best epoch may come from another training phase
        # (frozen base) whose optimizer does not fit the final model's.
        return os.path.join(self.checkpoints, "best.weights.h5")

    @property
    def state(self) -> str:
        """JSON state of the run (epoch, best score) for resuming."""
        return os.path.join(self.checkpoints, "state.json")

    @property
    def history(self) -> str:
        """Per-epoch metrics as CSV."""
        return os.path.join(self.root, "history.csv")

    @property
    def logs(self) -> str:
        """TensorBoard logs."""
        return os.path.join(self.root, "logs")

    @property
    def model_dir(self) -> str:
        """The exported SavedModel (the model contract)."""
        return os.path.join(self.root, "model")

    @property
    def keras_copy(self) -> str:
        """A Keras copy of the final model, for further training."""
        return os.path.join(self.root, "model.keras")

    @property
    def curves(self) -> str:
        """Plot of the training and validation curves."""
        return os.path.join(self.root, "training_curves.png")

    def start(self, resume: bool, overwrite: bool = False) -> dict[str, Any] | None:
        """Prepares the folder; returns the saved state when resuming, else None.

        Raises:
            ConfigError: if a previous run's checkpoints are there and neither
                ``resume`` nor ``overwrite`` says what to do with them.
        """
        os.makedirs(self.checkpoints, exist_ok=True)
        has_previous = os.path.exists(self.last) and os.path.exists(self.state)
        state = saved_state(self) if resume and has_previous else None
        if state is not None:
            log.info("resuming %s after epoch %d", self.root, state["epoch"] + 1)
            return state
        if resume:
            log.warning("--resume: no checkpoint in %s yet, starting from epoch 1", self.root)
        elif has_previous and not overwrite:
            raise ConfigError(
                f"{self.root!r} holds checkpoints of a previous run; pass --resume to "
                "continue it, --overwrite to start again, or choose another --output"
            )
        for stale in (self.checkpoints, self.logs):
            shutil.rmtree(stale, ignore_errors=True)
        for stale in (self.history,):
            if os.path.exists(stale):
                os.remove(stale)
        os.makedirs(self.checkpoints, exist_ok=True)
        return None


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        output: The run folder.
        model_dir: The exported SavedModel (the model contract).
        keras_path: The ``.keras`` copy.
        card_path: ``<model_dir>/assets/model_card.json``.
        curves_path: Training-curve PNG.
        metrics: Validation metrics of the exported model.
        epochs: Epochs trained in total (across resumes).
    """

    output: str
    model_dir: str
    keras_path: str
    card_path: str
    curves_path: str
    metrics: dict
    epochs: int


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """How :func:`fit` trains.

    Attributes:
        steps_per_epoch: Training batches per epoch.
        monitor: Validation metric that picks the best checkpoint and stops
            early, e.g. ``val_auc`` or ``val_building_iou``.
        mode: ``max`` if a higher ``monitor`` is better, else ``min``.
        patience: Epochs without improvement before stopping (0: never stop).
        reduce_lr: Halve the learning rate when ``val_loss`` stalls; off for
            schedules that set the rate themselves (one-cycle).
        tensorboard: Write TensorBoard logs under ``logs/``.
        class_weight: Optional per-class loss weights.
        verbose: Keras fit verbosity (0 silent, 2 one line per epoch).
        start_from_epoch: Epochs before early stopping may act (0: from the start).
    """

    steps_per_epoch: int
    monitor: str
    mode: str = "max"
    patience: int = 5
    reduce_lr: bool = True
    tensorboard: bool = True
    class_weight: dict[int, float] | None = None
    verbose: int = 2
    start_from_epoch: int = 0


class _LogLearningRate(keras.callbacks.Callback):
    """Adds the epoch's learning rate to the logs, whatever sets it (schedules too)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )


class _SaveState(keras.callbacks.Callback):
    """Records the finished epoch once ``last.keras`` holds it.

    Listed after the checkpoint callbacks, so ``state.json`` never points at
    an epoch whose checkpoint was not written.
    """

    def __init__(self, run: RunDir, best: keras.callbacks.ModelCheckpoint):
        super().__init__()
        self._run = run
        self._best = best

    def on_epoch_end(self, epoch, logs=None):
        best = self._best.best
        state = {
            "epoch": int(epoch),
            "monitor": self._best.monitor,
            "best": None if best is None else float(best),
        }
        tmp = self._run.state + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, self._run.state)


@functools.cache
def tensorboard_available() -> bool:
    """True if the ``tensorboard`` package is installed.

    TensorFlow 2.21 no longer installs it; without it Keras' TensorBoard
    callback fails at the first epoch, so the logs are skipped with a warning.
    """
    if importlib.util.find_spec("tensorboard") is not None:
        return True
    log.warning(
        "TensorBoard logs skipped: the tensorboard package is not installed "
        "(pip install tensorboard to get them)"
    )
    return False


def saved_state(run: RunDir) -> dict[str, Any] | None:
    """The state the last finished epoch wrote, or None before the first."""
    if not os.path.exists(run.state):
        return None
    with open(run.state, encoding="utf-8") as f:
        return json.load(f)


def callbacks(run: RunDir, options: FitOptions) -> list[keras.callbacks.Callback]:
    """The callbacks of a run.

    Best and last checkpoints, LR on plateau, early stopping, TensorBoard and
    CSV history.
    """
    # A later fit in the same run (resume, or the fine-tuning phase) must only
    # replace best.keras with something better than what it already holds.
    state = saved_state(run)
    previous_best = state.get("best") if state else None
    best = keras.callbacks.ModelCheckpoint(
        run.best,
        monitor=options.monitor,
        mode=options.mode,
        save_best_only=True,
        save_weights_only=True,
        initial_value_threshold=previous_best,
    )
    out: list[keras.callbacks.Callback] = [
        _LogLearningRate(),
        best,
        keras.callbacks.ModelCheckpoint(run.last, save_best_only=False),
        _SaveState(run, best),
        keras.callbacks.TerminateOnNaN(),
    ]
    if options.reduce_lr:
        out.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(1, options.patience // 2), min_lr=1e-6
            )
        )
    if options.patience > 0:
        out.append(
            keras.callbacks.EarlyStopping(
                monitor=options.monitor,
                mode=options.mode,
                patience=options.patience,
                start_from_epoch=options.start_from_epoch,
            )
        )
    if options.tensorboard and tensorboard_available():
        out.append(keras.callbacks.TensorBoard(run.logs, write_graph=False, profile_batch=0))
    # Last, so it sees every value the others add to the logs; append=True so
    # a resumed run continues the same history file.
    out.append(keras.callbacks.CSVLogger(run.history, append=True))
    return out


def fit(
    model: keras.Model,
    train: tf.data.Dataset,
    val: tf.data.Dataset,
    run: RunDir,
    options: FitOptions,
    initial_epoch: int,
    epochs: int,
) -> None:
    """Trains ``model`` from ``initial_epoch`` up to (not including) ``epochs``."""
    if initial_epoch >= epochs:
        return
    model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=options.steps_per_epoch,
        class_weight=options.class_weight,
        callbacks=callbacks(run, options),
        verbose=options.verbose,
        shuffle=False,
    )  # the datasets shuffle themselves


def restore_best(model: keras.Model, run: RunDir) -> None:
    """Loads the best checkpoint's weights into ``model`` (if one was written)."""
    if os.path.exists(run.best):
        model.load_weights(run.best)
    else:
        log.warning("no best checkpoint in %s; keeping the last weights", run.checkpoints)


def best_epoch(history: dict[str, list[float]], monitor: str) -> int | None:
    """The 1-based epoch with the best ``monitor`` value in a run's history."""
    values = history.get(monitor)
    if not values:
        return None
    pick = np.nanargmin if monitor.endswith("loss") else np.nanargmax
    return int(pick(values)) + 1


def finish(
    run: RunDir, card: dict[str, Any], monitor: str, metrics: dict, title: str
) -> TrainResult:
    """Completes a run: adds the epochs to the card, writes it and the curves.

    Args:
        run: The run folder, with the model already exported to ``run.model_dir``.
        card: The model card so far (see :mod:`model_training.cards`).
        monitor: The metric that picked the best epoch.
        metrics: Validation metrics of the exported model.
        title: Title of the training-curve plot.
    """
    history = cards.read_history(run.history)
    epochs = len(history.get("loss", []))
    card.update(
        {
            "validation_metrics": metrics,
            "epochs_trained": epochs,
            "best_epoch": best_epoch(history, monitor),
            "monitor": monitor,
        }
    )
    card_path = cards.write_card(run.model_dir, card)
    cards.plot_history(history, run.curves, title)
    return TrainResult(
        output=run.root,
        model_dir=run.model_dir,
        keras_path=run.keras_copy,
        card_path=card_path,
        curves_path=run.curves,
        metrics=metrics,
        epochs=epochs,
    )
