"""Data: indexing, synthetic GTZAN, audio, features, images, splits and the data module."""

from genre_cls.data.datamodule import GTZANDataModule

__all__ = ["GTZANDataModule"]
