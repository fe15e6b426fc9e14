"""Train/validation/test splits, decided in one place for every model.

* ``track`` (default): 70/10/20 of the tracks, stratified by genre; a track's segments stay together.
* ``segment``: the paper's (leaky) setting: the 10 segments of every track are split
  independently, stratified by genre, so one track can sit on both sides.
* ``filtered``: the artist-filtered split of Kereliuk, Sturm & Larsen (2015), the lists that
  ``torchaudio.datasets.gtzan`` ships (443 / 197 / 290 tracks), restricted to the tracks present.

Splits depend only on the track ids, their genres, the split name, the fractions and the
seed, so image and audio models see the same test tracks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genre_cls.errors import SplitError

SPLITS = ("track", "segment", "filtered")
PARTS = ("train", "val", "test")


def segment_id(track_id: str, segment: int) -> str:
    """The unit id of one segment in a segment split (``jazz.00054#3``)."""
    return f"{track_id}#{segment}"


def track_of(unit: str) -> str:
    """The track id of a split unit (a track id, or a segment id ``jazz.00054#3``)."""
    return unit.split("#", 1)[0]


def parse_segment_id(unit: str) -> tuple[str, int]:
    """``jazz.00054#3`` -> ``("jazz.00054", 3)``."""
    track, _, segment = unit.partition("#")
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
    for label in sorted(set(labels)):
        group = sorted(u for u, lab in zip(units, labels) if lab == label)
        group = [group[i] for i in rng.permutation(len(group))]
        n_test = int(round(test_f * len(group)))
        n_val = int(round(val_f * len(group)))
        if len(group) >= 3:  # tiny sets (tests, quick looks) still get every side
            n_test = max(n_test, int(test_f > 0))
            n_val = max(n_val, int(val_f > 0))
        out["test"] += group[:n_test]
        out["val"] += group[n_test : n_test + n_val]
        out["train"] += group[n_test + n_val :]
    return {p: sorted(v) for p, v in out.items()}


def filtered_lists() -> dict[str, list[str]]:
    """The artist-filtered track lists from torchaudio (train 443, val 197, test 290)."""
    from torchaudio.datasets import gtzan

    return {"train": list(gtzan.filtered_train), "val": list(gtzan.filtered_valid), "test": list(gtzan.filtered_test)}


def make_splits(
    track_ids: Sequence[str],
    split: str = "track",
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    n_segments: int = 10,
) -> dict[str, list[str]]:
    """Assign units to train/val/test.

    Returns track ids for ``track`` and ``filtered``, and segment ids (:func:`segment_id`)
    for ``segment``. The genre of a track is the part of its id before the dot.
    """
    genres = [genre_of(t) for t in track_ids]
    if split == "track":
        parts = _stratified(track_ids, genres, seed, fractions)
    elif split == "segment":
        units = [segment_id(t, s) for t in track_ids for s in range(n_segments)]
        labels = [g for g in genres for _ in range(n_segments)]
        parts = _stratified(units, labels, seed, fractions)
    elif split == "filtered":
        present = set(track_ids)
        parts = {p: sorted(t for t in ids if t in present) for p, ids in filtered_lists().items()}
    else:
        raise SplitError(f"unknown data.split {split!r}: choose one of {', '.join(SPLITS)}")
    empty = [p for p in PARTS if not parts[p]]
    if empty:
        raise SplitError(
            f"split {split!r} leaves {', '.join(empty)} empty with {len(track_ids)} tracks: "
            "use more tracks or another split"
        )
    return parts
