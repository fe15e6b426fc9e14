"""``python -m genre_cls.data.synth OUT [--tracks-per-genre N] [--seed S]``: write a synthetic GTZAN."""

from genre_cls.data.synth.gtzan_tree import main

main()
