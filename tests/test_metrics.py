"""``genre_cls.metrics``: the bootstrap intervals over test tracks, held to a slow reference."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from genre_cls.metrics import bootstrap_ci, evaluate, interval_keys, paired_bootstrap_ci, per_class


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


# --------------------------------------------------------------------------- the paired bootstrap


def test_paired_bootstrap_of_identical_predictions_is_zero():
    correct = np.random.default_rng(0).random(50) < 0.6
    assert paired_bootstrap_ci(correct, correct) == [0.0, 0.0]


def test_paired_bootstrap_gives_b_minus_a():
    right, wrong = np.ones(40, dtype=bool), np.zeros(40, dtype=bool)
    assert paired_bootstrap_ci(wrong, right) == [1.0, 1.0]
    assert paired_bootstrap_ci(right, wrong) == [-1.0, -1.0]


def test_paired_bootstrap_surrounds_a_known_difference_with_the_expected_width():
    # 400 items: A right on the first 200, B on the first 300. B - A is 1 on 100 items, else 0:
    # mean 0.25, standard error sqrt(0.25 * 0.75 / 400) = 0.0217, so about 0.25 ± 1.96 * 0.0217.
    a = np.arange(400) < 200
    b = np.arange(400) < 300
    low, high = paired_bootstrap_ci(a, b)
    half = 1.96 * np.sqrt(0.25 * 0.75 / 400)
    assert low == pytest.approx(0.25 - half, abs=0.01) and high == pytest.approx(0.25 + half, abs=0.01)
    assert paired_bootstrap_ci(a, b) == [low, high]  # fixed by its seed
    # Few resamples, so that the interval's ends are not the same multiples of 1/400 for both seeds.
    assert paired_bootstrap_ci(a, b, resamples=30, seed=1) != paired_bootstrap_ci(a, b, resamples=30, seed=2)
    low50, high50 = paired_bootstrap_ci(a, b, level=0.5)
    assert low < low50 < 0.25 < high50 < high


def test_paired_bootstrap_resamples_items_together_for_both_classifiers():
    # Both right on the same 100 of 200 items, B on 10 more: the difference is 0.05 with a
    # standard error of sqrt(0.05 * 0.95 / 200) = 0.015. Resampling A's and B's items
    # independently would see two accuracies of spread 0.035 each, an interval ~3x wider.
    a = np.arange(200) < 100
    b = np.arange(200) < 110
    low, high = paired_bootstrap_ci(a, b)
    assert low == pytest.approx(0.05 - 1.96 * np.sqrt(0.05 * 0.95 / 200), abs=0.01) and high < 0.085
    assert 0 < low < 0.05 < high


# --------------------------------------------------------------------------- per-class metrics against sklearn


def test_per_class_precision_recall_f1_and_support_equal_sklearn():
    import torch
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(3)
    classes = ["a", "b", "c", "d", "e"]
    target = rng.integers(0, 4, 300)  # class e never occurs
    pred = np.where((rng.random(300) < 0.5) & (target != 3), target, rng.integers(0, 3, 300))  # d is never predicted
    probs = torch.full((300, 5), 0.01)
    probs[torch.arange(300), torch.as_tensor(pred)] = 0.96
    out = evaluate(probs, torch.as_tensor(target), classes, "test")
    precision, recall, f1, support = precision_recall_fscore_support(target, pred, labels=range(5), zero_division=0)
    for i, c in enumerate(classes):
        assert out[f"test/precision/{c}"] == pytest.approx(precision[i])
        assert out[f"test/recall/{c}"] == pytest.approx(recall[i])
        assert out[f"test/f1/{c}"] == pytest.approx(f1[i])
        assert out[f"test/support/{c}"] == support[i]
    assert out["test/f1/d"] == 0.0 and out["test/support/e"] == 0 and 0 < out["test/f1/a"] < 1
    assert out["test/acc"] == pytest.approx(accuracy_score(target, pred))
    weighted = precision_recall_fscore_support(target, pred, labels=range(5), average="weighted", zero_division=0)
    assert out["test/f1_weighted"] == pytest.approx(weighted[2], abs=1e-6)
    assert out["test/precision_weighted"] == pytest.approx(weighted[0], abs=1e-6)


def test_per_class_f1_by_hand():
    # Class 0: 2 of 3 found, 1 false alarm: precision 2/3, recall 2/3, F1 2/3. Class 1: 1 of 1
    # found, 1 false alarm: precision 1/2, recall 1, F1 2/3. Class 2: never right: F1 0.
    cm = np.array([[2, 1, 0], [0, 1, 0], [1, 0, 0]])
    values = per_class(cm, ["x", "y", "z"])
    assert values["x"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert values["y"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert values["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_the_sign_flip_test_is_mcnemars_exact_test_for_one_prediction_per_item():
    from genre_cls.metrics import mcnemar, sign_flip_test

    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.random(60) < 0.6, rng.random(60) < 0.7
        assert sign_flip_test(b.astype(float) - a) == pytest.approx(mcnemar(a, b)["p_value"])
    assert sign_flip_test([0.0, 0.0]) == 1.0


def test_the_sign_flip_test_counts_an_item_predicted_several_times_once():
    from genre_cls.metrics import sign_flip_test

    # Three items, B's share of right predictions minus A's over two repetitions each. Of the 8
    # sign patterns the totals are ±2 (no flip), ±1 (one 0.5 flipped: 2 ways) and ±0 (the 1 flipped):
    # only all-plus and all-minus reach |2|.
    assert sign_flip_test([1.0, 0.5, 0.5]) == pytest.approx(2 / 8)
    assert sign_flip_test([1.0, 0.5, -0.5]) == pytest.approx(6 / 8)  # |1| is reached by 6 of 8
    # Many items: exact, and close to the normal approximation.
    rng = np.random.default_rng(1)
    d = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=400, p=[0.15, 0.1, 0.4, 0.15, 0.2])
    from scipy import stats

    z = d.sum() / np.sqrt(np.sum(d**2))
    assert sign_flip_test(d) == pytest.approx(2 * stats.norm.sf(abs(z)), abs=0.01)
    # Differences on no lattice: drawn, and still close.
    noisy = d + rng.normal(0, 1e-3, size=400)
    assert sign_flip_test(noisy) == pytest.approx(sign_flip_test(d), abs=0.01)


def test_the_bootstrap_interval_of_a_mean_holds_it_and_narrows_with_more_items():
    from genre_cls.metrics import bootstrap_mean_ci

    small, large = np.tile([1.0, 0.0, 1.0, 1.0], 10), np.tile([1.0, 0.0, 1.0, 1.0], 100)
    lo, hi = bootstrap_mean_ci(small)
    assert lo < 0.75 < hi
    lo2, hi2 = bootstrap_mean_ci(large)
    assert lo < lo2 < 0.75 < hi2 < hi
