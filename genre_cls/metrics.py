"""The metric set, defined once: accuracy, macro and weighted precision/recall/F1, per class;
and the statistics that make single numbers trustworthy: bootstrap intervals over test tracks,
t-intervals over repeated runs, Welch's interval of a difference, McNemar's paired test.

torch and torchmetrics are imported where they are used: the report reads runs without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from torchmetrics import MetricCollection

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
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassPrecision, MulticlassRecall

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
    from torchmetrics.classification import MulticlassConfusionMatrix

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
    import torch

    ids, inverse = torch.unique(track, return_inverse=True)
    sums = torch.zeros(len(ids), probs.shape[1], dtype=probs.dtype).index_add_(0, inverse, probs)
    counts = torch.bincount(inverse, minlength=len(ids)).to(probs.dtype).unsqueeze(1)
    labels = torch.zeros(len(ids), dtype=target.dtype).scatter_(0, inverse, target)
    return sums / counts, labels


#: The bootstrap's fixed seed and number of resamples: the same predictions always give the same interval.
BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2000


def bootstrap_ci(
    pred: np.ndarray,
    target: np.ndarray,
    group: np.ndarray,
    num_classes: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of accuracy and weighted F1, resampling whole groups.

    ``pred``, ``target`` and ``group`` hold one entry per test unit; ``group`` says which track a
    unit belongs to, and a resample draws tracks with replacement, each bringing all of its units
    (so the 10 segments of a track are never treated as 10 independent samples). Vectorised:
    each track's counts per class are summed once, and a resample is a matrix product of its
    track multiplicities with them. Returns ``{"acc": [low, high], "f1_weighted": [low, high]}``.
    """
    pred, target = np.asarray(pred, dtype=np.int64), np.asarray(target, dtype=np.int64)
    _, track = np.unique(np.asarray(group), return_inverse=True)
    n_tracks = int(track.max()) + 1 if len(track) else 0
    if n_tracks == 0:
        return {"acc": [float("nan")] * 2, "f1_weighted": [float("nan")] * 2}
    # Per track and class: true positives, predictions, true units (n_tracks, C).
    tp = np.zeros((n_tracks, num_classes))
    np.add.at(tp, (track[pred == target], target[pred == target]), 1)
    predicted = np.zeros((n_tracks, num_classes))
    np.add.at(predicted, (track, pred), 1)
    true = np.zeros((n_tracks, num_classes))
    np.add.at(true, (track, target), 1)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_tracks, size=(resamples, n_tracks))
    # How often each resample drew each track: one bincount over (resample, track) cells.
    cells = (np.arange(resamples)[:, None] * n_tracks + draws).ravel()
    weight = np.bincount(cells, minlength=resamples * n_tracks).reshape(resamples, n_tracks).astype(float)
    tp_b, pred_b, true_b = weight @ tp, weight @ predicted, weight @ true  # (resamples, C)
    total = true_b.sum(1)
    acc = tp_b.sum(1) / total
    denom = pred_b + true_b
    f1 = np.divide(2 * tp_b, denom, out=np.zeros_like(tp_b), where=denom > 0)
    f1_weighted = (f1 * true_b).sum(1) / total
    tail = 100 * (1 - level) / 2
    return {
        name: [float(v) for v in np.percentile(values, [tail, 100 - tail])]
        for name, values in (("acc", acc), ("f1_weighted", f1_weighted))
    }


def interval_keys(prefix: str, ci: dict[str, list[float]]) -> dict[str, list[float]]:
    """``{"acc": [l, h]}`` -> ``{"<prefix>/acc_ci95": [l, h]}``: the names of ``metrics.json``."""
    return {f"{prefix}/{name}_ci95": bounds for name, bounds in ci.items()}


def t_interval(values, level: float = 0.95) -> tuple[float, float, float, list[float] | None]:
    """Mean, sample standard deviation and Student-t interval of the mean of repeated runs.

    Returns ``(mean, std, n, [low, high])``; with one value the std is 0 and the interval
    ``None`` (one run has no spread to measure: use its bootstrap interval instead).
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean())
    if n < 2:
        return mean, 0.0, n, None
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * std / np.sqrt(n)
    return mean, std, n, [mean - half, mean + half]


def welch_interval(a, b, level: float = 0.95) -> list[float] | None:
    """Interval of ``mean(a) - mean(b)`` for two independent sets of runs (Welch's t), or
    ``None`` when a side has fewer than 2 runs."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    if va + vb == 0:
        return [diff, diff]
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df) * np.sqrt(va + vb))
    return [diff - half, diff + half]


def mcnemar(a_correct, b_correct) -> dict[str, float]:
    """McNemar's exact test of two classifiers on the same items.

    ``a_correct``, ``b_correct``: booleans per item. Only the discordant items count:
    ``a_only`` (A right, B wrong) and ``b_only``; the two-sided p-value is the exact binomial
    test of ``a_only`` against ``a_only + b_only`` draws at 1/2.
    """
    from scipy import stats

    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    p = 1.0 if n == 0 else min(1.0, 2 * float(stats.binom.cdf(min(a_only, b_only), n, 0.5)))
    return {"a_only": a_only, "b_only": b_only, "p_value": p}


def paired_bootstrap_ci(
    a_correct, b_correct, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> list[float]:
    """Percentile interval of ``mean(b_correct) - mean(a_correct)``, resampling items (tracks)
    together for both classifiers."""
    diff = np.asarray(b_correct, dtype=float) - np.asarray(a_correct, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(1)
    tail = 100 * (1 - level) / 2
    return [float(v) for v in np.percentile(means, [tail, 100 - tail])]


def bootstrap_mean_ci(
    values, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED, level: float = 0.95
) -> list[float]:
    """Percentile interval of ``mean(values)``, resampling the items (e.g. each track's share of
    right predictions over repeated cross-validation) with replacement."""
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)
    tail = 100 * (1 - level) / 2
    return [float(v) for v in np.percentile(means, [tail, 100 - tail])]


def sign_flip_test(differences, resamples: int = 200_000, seed: int = BOOTSTRAP_SEED) -> float:
    """Two-sided paired permutation test that the per-item differences ``b - a`` are centred on 0.

    Under the null each item's difference is as likely to have either sign, so the p-value is
    the share of the 2**n sign patterns whose total is at least as far from 0 as the observed
    one. Exact when the differences are multiples of 1/m for some m up to 1000 (a share of right
    predictions over m repetitions is): the distribution of the total is built by convolution.
    Otherwise ``resamples`` sign patterns are drawn (seeded). For differences in {-1, 0, +1}
    (one prediction per item and side) it is McNemar's exact test; with repeated
    cross-validation an item's difference is its share of right predictions of B minus that of
    A, so an item predicted R times still counts once.
    """
    d = np.asarray(differences, dtype=float)
    d = d[np.abs(d) > 1e-12]
    if len(d) == 0:
        return 1.0
    for m in range(1, 1001):
        steps = d * m
        if np.allclose(steps, np.round(steps), atol=1e-6):
            k = np.abs(np.round(steps)).astype(np.int64)
            reach = int(k.sum())
            dist = np.zeros(2 * reach + 1)
            dist[reach] = 1.0  # index reach + total
            for step in k:
                dist = 0.5 * (np.concatenate([dist[step:], np.zeros(step)]) + np.concatenate([np.zeros(step), dist[:-step]]))
            observed = abs(int(np.round(steps.sum())))
            totals = np.abs(np.arange(-reach, reach + 1))
            return float(min(1.0, dist[totals >= observed].sum()))
    observed = abs(d.sum()) - 1e-9 * len(d)  # ties with the observed total count as extreme
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, resamples, 20_000):
        size = min(20_000, resamples - start)
        signs = rng.integers(0, 2, size=(size, len(d))) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed))
    return float((hits + 1) / (resamples + 1))
