"""``python -m genre_cls.bench``: measured speed against plain baselines
(:mod:`~genre_cls.bench.speed`), and ``bench gpu-check``, which proves the GPU path on a card
(:mod:`~genre_cls.bench.gpu_check`)."""

from genre_cls.bench.speed import main

__all__ = ["main"]
