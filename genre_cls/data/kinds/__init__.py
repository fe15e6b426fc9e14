"""Input kinds: what a network reads, one object per kind, one module each.

Each kind says, in one place, how the data module builds its tensors and test units from the
indexed tracks, which front end a model gets unless its config names another
(:func:`genre_cls.models.frontends`), whether a track's prediction is voted over several units,
and how ``predict`` cuts a user's file (:class:`~genre_cls.data.kinds.base.InputKind`):

========== ============================== ============ ======================================
kind       unit (one sample)               front end    track prediction
========== ============================== ============ ======================================
image      a 30 s clip as a 3x180x180 PNG  scale        the clip's own (one unit per track)
features   a 3 s segment, (16, 33) frames  standardize  mean of its 10 segments' probabilities
waveform   a chunk of decoded audio        logmel       mean of its chunks' probabilities
========== ============================== ============ ======================================

A kind's module declares ``KIND = ...Kind()``; the kinds are found here by reading the package, so
a new kind (an embedding computed once by a frozen network, say) is one new module. A kind gets
what it builds with as a :class:`~genre_cls.data.context.BuildContext` (cache folder, workers,
progress, engine, clip), never the data module.
"""

from __future__ import annotations

import importlib
import pkgutil

from genre_cls.data.kinds.base import FileUnits, InputDatasets, InputKind
from genre_cls.errors import UserError


def _found() -> dict[str, InputKind]:
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        kind = getattr(importlib.import_module(f"{__name__}.{info.name}"), "KIND", None)
        if kind is not None:
            found[kind.name] = kind
    return found


#: Every input kind by name (``image``, ``features``, ``waveform``...).
KINDS: dict[str, InputKind] = _found()


def kind_of(name: str) -> InputKind:
    """The input kind called ``name``; an unknown name is one :class:`UserError`."""
    try:
        return KINDS[name]
    except KeyError:
        raise UserError(f"unknown input kind {name!r}: choose one of {', '.join(KINDS)}") from None


__all__ = ["FileUnits", "InputDatasets", "InputKind", "KINDS", "kind_of"]
