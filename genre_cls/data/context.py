"""What building a data set's tensors needs to know besides the tracks: :class:`BuildContext`.

The input kinds (:mod:`genre_cls.data.kinds`) get it from the data module, and hand it on to what
they build with: the images (:func:`genre_cls.data.imageset.build_images`), the features
(:func:`genre_cls.data.featureset.extract_dataset`), the decoded waveforms
(:func:`genre_cls.data.waveformset.build_waveforms`), or anything a new kind computes once and caches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_cls.data.audio import CLIPS
from genre_cls.data.shards import check_engine


@dataclass(frozen=True)
class BuildContext:
    """Where and how a data set's tensors are built.

    Attributes:
        cache_dir: the cache root (``<cache_dir>/<what>/<key>``); ``None``: nothing is cached.
        workers: worker processes (``None``: ``min(cpus, 8)``; 0: this process); on Ray, the CPUs of
            a local Ray it starts.
        progress: show progress bars.
        engine, ray_address: where the work runs: ``"local"`` worker processes, or ``"ray"`` (a
            local Ray, or the cluster at ``ray_address``), :mod:`genre_cls.data.shards`.
        clip, clip_seconds: the part of a longer track that is used: its ``first`` or ``middle``
            ``clip_seconds`` (``None``: the track as it is), :func:`genre_cls.data.audio.clip_audio`.
    """

    cache_dir: Path | None = None
    workers: int | None = None
    progress: bool = True
    engine: str = "local"
    ray_address: str | None = None
    clip: str = "first"
    clip_seconds: float | None = None

    def __post_init__(self) -> None:
        check_engine(self.engine)
        if self.clip not in CLIPS:
            raise ValueError(f"unknown clip position {self.clip!r}: choose one of {', '.join(CLIPS)}")
        if self.clip_seconds is not None and not self.clip_seconds > 0:
            raise ValueError(f"clip_seconds must be positive or None, got {self.clip_seconds}")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(os.path.expanduser(str(self.cache_dir))))

    def worker_count(self) -> int:
        """The worker processes to use: :attr:`workers`, or ``min(cpus, 8)`` when not given."""
        return min(os.cpu_count() or 1, 8) if self.workers is None else max(0, int(self.workers))

    def clip_key(self) -> dict[str, Any]:
        """The clip as a cache key's entry: empty for whole tracks, so that the keys of caches made
        before clips existed still hold."""
        return {} if self.clip_seconds is None else {"clip": self.clip, "clip_seconds": float(self.clip_seconds)}
