"""genre_cls: music-genre classifiers on GTZAN with PyTorch Lightning and Hydra."""

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")

__version__ = "0.1.0"
