"""The metric set, defined once: accuracy, macro and weighted precision/recall/F1, per class."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

METRIC_NAMES = (
    "acc",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
)


def metric_collection(num_classes: int) -> MetricCollection:
    """The seven summary metrics under the names of ``metrics.json`` (without prefix)."""
    kinds = {"precision": MulticlassPrecision, "recall": MulticlassRecall, "f1": MulticlassF1Score}
    metrics = {"acc": MulticlassAccuracy(num_classes, average="micro")}
    for average in ("macro", "weighted"):
        for name, cls in kinds.items():
            metrics[f"{name}_{average}"] = cls(num_classes, average=average)
    return MetricCollection(metrics)


def evaluate(probs: torch.Tensor, target: torch.Tensor, classes: list[str], prefix: str) -> dict:
    """All test metrics for ``probs`` (N, C) against ``target`` (N,).

    Returns a flat dict: ``{prefix}/<metric>`` floats, ``{prefix}/<precision|recall|f1|support>/<genre>``
    per class, and ``{prefix}/confusion_matrix`` (a list of rows, rows = true genre).
    """
    n = len(classes)
    probs, target = probs.detach().cpu().float(), target.detach().cpu().long()
    summary = metric_collection(n)(probs, target)
    cm = MulticlassConfusionMatrix(n)(probs, target).numpy().astype(int)
    out = {f"{prefix}/{k}": float(summary[k]) for k in METRIC_NAMES}
    for genre, values in per_class(cm, classes).items():
        out.update({f"{prefix}/{k}/{genre}": v for k, v in values.items()})
    out[f"{prefix}/confusion_matrix"] = cm.tolist()
    return out


def per_class(cm: np.ndarray, classes: list[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support for each class from a confusion matrix."""
    tp = np.diag(cm).astype(float)
    pred = cm.sum(0).astype(float)
    true = cm.sum(1).astype(float)
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, true, out=np.zeros_like(tp), where=true > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for c, p, r, f, s in zip(classes, precision, recall, f1, true)
    }


def vote_tracks(probs: torch.Tensor, target: torch.Tensor, track: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean segment probabilities per track: ``(probs, target)`` with one row per track."""
    ids, inverse = torch.unique(track, return_inverse=True)
    sums = torch.zeros(len(ids), probs.shape[1], dtype=probs.dtype).index_add_(0, inverse, probs)
    counts = torch.bincount(inverse, minlength=len(ids)).to(probs.dtype).unsqueeze(1)
    labels = torch.zeros(len(ids), dtype=target.dtype).scatter_(0, inverse, target)
    return sums / counts, labels
