import ast
import importlib.util
import sys
from pathlib import Path

import pytest

from genre_cls import GENRES
from genre_cls.data.splits import filtered_lists, make_splits
from genre_cls.errors import SplitError

IDS = [f"{g}.{i:05d}" for g in GENRES for i in range(100)]
IDS.remove("jazz.00054")  # the Kaggle copy's corrupt track


def test_track_split_is_70_10_20_stratified_disjoint_and_complete():
    s = make_splits(IDS, "track", seed=0)
    sets = {k: set(v) for k, v in s.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == set(IDS)
    assert len(s["test"]) == 200 and len(s["val"]) == 100
    for g in GENRES:
        assert sum(t.startswith(g) for t in s["test"]) == 20


def test_split_is_deterministic_by_seed():
    assert make_splits(IDS, "track", seed=0) == make_splits(list(reversed(IDS)), "track", seed=0)
    assert make_splits(IDS, "track", seed=0)["test"] != make_splits(IDS, "track", seed=1)["test"]


def test_test_tracks_do_not_depend_on_which_model_uses_them():
    # Image and audio models index the same track ids, so they get the same test tracks.
    assert make_splits(IDS, "track", seed=3)["test"] == make_splits(sorted(IDS), "track", seed=3)["test"]


def test_segment_split_puts_segments_of_one_track_on_both_sides():
    s = make_splits(IDS, "segment", seed=0)
    assert sum(map(len, s.values())) == len(IDS) * 10
    tracks = {k: {u.split("#")[0] for u in v} for k, v in s.items()}
    assert tracks["train"] & tracks["test"]  # the leakage this setting exists to measure


def test_filtered_split_uses_the_shipped_lists_restricted_to_present_tracks():
    lists = filtered_lists()
    assert [len(lists[p]) for p in ("train", "val", "test")] == [443, 197, 290]
    assert all(len(set(lists[p])) == len(lists[p]) for p in lists)  # no track listed twice
    assert not (set(lists["train"]) & set(lists["val"]) or set(lists["train"]) & set(lists["test"])
                or set(lists["val"]) & set(lists["test"]))
    s = make_splits(IDS, "filtered")  # IDS lacks jazz.00054, a training track of the lists
    assert s == {p: sorted(set(lists[p]) - {"jazz.00054"}) for p in ("train", "val", "test")}


def test_filtered_split_works_where_torchaudio_does_not_import(monkeypatch):
    from genre_cls.data import splits

    monkeypatch.setitem(sys.modules, "torchaudio", None)  # import torchaudio now raises ImportError
    for name in [m for m in sys.modules if m.startswith("torchaudio.")]:
        monkeypatch.setitem(sys.modules, name, None)
    splits._filtered.cache_clear()  # read the package data again, not a copy from before
    with pytest.raises(ImportError):
        import torchaudio  # noqa: F401
    s = make_splits(IDS, "filtered")
    assert [len(s[p]) for p in ("train", "val", "test")] == [442, 197, 290]


def test_the_shipped_lists_are_torchaudios():
    # Read from torchaudio's pure-Python source, so the comparison needs neither its compiled
    # part nor an import that could fail.
    spec = importlib.util.find_spec("torchaudio")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchaudio is not installed: nothing to compare the shipped lists with")
    source = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "gtzan.py"
    found = {}
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
    theirs = {p: ast.literal_eval(found[f"filtered_{name}"]) for p, name in (("train", "train"), ("val", "valid"), ("test", "test"))}
    assert filtered_lists() == theirs  # same tracks, same order


def test_bad_split_name_and_too_few_tracks_are_clear_errors():
    with pytest.raises(SplitError, match="track, segment, filtered"):
        make_splits(IDS, "random")
    with pytest.raises(SplitError, match="empty"):
        make_splits(["blues.00000"], "track")


@pytest.mark.parametrize("split", ["track", "segment"])
def test_k_folds_are_disjoint_cover_every_unit_and_are_stratified(split):
    units = 10 if split == "segment" else 1
    tests = [make_splits(IDS, split, seed=0, folds=5, fold=i) for i in range(5)]
    test_sets = [set(s["test"]) for s in tests]
    assert sum(map(len, test_sets)) == len(set().union(*test_sets)) == len(IDS) * units  # disjoint, complete
    for s in tests:
        sets = {k: set(v) for k, v in s.items()}
        assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
        assert len(sets["train"] | sets["val"] | sets["test"]) == len(IDS) * units
        assert len(s["val"]) == pytest.approx(0.1 * len(IDS) * units, abs=10)  # data.fractions' 10%
        assert len(s["test"]) == pytest.approx(len(IDS) * units / 5, abs=1)
        blues = sum(u.startswith("blues") for u in s["test"])
        assert blues == 20 * units  # stratified: a fifth of each genre
    assert make_splits(IDS, split, seed=0, folds=5, fold=2) == tests[2]  # deterministic
    assert make_splits(IDS, split, seed=1, folds=5, fold=2)["test"] != tests[2]["test"]


def test_ten_folds_over_tracks_leave_a_tenth_for_test():
    sizes = [tuple(len(s[p]) for p in ("train", "val", "test"))
             for s in (make_splits(IDS, "track", seed=0, folds=10, fold=i) for i in range(10))]
    assert sizes == [(799, 100, 100)] * 9 + [(800, 100, 99)]  # 999 tracks: the last fold is one short


@pytest.mark.parametrize(
    ("folds", "fold", "split", "message"),
    [
        (1, 0, "track", "whole number >= 2"),
        (2.5, 0, "track", "whole number >= 2"),
        ("5", 0, "track", "whole number >= 2"),
        (True, 0, "track", "whole number >= 2"),
        (5, 5, "track", r"0\.\.4"),
        (5, -1, "track", r"0\.\.4"),
        (5, None, "track", r"0\.\.4"),
        (None, 3, "track", "needs data.folds"),
        (5, 0, "filtered", "cannot be folded"),
    ],
)
def test_bad_folds_are_one_line_split_errors(folds, fold, split, message):
    with pytest.raises(SplitError, match=message) as info:
        make_splits(IDS, split, folds=folds, fold=fold)
    assert "\n" not in str(info.value)


def test_more_folds_than_tracks_is_a_clear_error():
    with pytest.raises(SplitError, match="empty"):
        make_splits(IDS[:30], "track", folds=40, fold=35)


def test_fractions_a_small_set_cannot_honour_are_said_not_ignored(caplog):
    """[0.98, 0.01, 0.01] of 3 tracks per genre would leave validation and test empty: each side
    gets one track of each genre (as the default split would), and a warning says so."""
    import logging

    ids = [f"{g}.{i:05d}" for g in ("blues", "rock") for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="genre_cls.data.splits"):
        s = make_splits(ids, "track", seed=0, fractions=(0.98, 0.01, 0.01))
    assert [len(s[p]) for p in ("train", "val", "test")] == [2, 2, 2]
    (record,) = caplog.records
    assert record.getMessage() == (
        "data.fractions=[0.98, 0.01, 0.01] leaves no validation or test unit of 2 class(es) with so few units "
        "(blues (3), rock (3)): each side gets one of each class, so the split is 2/2/2 of 6 units (train/val/test); "
        "use more tracks for the fractions asked"
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="genre_cls.data.splits"):
        make_splits([f"pop.{i:05d}" for i in range(100)], "track", seed=0, fractions=(0.98, 0.01, 0.01))
        make_splits(ids, "track", seed=0, fractions=(0.34, 0.33, 0.33))  # one each, as asked
    assert caplog.records == []


LABELS = {f"{label}/track {i}": label for label in ("Ünï, code", "b.c", "d#e") for i in range(10)}


def test_labels_come_from_the_index_not_the_track_id():
    ids = list(LABELS)
    s = make_splits(ids, "track", seed=0, labels=LABELS)
    assert sorted(sum(s.values(), [])) == sorted(ids)
    for label in set(LABELS.values()):  # stratified by the given labels: 7/1/2 of each
        assert [sum(LABELS[t] == label for t in s[p]) for p in ("train", "val", "test")] == [7, 1, 2]
    folds = [make_splits(ids, "track", seed=0, labels=LABELS, folds=5, fold=k)["test"] for k in range(5)]
    assert sorted(sum(folds, [])) == sorted(ids)
    with pytest.raises(ValueError, match="no label for 1 track"):
        make_splits(ids + ["x/y"], "track", labels=LABELS)


def test_official_split_uses_the_predefined_parts_and_refuses_folds_and_datasets_without_them():
    ids = list(LABELS)
    predefined = {t: ("train", "val", "test", "train")[i % 4] for i, t in enumerate(ids)}
    predefined[ids[0]] = None  # a track without a part is left out
    s = make_splits(ids, "official", labels=LABELS, predefined=predefined)
    assert {p: set(v) for p, v in s.items()} == {
        p: {t for t in ids if predefined[t] == p} for p in ("train", "val", "test")
    }
    assert make_splits(ids, "official", seed=5, labels=LABELS, predefined=predefined) == s  # no seed in it
    with pytest.raises(SplitError, match="predefined.*data.split=track"):
        make_splits(ids, "official", labels=LABELS)
    with pytest.raises(SplitError, match="cannot be folded"):
        make_splits(ids, "official", labels=LABELS, predefined=predefined, folds=5, fold=0)


def test_filtered_split_of_a_collection_that_is_not_gtzan_is_one_clear_error():
    with pytest.raises(SplitError, match="GTZAN's artist-filtered list"):
        make_splits(list(LABELS), "filtered", labels=LABELS)


def test_segment_ids_keep_hashes_in_track_ids():
    from genre_cls.data.splits import parse_segment_id, segment_id, track_of

    assert parse_segment_id(segment_id("d#e/Live #2", 3)) == ("d#e/Live #2", 3)
    assert track_of("d#e/Live #2#3") == "d#e/Live #2"
    assert track_of("d#e/track 1") == "d#e/track 1"
    assert track_of("x/Symphony #5") == "x/Symphony "  # alone, it reads as a segment id ...
    assert track_of("x/Symphony #5", {"x/Symphony #5"}) == "x/Symphony #5"  # ... the track ids tell
    s = make_splits(list(LABELS), "segment", seed=0, labels=LABELS, n_segments=3)
    assert sorted({track_of(u) for p in s.values() for u in p}) == sorted(LABELS)


@pytest.mark.parametrize("folds", [None, 5])
def test_a_validation_fraction_of_0_gives_validation_to_training_and_keeps_the_test_tracks(folds):
    with_val = make_splits(IDS, fractions=(0.7, 0.1, 0.2), folds=folds, fold=min(3, folds or 0))
    without = make_splits(IDS, fractions=(0.8, 0.0, 0.2), folds=folds, fold=min(3, folds or 0))
    assert without["val"] == [] and without["test"] == with_val["test"]
    assert sorted(without["train"]) == sorted(with_val["train"] + with_val["val"])
    # Only a validation fraction of 0 may leave a part empty.
    with pytest.raises(SplitError, match="leaves test empty"):
        make_splits(IDS[:3], fractions=(0.8, 0.2, 0.0))
