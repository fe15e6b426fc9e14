"""genre_cls: music-genre classifiers on GTZAN with PyTorch Lightning and Hydra."""

GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
#: The most tracks per genre the synthetic stand-in makes: 10x GTZAN's 100 (about 13 GB of 30 s clips).
MAX_SYNTH_TRACKS_PER_GENRE = 1000

__version__ = "0.1.0"
