"""LightningModules: training concerns (loss, metrics, optimisers, logging) around the networks."""

from genre_cls.systems.cgan import CGAN
from genre_cls.systems.classifier import GenreClassifier

__all__ = ["CGAN", "GenreClassifier"]
