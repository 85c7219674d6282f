"""Validation metrics in plain numpy, computed from an exported model's outputs.

The model cards report metrics of the *exported* SavedModel run on the
validation data through its serving signature, not of the Keras model during
training: what is measured is exactly what is shipped, preprocessing in the
graph included. These functions turn labels and scores into those numbers.
"""

from __future__ import annotations

import numpy as np


def binary_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula.

    Ties get average ranks, so a constant score gives 0.5. NaN if one class
    is absent.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks over runs of tied scores.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts, strict=True):
        ranks[order[start : start + count]] = start + (count + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> dict[str, object]:
    """Accuracy, precision, recall, F1, AUC and the confusion matrix.

    Args:
        labels: 0/1 labels.
        scores: Probabilities of class 1; NaN scores (undecodable images)
            are left out and counted in ``unscored``.
        threshold: A score at or above it predicts class 1.

    Returns:
        A JSON-ready dict; ``confusion_matrix`` is ``[[tn, fp], [fn, tp]]``
        (rows: true class 0, 1; columns: predicted class 0, 1).

    Example:
        labels [0, 0, 1, 1], scores [0.1, 0.6, 0.7, 0.9] -> accuracy 0.75,
        precision 2/3, recall 1.0, confusion [[1, 1], [0, 2]].
    """
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    scored = ~np.isnan(scores)
    y, s = labels[scored], scores[scored]
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "examples": n,
        "unscored": int(np.sum(~scored)),
        "threshold": threshold,
        "accuracy": (tp + tn) / n if n else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auc": binary_auc(y, s),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def mask_metrics(
    truth: np.ndarray, probability: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Building-class IoU, precision and recall of thresholded masks.

    Args:
        truth: Reference masks (nonzero = building), any shape.
        probability: Predicted building probabilities, same shape.
        threshold: A probability above it is a building pixel.

    Returns:
        ``iou`` (intersection over union of building pixels; 1.0 when both are
        empty), ``precision``, ``recall`` and ``building_fraction`` of the truth.
    """
    true = np.asarray(truth) > 0
    pred = np.asarray(probability) > threshold
    inter = float(np.sum(true & pred))
    union = float(np.sum(true | pred))
    return {
        "iou": inter / union if union else 1.0,
        "precision": inter / float(pred.sum()) if pred.any() else 0.0,
        "recall": inter / float(true.sum()) if true.any() else 0.0,
        "building_fraction": float(true.mean()) if true.size else 0.0,
        "threshold": threshold,
    }


#: Mask thresholds :func:`choose_mask_threshold` tries: 0.05, 0.10, ..., 0.95.
MASK_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def choose_mask_threshold(
    truth: np.ndarray, probability: np.ndarray, candidates: tuple[float, ...] = MASK_THRESHOLDS
) -> tuple[float, dict[str, float]]:
    """The threshold of highest building IoU on held-out pixels, and every IoU tried.

    Ties go to the candidate nearest 0.5. With no building in the truth
    nothing can be chosen and 0.5 is returned.

    Example:
        truth [1, 1, 0, 0], probabilities [0.45, 0.35, 0.2, 0.1] -> 0.3
        (a pixel above the threshold is a building: IoU 1.0 at 0.2, 0.25 and
        0.3; 0.3 is nearest 0.5).
    """
    true = np.asarray(truth) > 0
    if not true.any():
        return 0.5, {}
    prob = np.asarray(probability)
    ious = {t: mask_metrics(true, prob, t)["iou"] for t in candidates}
    best = max(ious.values())
    chosen = min((t for t, v in ious.items() if v == best), key=lambda t: (abs(t - 0.5), t))
    return chosen, {f"{t:.2f}": round(v, 4) for t, v in ious.items()}


# --------------------------------------------------------------------------
# Calibration: how far a score is from the share of positives it stands for
# --------------------------------------------------------------------------

#: Equal-width bins of the expected calibration error and the reliability diagram.
ECE_BINS = 15


def reliability(labels: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> dict[str, list]:
    """Reliability-diagram bins: mean score against the fraction of positives.

    Args:
        labels: 0/1 labels.
        scores: Probabilities of class 1 (NaN scores are left out).
        bins: Equal-width bins over [0, 1]; a score of exactly 1 goes in the last.

    Returns:
        ``bin_edges`` (bins + 1 values) and, per bin, ``mean_score``,
        ``fraction_positive`` (None for an empty bin) and ``count``.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    keep = ~np.isnan(scores)
    labels, scores = labels[keep], scores[keep]
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1], right=False), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    score_sum = np.bincount(index, weights=scores, minlength=bins)
    positive_sum = np.bincount(index, weights=labels, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, score_sum / np.maximum(count, 1), np.nan)
        positive = np.where(count > 0, positive_sum / np.maximum(count, 1), np.nan)
    return {
        "bin_edges": edges.tolist(),
        "mean_score": [None if np.isnan(v) else float(v) for v in mean],
        "fraction_positive": [None if np.isnan(v) else float(v) for v in positive],
        "count": count.astype(int).tolist(),
    }


def expected_calibration_error(
    labels: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS
) -> float:
    """ECE: the count-weighted mean gap between mean score and positive share per bin.

    ``sum_b (n_b / N) * |mean score_b - fraction positive_b|`` over ``bins``
    equal-width bins (15 by default, as in Guo et al. 2017). NaN without scores.

    Example:
        labels [0, 1, 1, 1], scores [0.1, 0.9, 0.9, 0.9] (bins 0.067-0.133 and
        0.867-0.933): |0.1 - 0| * 1/4 + |0.9 - 1| * 3/4 = 0.1.
    """
    table = reliability(labels, scores, bins)
    total = sum(table["count"])
    if not total:
        return float("nan")
    return float(
        sum(
            n * abs(m - f)
            for n, m, f in zip(
                table["count"], table["mean_score"], table["fraction_positive"], strict=True
            )
            if n
        )
        / total
    )


#: Scores are clipped this far from 0 and 1 before taking their logit.
LOGIT_EPS = 1e-6


def logit(scores: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [1e-6, 1 - 1e-6] (the exported graph does the same)."""
    p = np.clip(np.asarray(scores, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def fit_platt(
    labels: np.ndarray, scores: np.ndarray, iterations: int = 100, ridge: float = 1e-3
) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` with ``calibrated = sigmoid(a * logit(score) + b)``.

    A one-feature logistic regression of the labels on the model's logits,
    fitted by Newton's method (with a small ridge that keeps it finite on a
    separable validation set). Two parameters, not one temperature, because
    class-balanced training shifts every score towards a 50% prior; the
    offset ``b`` undoes that and ``a`` fixes over- or under-confidence.
    ``a`` stays positive, so the order of the scores (and so every exact
    fraction) is unchanged.

    Args:
        labels: 0/1 labels of the validation split.
        scores: The model's uncalibrated probabilities (NaN left out).
        iterations: Most Newton steps taken (it stops earlier once converged).
        ridge: Weight of the ridge that keeps the fit finite (it pulls ``a`` towards 1).

    Returns:
        ``(a, b)``; ``(1.0, 0.0)`` (the identity) when there is nothing to fit.
    """
    labels = np.asarray(labels, dtype=np.float64)
    x = logit(scores)
    keep = ~np.isnan(np.asarray(scores, dtype=np.float64))
    labels, x = labels[keep], x[keep]
    if labels.size < 2 or labels.min() == labels.max():
        return 1.0, 0.0
    a, b = 1.0, 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        w = p * (1.0 - p)
        grad = np.array([np.sum((p - labels) * x) + ridge * (a - 1.0), np.sum(p - labels)])
        hess = np.array(
            [[np.sum(w * x * x) + ridge, np.sum(w * x)], [np.sum(w * x), np.sum(w) + ridge]]
        )
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.max(np.abs(step)) < 1e-9:
            break
    if not np.isfinite(a) or not np.isfinite(b) or a <= 0:
        return 1.0, 0.0
    return float(a), float(b)


# --------------------------------------------------------------------------
# Quality gate: is the model good enough to rank footprints at all?
# --------------------------------------------------------------------------

#: Below this validation AUC a classifier is flagged as weak.
MIN_AUC = 0.6
#: Below this spread (95th minus 5th percentile) the scores cannot rank.
MIN_SPREAD = 0.05


def score_spread(scores: np.ndarray) -> float:
    """The 95th minus the 5th percentile of the scores (NaN left out; 0 if none)."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = scores[~np.isnan(scores)]
    if not scores.size:
        return 0.0
    low, high = np.percentile(scores, [5, 95])
    return float(high - low)


def weak_reasons(labels: np.ndarray, raw_scores: np.ndarray, threshold: float = 0.5) -> list[str]:
    """Why a classifier is degenerate on its validation split; [] if it is not.

    Three checks, on the model's own (uncalibrated) scores, each a sentence:
    AUC below :data:`MIN_AUC`; every example predicted as one class at
    ``threshold``; a score spread (:func:`score_spread`) below
    :data:`MIN_SPREAD`. Calibration cannot repair any of them: it keeps the
    order of the scores, and so the AUC.
    """
    labels = np.asarray(labels)
    raw = np.asarray(raw_scores, dtype=np.float64)
    keep = ~np.isnan(raw)
    labels, raw = labels[keep], raw[keep]
    reasons = []
    auc = binary_auc(labels, raw)
    if not auc >= MIN_AUC:  # NaN counts as weak
        reasons.append(
            f"validation AUC {auc:.3f} is below {MIN_AUC}: the scores barely "
            "rank residential above non-residential footprints"
        )
    predicted = raw >= threshold
    if raw.size and (predicted.all() or not predicted.any()):
        name = "residential" if predicted.all() else "non-residential"
        reasons.append(
            f"every one of the {raw.size} validation footprints is predicted "
            f"{name} at threshold {threshold}"
        )
    spread = score_spread(raw)
    if spread < MIN_SPREAD:
        reasons.append(
            f"the scores hardly vary: 90% of them lie within {spread:.3f} of "
            f"each other (less than {MIN_SPREAD})"
        )
    return reasons


#: A segmenter whose validation building IoU is below this is weak.
MIN_SEGMENTER_IOU = 0.3


def segmenter_weak_reasons(metrics: dict) -> list[str]:
    """Why a segmenter is degenerate on its validation patches; [] if it is not.

    ``metrics`` is :func:`mask_metrics`' result. A building IoU below
    :data:`MIN_SEGMENTER_IOU` (random masks of the demo's building share
    score about 0.1; the seed study reached 0.64) or no building pixel
    predicted at all.
    """
    reasons = []
    iou = metrics.get("iou")
    if iou is None or not iou >= MIN_SEGMENTER_IOU:
        reasons.append(
            f"validation building IoU {iou if iou is None else round(iou, 3)} is "
            f"below {MIN_SEGMENTER_IOU}: the masks barely find the buildings"
        )
    if metrics.get("precision", 0.0) == 0.0 and metrics.get("recall", 0.0) == 0.0:
        reasons.append("no validation pixel is predicted as building")
    return reasons
