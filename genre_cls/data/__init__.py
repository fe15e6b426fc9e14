"""Data: indexing, synthetic GTZAN, audio, features, images, splits and the data module."""

from __future__ import annotations

from typing import Any

__all__ = ["GTZANDataModule"]


def __getattr__(name: str) -> Any:
    # Lazy: importing genre_cls.data.synth or .features must not pay for importing Lightning.
    if name == "GTZANDataModule":
        from genre_cls.data.datamodule import GTZANDataModule

        return GTZANDataModule
    raise AttributeError(name)
