"""``python -m genre_cls.bench [features|loading|steps|frontend|steps-resnet|extract|render|gpu-check|all]``."""

from genre_cls.bench.speed import main

main()
