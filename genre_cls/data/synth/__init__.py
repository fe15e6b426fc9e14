"""The synthetic stand-ins for real music: :mod:`~genre_cls.data.synth.music` renders
genre-styled clips, :mod:`~genre_cls.data.synth.gtzan_tree` writes them as a GTZAN tree in the
Kaggle layout (``python -m genre_cls.data.synth OUT``), and each data set's module writes its
own small tree of them (:attr:`genre_cls.data.datasets.Dataset.write_synthetic`)."""

from genre_cls.data.synth.gtzan_tree import (
    GENERATING,
    corrupt_track_id,
    generate,
    is_complete,
    main,
    png_path,
    remove_stale_builds,
    track_id,
    wav_path,
)
from genre_cls.data.synth.music import render_clip, synth_track

__all__ = ["GENERATING", "corrupt_track_id", "generate", "is_complete", "main", "png_path", "remove_stale_builds",
           "render_clip", "synth_track", "track_id", "wav_path"]
