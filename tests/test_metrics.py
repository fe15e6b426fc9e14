"""``genre_cls.metrics``: the bootstrap intervals over test tracks, held to a slow reference."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from genre_cls.metrics import bootstrap_ci, interval_keys


def reference_ci(pred, target, group, resamples, seed):
    """The plain loop: draw tracks with replacement, gather all their units, score them."""
    rng = np.random.default_rng(seed)
    tracks = np.unique(group)
    accs, f1s = [], []
    draws = rng.integers(0, len(tracks), size=(resamples, len(tracks)))
    for draw in draws:
        idx = np.concatenate([np.flatnonzero(group == tracks[t]) for t in draw])
        accs.append(np.mean(pred[idx] == target[idx]))
        f1s.append(f1_score(target[idx], pred[idx], average="weighted", labels=np.arange(3), zero_division=0))
    return {"acc": list(np.percentile(accs, [2.5, 97.5])), "f1_weighted": list(np.percentile(f1s, [2.5, 97.5]))}


def tiny_case():
    # 6 tracks of 3 segments each, 3 classes; track 5 is entirely wrong, others partly.
    group = np.repeat(np.arange(6), 3)
    target = np.repeat([0, 0, 1, 1, 2, 2], 3)
    pred = target.copy()
    pred[[1, 4, 8]] = [1, 2, 0]
    pred[15:18] = 0
    return pred, target, group


def test_bootstrap_equals_the_plain_loop_on_a_tiny_case():
    pred, target, group = tiny_case()
    fast = bootstrap_ci(pred, target, group, num_classes=3, resamples=300, seed=4)
    slow = reference_ci(pred, target, group, resamples=300, seed=4)
    assert fast["acc"] == pytest.approx(slow["acc"])
    assert fast["f1_weighted"] == pytest.approx(slow["f1_weighted"])


def test_bootstrap_resamples_whole_tracks_not_segments():
    # Ten tracks: five entirely right, five entirely wrong, 10 segments each. Resampling tracks
    # gives the spread of 10 draws; resampling the 100 segments independently would be ~3x narrower.
    group = np.repeat(np.arange(10), 10)
    target = np.zeros(100, dtype=int)
    pred = np.where(group < 5, 0, 1)
    low, high = bootstrap_ci(pred, target, group, num_classes=2)["acc"]
    assert low == pytest.approx(0.2) and high == pytest.approx(0.8)
    by_segment = bootstrap_ci(pred, target, np.arange(100), num_classes=2)["acc"]
    assert by_segment[1] - by_segment[0] < 0.25


def test_bootstrap_is_fixed_by_its_seed_and_surrounds_the_accuracy():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 10, 2000)
    pred = np.where(rng.random(2000) < 0.7, target, rng.integers(0, 10, 2000))
    group = np.repeat(np.arange(200), 10)
    first = bootstrap_ci(pred, target, group, num_classes=10)
    assert first == bootstrap_ci(pred, target, group, num_classes=10)
    assert first != bootstrap_ci(pred, target, group, num_classes=10, seed=1)
    acc = np.mean(pred == target)
    assert first["acc"][0] < acc < first["acc"][1]


def test_interval_keys_use_the_names_of_metrics_json():
    assert interval_keys("test_track", {"acc": [0.1, 0.2]}) == {"test_track/acc_ci95": [0.1, 0.2]}
