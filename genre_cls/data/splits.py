"""Train/validation/test splits, decided in one place for every model.

* ``track`` (default): 70/10/20 of the tracks, stratified by genre; a track's segments stay together.
* ``segment``: the paper's (leaky) setting: the 10 segments of every track are split
  independently, stratified by genre, so one track can sit on both sides.
* ``filtered``: the artist-filtered split of Kereliuk, Sturm & Larsen (2015), the lists that
  ``torchaudio.datasets.gtzan`` ships (443 / 197 / 290 tracks), restricted to the tracks present
  (GTZAN only). A copy of them is package data (``gtzan_filtered.json``, its source named
  inside): torchaudio is not needed, and its compiled part does not load against every torch.
* ``official``: the dataset's own predefined parts (FMA's training / validation / test), for
  datasets whose index gives each track one (:attr:`genre_cls.data.tracks.Track.split`).

Splits depend only on the track ids, their labels (given by the dataset's index; for GTZAN ids
the part before the dot), the split name, the fractions and the seed, so image and audio models
see the same test tracks.

Repeated splits: with ``folds=K`` the units (tracks, or segments for ``segment``) of each genre
are shuffled with the seed and dealt round-robin into K folds, so the folds are stratified,
disjoint, of near-equal size and together cover every unit. Test is fold ``fold``; validation
is a stratified slice of the other folds of the size ``fractions`` gives it (10% of all units by
default); the rest is training. ``filtered`` and ``official`` have fixed lists and cannot be folded.

No validation: a validation fraction of 0 (``fractions=(0.8, 0.0, 0.2)``) leaves the validation
part empty and gives its tracks to training (a run then keeps its last epoch); the test part,
drawn first, is the same whatever the validation fraction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Container, Mapping, Sequence
from functools import lru_cache
from importlib import resources

import numpy as np

from genre_cls.errors import SplitError

log = logging.getLogger(__name__)

SPLITS = ("track", "segment", "filtered", "official")
# Splits whose parts are fixed lists, not drawn with the seed: no folds.
FIXED_SPLITS = ("filtered", "official")
PARTS = ("train", "val", "test")


def validation_left_empty(split: str, fractions: Sequence[float]) -> bool:
    """Whether ``split`` has no validation part by request: a validation share of 0 in ``fractions``
    empties it in the splits drawn with the seed (track and segment, and their folds); a fixed
    split brings its own validation list."""
    return split in ("track", "segment") and float(fractions[1]) == 0


def segment_id(track_id: str, segment: int) -> str:
    """The unit id of one segment in a segment split (``jazz.00054#3``)."""
    return f"{track_id}#{segment}"


def track_of(unit: str, tracks: Container[str] | None = None) -> str:
    """The track id of a split unit (a track id, or a segment id ``jazz.00054#3``).

    The last ``#`` starts the segment number, so track ids may hold ``#`` (``rock/Live #2 (x)``).
    A track id that itself ends in ``#`` and digits (``classical/Symphony #5``) reads like a
    segment id: pass ``tracks`` (the track ids) and a unit that is one of them is returned as is.
    """
    if tracks is not None and unit in tracks:
        return unit
    track, sep, segment = unit.rpartition("#")
    return track if sep and segment.isdigit() else unit


def parse_segment_id(unit: str) -> tuple[str, int]:
    """``jazz.00054#3`` -> ``("jazz.00054", 3)``; the last ``#`` separates the segment, so
    track ids may hold ``#`` themselves (``folk/Live #2#3`` -> ``("folk/Live #2", 3)``)."""
    track, _, segment = unit.rpartition("#")
    return track, int(segment)


def genre_of(track_id: str) -> str:
    """The genre of a GTZAN track id (``jazz.00054`` -> ``jazz``)."""
    return track_id.split(".", 1)[0]


def _stratified(units: Sequence[str], labels: Sequence[str], seed: int, fractions: Sequence[float]) -> dict[str, list[str]]:
    """Shuffle the units of each label with ``seed`` and cut them by ``fractions`` (train, val, test)."""
    train_f, val_f, test_f = fractions
    if min(fractions) < 0 or abs(train_f + val_f + test_f - 1.0) > 1e-6:
        raise SplitError(f"split fractions must be >= 0 and sum to 1, got {list(fractions)}")
    out: dict[str, list[str]] = {p: [] for p in PARTS}
    rng = np.random.default_rng(seed)
    raised: list[str] = []
    for label in sorted(set(labels)):
        group = sorted(u for u, lab in zip(units, labels) if lab == label)
        group = [group[i] for i in rng.permutation(len(group))]
        n_test = int(round(test_f * len(group)))
        n_val = int(round(val_f * len(group)))
        if len(group) >= 3 and (n_test == 0 < test_f or n_val == 0 < val_f):  # tiny sets still get every side
            n_test, n_val = max(n_test, int(test_f > 0)), max(n_val, int(val_f > 0))
            raised.append(f"{label} ({len(group)})")
        out["test"] += group[:n_test]
        out["val"] += group[n_test : n_test + n_val]
        out["train"] += group[n_test + n_val :]
    if raised:
        _say_raised(fractions, raised, out)
    return {p: sorted(v) for p, v in out.items()}


def _say_raised(fractions: Sequence[float], raised: list[str], out: dict[str, list[str]]) -> None:
    """Warn that ``fractions`` gave some labels no validation or test unit, so each got one:
    the split is not the one asked for (what cannot be honoured is said, not ignored)."""
    total = sum(len(v) for v in out.values())
    log.warning(
        "data.fractions=%s leaves no validation or test unit of %d class(es) with so few units (%s): each side gets "
        "one of each class, so the split is %s of %d units (train/val/test); use more tracks for the fractions asked",
        [float(f) for f in fractions], len(raised), ", ".join(raised[:3]) + (", ..." if len(raised) > 3 else ""),
        "/".join(str(len(out[p])) for p in PARTS), total,
    )


def check_folds(folds: object, fold: object, split: str | None = None) -> None:
    """Raise :class:`SplitError` (one line) unless ``folds`` is null or a whole number >= 2 and
    ``fold`` is a whole number in ``0..folds-1`` (``0`` when ``folds`` is null)."""
    def whole(v: object) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if folds is None:
        if fold not in (None, 0) or isinstance(fold, bool):
            raise SplitError(f"data.fold={fold!r} needs data.folds=K (K-fold over tracks), e.g. data.folds=5 data.fold={fold}")
        return
    if not whole(folds) or folds < 2:
        raise SplitError(f"data.folds must be null or a whole number >= 2, got {folds!r}")
    if not whole(fold) or not 0 <= fold < folds:
        raise SplitError(f"data.fold must be a whole number in 0..{folds - 1} with data.folds={folds}, got {fold!r}")
    if split == "filtered":
        raise SplitError("data.split=filtered has fixed artist-filtered lists and cannot be folded: "
                         "drop data.folds, or use data.split=track")
    if split == "official":
        raise SplitError("data.split=official uses the dataset's predefined parts and cannot be folded: "
                         "drop data.folds, or use data.split=track")


def _folded(
    units: Sequence[str], labels: Sequence[str], seed: int, fractions: Sequence[float], folds: int, fold: int
) -> dict[str, list[str]]:
    """Stratified K-fold: fold ``fold`` is test, a stratified slice of the rest is validation."""
    if min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise SplitError(f"split fractions must be >= 0 and sum to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    groups = {}
    for label in sorted(set(labels)):
        group = sorted(u for u, lab in zip(units, labels) if lab == label)
        groups[label] = [group[i] for i in rng.permutation(len(group))]
    # Deal the genres one after another round-robin: every fold gets each genre's share and
    # the folds differ in size by at most one unit.
    dealt = [u for label in sorted(groups) for u in groups[label]]
    fold_of = {u: i % folds for i, u in enumerate(dealt)}
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    raised: list[str] = []
    for label, group in groups.items():
        rest = [u for u in group if fold_of[u] != fold]
        out["test"] += [u for u in group if fold_of[u] == fold]
        n_val = min(int(round(fractions[1] * len(group))), max(len(rest) - 1, 0))
        if len(group) >= 3 and fractions[1] > 0 and n_val == 0:
            n_val = 1
            raised.append(f"{label} ({len(group)})")
        out["val"] += rest[:n_val]
        out["train"] += rest[n_val:]
    if raised:
        _say_raised(fractions, raised, out)
    return {p: sorted(v) for p, v in out.items()}


@lru_cache(maxsize=1)
def _filtered() -> dict[str, tuple[str, ...]]:
    text = resources.files("genre_cls.data").joinpath("gtzan_filtered.json").read_text(encoding="utf-8")
    return {part: tuple(ids) for part, ids in json.loads(text).items() if part in PARTS}


def filtered_lists() -> dict[str, list[str]]:
    """The artist-filtered track lists (train 443, val 197, test 290), as torchaudio ships them,
    read from this package's copy (``genre_cls/data/gtzan_filtered.json``)."""
    return {part: list(ids) for part, ids in _filtered().items()}


def _official(track_ids: Sequence[str], predefined: Mapping[str, str] | None) -> dict[str, list[str]]:
    """The tracks' predefined parts; a dataset without them is one :class:`SplitError`."""
    if not predefined or not any(predefined.get(t) for t in track_ids):
        raise SplitError(
            "data.split=official needs a dataset with predefined train/val/test parts (FMA has them, and a data=csv "
            "manifest with a split column; GTZAN and data=folders do not): use data.split=track"
        )
    if bad := sorted({p for t in track_ids if (p := predefined.get(t)) and p not in PARTS}):
        raise ValueError(f"predefined parts must be one of {', '.join(PARTS)}, got {bad[0]!r}")
    return {p: sorted(t for t in track_ids if predefined.get(t) == p) for p in PARTS}


def make_splits(
    track_ids: Sequence[str],
    split: str = "track",
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    n_segments: int = 10,
    folds: int | None = None,
    fold: int = 0,
    labels: Mapping[str, str] | None = None,
    predefined: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Assign units to train/val/test.

    Returns track ids for ``track``, ``filtered`` and ``official``, and segment ids
    (:func:`segment_id`) for ``segment``. With ``folds`` (K >= 2), test is fold ``fold`` of a
    stratified K-fold (see the module docstring).

    Args:
        labels: track id -> label, the classes to stratify by (the dataset index's labels);
            ``None``: GTZAN ids, whose label is the part before the dot.
        predefined: track id -> ``"train"``/``"val"``/``"test"``, the dataset's own parts, which
            ``official`` uses; tracks without one are left out of that split.
    """
    check_folds(folds, fold, split)
    if labels is None:
        genres = [genre_of(t) for t in track_ids]
    else:
        if missing := [t for t in track_ids if t not in labels]:
            raise ValueError(f"make_splits: no label for {len(missing)} track(s), e.g. {missing[0]!r}")
        genres = [labels[t] for t in track_ids]

    def assign(units: Sequence[str], labels: Sequence[str]) -> dict[str, list[str]]:
        if folds is None:
            return _stratified(units, labels, seed, fractions)
        return _folded(units, labels, seed, fractions, int(folds), int(fold))

    if split == "track":
        parts = assign(track_ids, genres)
    elif split == "segment":
        units = [segment_id(t, s) for t in track_ids for s in range(n_segments)]
        labels = [g for g in genres for _ in range(n_segments)]
        parts = assign(units, labels)
    elif split == "filtered":
        present = set(track_ids)
        parts = {p: sorted(t for t in ids if t in present) for p, ids in filtered_lists().items()}
        if track_ids and not any(parts.values()):
            raise SplitError(
                "data.split=filtered is GTZAN's artist-filtered list and none of these tracks is in it: "
                "use data.split=track (or data.split=official for a dataset with its own split)"
            )
    elif split == "official":
        parts = _official(track_ids, predefined)
    else:
        raise SplitError(f"unknown data.split {split!r}: choose one of {', '.join(SPLITS)}")
    # An empty validation part is what a validation fraction of 0 asks for.
    empty = [p for p in PARTS if not parts[p] and not (p == "val" and validation_left_empty(split, fractions))]
    if empty:
        raise SplitError(
            f"split {split!r} leaves {', '.join(empty)} empty with {len(track_ids)} tracks: "
            "use more tracks or another split"
        )
    return parts
