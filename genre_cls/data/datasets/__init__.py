"""The data sets a run can read (``data=gtzan``, ``folders``, ``fma``, ``csv``), one module each.

A data set's module declares ``DATASET = Dataset(...)``: its name (``data.dataset``), what
``data.root`` holds (for the messages about it), how it indexes (a function returning a
:class:`~genre_cls.data.tracks.TrackIndex`), the schema of its options (``data.dataset_options``)
and how to write a small synthetic tree in its layout (tests and ``bench`` use it). The modules
are found here by reading the package, so a new data set is its module, its
``conf/data/<name>.yaml`` and its test: the config checks, ``bench --dataset`` and the tests'
synthetic trees read it from :func:`datasets`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from genre_cls.data.tracks import TrackIndex
from genre_cls.errors import UserError


@dataclass(frozen=True)
class Dataset:
    """One data set as the rest of the project sees it.

    Attributes:
        name: the name ``data.dataset`` (and ``conf/data/<name>.yaml``) gives it.
        holds: what ``data.root`` must point at, in words (``"your collection, one sub-folder
            per label (...)"``).
        index: ``index(root, min_seconds=..., check_files=..., progress=..., **options)`` ->
            :class:`~genre_cls.data.tracks.TrackIndex`: every labelled track, unusable files skipped
            with their reason.
        write_synthetic: ``write_synthetic(out, tracks_per_label, seconds, seed)`` -> the
            ``data.root`` of a small synthetic tree in this layout, written into the folder ``out``.
        options: the schema of ``data.dataset_options`` (a dataclass of :mod:`genre_cls.schema`).
        synthetic_default: ``data.root=null`` means the synthetic set (GTZAN only).
        root_is_file: ``data.root`` is a file (a manifest), not a folder.
    """

    name: str
    holds: str
    index: Callable[..., TrackIndex]
    write_synthetic: Callable[..., Path]
    options: type | None = None
    synthetic_default: bool = False
    root_is_file: bool = False


@lru_cache(maxsize=None)
def _found() -> tuple[Dataset, ...]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        declared = getattr(importlib.import_module(f"{__name__}.{info.name}"), "DATASET", None)
        if declared is not None:
            found.append(declared)
    return tuple(found)


def datasets() -> dict[str, Dataset]:
    """Every data set by its name, GTZAN (the default) first."""
    found = {d.name: d for d in _found()}
    return dict(sorted(found.items(), key=lambda item: (item[0] != "gtzan", item[0])))


def dataset(name: str) -> Dataset:
    """The data set called ``name``; an unknown name is one :class:`UserError`."""
    found = datasets()
    if name not in found:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(found)}")
    return found[name]


def index_dataset(name: str, root: str | os.PathLike, **options) -> TrackIndex:
    """Index ``root`` as the data set ``name``, passing ``options``.

    Raises:
        UserError: an unknown dataset name, or an option that dataset does not take (one line each).
    """
    indexer = dataset(name).index
    accepted = [p for p in inspect.signature(indexer).parameters if p != "root"]
    if bad := sorted(set(options) - set(accepted)):
        raise UserError(f"dataset {name!r} takes no option {bad[0]!r}: its options are {', '.join(accepted)}")
    return indexer(root, **options)
