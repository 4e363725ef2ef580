"""Validation metrics and per-row losses, the model's and the trivial baseline's (pure)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

# Metric used to compare a new model with the champion; every one of them is a loss.
PRIMARY_METRIC = {"classification": "log_loss", "regression": "rmse"}
EPS = 1e-15  # probabilities are clipped to [EPS, 1] before a log


def row_losses(task: str, y: np.ndarray, predictions: np.ndarray, proba) -> np.ndarray:
    """Each row's loss: log loss of the true class, or squared error."""
    if task == "regression":
        return (predictions - y) ** 2
    picked = proba[np.arange(len(y)), y.astype("int64")]
    return -np.log(np.clip(picked, EPS, 1.0))


def score(task: str, y_true: np.ndarray, predictions: np.ndarray, proba: np.ndarray | None) -> dict:
    """Validation metrics; y_true are class codes (classification) or values."""
    if len(y_true) == 0:
        return {}
    if task == "regression":
        err = predictions - y_true
        return {
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mae": float(np.mean(np.abs(err))),
            "r2": float(skm.r2_score(y_true, predictions)) if len(y_true) > 1 else float("nan"),
        }
    labels = np.arange(proba.shape[1])
    predicted = np.argmax(proba, axis=1)
    present = np.unique(y_true).astype("int64")  # classes absent here say nothing about f1
    result = {
        "accuracy": float(skm.accuracy_score(y_true, predicted)),
        "f1_macro": float(
            skm.f1_score(y_true, predicted, average="macro", labels=present, zero_division=0)
        ),
        "log_loss": float(skm.log_loss(y_true, np.clip(proba, EPS, 1), labels=labels)),
    }
    if proba.shape[1] == 2 and len(present) == 2:
        result["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
    return result


def baseline_of(task: str, y_fit: np.ndarray, n_classes: int):
    """The trivial model from the training rows: their mean (regression) or class counts
    (classification), which partitions can sum."""
    if task == "regression":
        return float(y_fit.mean())
    return np.bincount(y_fit.astype("int64"), minlength=n_classes)


def baseline_losses(task: str, baseline, y_valid: np.ndarray) -> np.ndarray:
    """The trivial model's per-row losses: its class prior, or the training mean."""
    if task == "regression":
        return (y_valid - baseline) ** 2
    prior = np.asarray(baseline, dtype="float64") / np.sum(baseline)
    return -np.log(np.clip(prior[y_valid.astype("int64")], EPS, 1.0))
