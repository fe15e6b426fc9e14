"""Data: indexing, synthetic GTZAN, audio, features, images, waveforms, splits and the data module."""

from __future__ import annotations

from typing import Any

__all__ = ["GenreDataModule"]


def __getattr__(name: str) -> Any:
    # Lazy: importing genre_cls.data.synth or .features must not pay for importing Lightning.
    if name in __all__:
        from genre_cls.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(name)
