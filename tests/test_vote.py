"""The track vote of ``genre_cls.metrics``: a track's probabilities are the mean of its segments'."""

from __future__ import annotations

import torch

from genre_cls.metrics import evaluate, vote_tracks


def test_the_track_vote_is_the_mean_of_the_segment_probabilities():
    # Three classes; segments of tracks 7 and 2, interleaved, as a shuffled test set would give them.
    probs = torch.tensor(
        [
            [0.90, 0.05, 0.05],  # track 7
            [0.20, 0.70, 0.10],  # track 2
            [0.40, 0.50, 0.10],  # track 7
            [0.30, 0.30, 0.40],  # track 2
            [0.35, 0.50, 0.15],  # track 7
        ],
        dtype=torch.float64,
    )
    target = torch.tensor([0, 1, 0, 1, 0])
    track = torch.tensor([7, 2, 7, 2, 7])

    voted, labels = vote_tracks(probs, target, track)

    # One row per track, in track order: (0.2+0.3)/2 ...; (0.9+0.4+0.35)/3 ...
    expected = torch.tensor([[0.25, 0.50, 0.25], [0.55, 0.35, 0.10]], dtype=torch.float64)
    torch.testing.assert_close(voted, expected, rtol=0, atol=1e-12)
    assert labels.tolist() == [1, 0]
    # Track 7 is genre 0 by the mean although most of its segments say genre 1: a majority vote
    # (or the most confident segment's answer) would give another track accuracy.
    assert voted.argmax(1).tolist() == [1, 0]
    assert probs[track == 7].argmax(1).tolist() == [0, 1, 1]
    assert evaluate(voted, labels, ["a", "b", "c"], "t")["t/acc"] == 1.0


def test_a_track_with_uneven_segment_counts_is_still_a_plain_mean():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.5, 0.5]])
    voted, labels = vote_tracks(probs, torch.tensor([1, 1, 1, 0]), torch.tensor([0, 0, 0, 5]))
    torch.testing.assert_close(voted, torch.tensor([[1 / 3, 2 / 3], [0.5, 0.5]]))
    assert labels.tolist() == [1, 0]
