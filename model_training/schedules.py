"""Learning-rate tools: the one-cycle schedule and the learning-rate finder.

**One-cycle** (Smith 2018, as popularized by fastai): the rate rises from
``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of the
steps, then anneals to ``max_lr / (div_factor * final_div_factor)``, both
halves along a cosine. The high middle acts as a regularizer and the low end
settles the weights, which trains small U-Nets well in few epochs.

**LR finder** (:func:`lr_find`): trains for a few hundred steps while the
rate grows exponentially from ``min_lr`` to ``max_lr``, records the loss of
each step, and stops once the loss has blown up. :func:`suggest_lr` picks
the rate where the smoothed loss falls fastest (steepest negative slope
against log rate), before its minimum; ``max_lr`` for one-cycle is usually
that rate or a few times it. :func:`plot_lr_find` draws the curve.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
from keras import ops

from footprints.errors import ConfigError


@keras.saving.register_keras_serializable(package="footprints")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle learning-rate schedule; steps past ``total_steps`` keep the last rate.

    Args:
        max_lr: Peak rate.
        total_steps: Steps of the whole run (epochs x steps per epoch).
        pct_start: Fraction of the steps spent rising.
        div_factor: Start rate is ``max_lr / div_factor``.
        final_div_factor: End rate is the start rate divided by this.
    """

    def __init__(
        self,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e3,
    ):
        if max_lr <= 0 or total_steps < 1 or not 0.0 < pct_start < 1.0:
            raise ConfigError(
                f"one-cycle needs max_lr > 0 ({max_lr}), total_steps >= 1 ({total_steps}) "
                f"and 0 < pct_start < 1 ({pct_start})"
            )
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)

    def __call__(self, step):
        """Learning rate at ``step``: cosine warm-up to ``max_lr``, then cosine decay."""
        step = ops.cast(step, "float32")
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        up = max(1.0, self.pct_start * self.total_steps)
        down = max(1.0, self.total_steps - up)

        def cosine(a, b, frac):
            frac = ops.clip(frac, 0.0, 1.0)
            return b + (a - b) * 0.5 * (1.0 + ops.cos(math.pi * frac))

        rising = cosine(start, self.max_lr, step / up)
        falling = cosine(self.max_lr, end, (step - up) / down)
        return ops.where(step < up, rising, falling)

    def get_config(self):
        """The schedule's settings, so a saved optimizer reloads with it."""
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


@dataclasses.dataclass(frozen=True)
class LRFindResult:
    """The learning-rate sweep: rates, raw and smoothed losses, the suggestion."""

    learning_rates: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    suggestion: float

    def to_dict(self) -> dict:
        """The result as a JSON-ready dict."""
        return dataclasses.asdict(self)


class _Sweep(keras.callbacks.Callback):
    """Sets an exponentially growing rate before each step and records the loss."""

    def __init__(self, rates: np.ndarray, stop_factor: float):
        super().__init__()
        self.rates = rates
        self.stop_factor = stop_factor
        self.losses: list[float] = []
        self._mean_before = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = float(self.rates[batch])

    def on_train_batch_end(self, batch, logs=None):
        # Keras logs the running mean over the epoch; recover this step's loss.
        mean = float(logs["loss"])
        loss = mean * (batch + 1) - self._mean_before * batch
        self._mean_before = mean
        self.losses.append(loss)
        best = min(self.losses)
        if not math.isfinite(loss) or (batch > 10 and loss > self.stop_factor * best):
            self.model.stop_training = True


def smooth(losses, beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average (as fastai's LR finder)."""
    out, avg = [], 0.0
    for i, value in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta**i))
    return np.asarray(out)


def suggest_lr(rates, smoothed) -> float:
    """The rate of steepest descent of the smoothed loss, before its minimum.

    Falls back to a tenth of the rate at the minimum when the curve is too
    short to have a slope.
    """
    rates = np.asarray(rates, dtype=np.float64)
    smoothed = np.asarray(smoothed, dtype=np.float64)
    finite = np.isfinite(smoothed)
    rates, smoothed = rates[finite], smoothed[finite]
    if len(rates) < 3:
        return float(rates[0]) if len(rates) else 1e-3
    lowest = int(np.argmin(smoothed))
    if lowest < 2:
        return float(rates[lowest] / 10.0)
    slope = np.gradient(smoothed[: lowest + 1], np.log(rates[: lowest + 1]))
    return float(rates[int(np.argmin(slope))])


def lr_find(
    model: keras.Model,
    dataset,
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    steps: int = 100,
    stop_factor: float = 4.0,
) -> LRFindResult:
    """Sweeps the learning rate of a compiled model; see the module docstring.

    The model's weights change: build a fresh model for the real training.

    Args:
        model: A compiled Keras model whose optimizer takes a float rate.
        dataset: A repeating training dataset.
        min_lr: First rate.
        max_lr: Last rate.
        steps: Steps of the sweep.
        stop_factor: Stop when the loss exceeds this multiple of the best loss.
    """
    if not 0 < min_lr < max_lr or steps < 5:
        raise ConfigError(
            f"lr-find needs 0 < --min-lr ({min_lr}) < --max-lr ({max_lr}) and --steps >= 5 "
            f"({steps})"
        )
    rates = np.geomspace(min_lr, max_lr, steps)
    sweep = _Sweep(rates, stop_factor)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[sweep], verbose=0, shuffle=False)
    losses = np.asarray(sweep.losses)
    smoothed = smooth(losses)
    used = rates[: len(losses)]
    return LRFindResult(
        tuple(map(float, used)),
        tuple(map(float, losses)),
        tuple(map(float, smoothed)),
        suggest_lr(used, smoothed),
    )


def plot_lr_find(result: LRFindResult, path: str, title: str = "learning-rate finder") -> str:
    """Draws loss against learning rate (log scale) with the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.learning_rates, result.losses, alpha=0.3, label="loss")
    ax.plot(result.learning_rates, result.smoothed, label="smoothed")
    ax.axvline(
        result.suggestion, color="red", linestyle="--", label=f"suggested {result.suggestion:.2g}"
    )
    ax.set_xscale("log")
    finite = [v for v in result.smoothed if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
