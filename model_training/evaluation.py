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
        ranks[order[start:start + count]] = start + (count + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(labels: np.ndarray, scores: np.ndarray,
                   threshold: float = 0.5) -> dict[str, object]:
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


def mask_metrics(truth: np.ndarray, probability: np.ndarray,
                 threshold: float = 0.5) -> dict[str, float]:
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
