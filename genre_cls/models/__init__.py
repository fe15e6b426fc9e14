"""The networks as plain ``nn.Module``s; no-argument constructors give the paper's sizes.

Every module of this package declares what it adds by name: ``NETWORKS = {"net5": Net5}`` (the
names a model config's ``arch`` gives) and ``FRONTENDS = {"logmel": LogMel}`` (the first layer of
a classifier, named by a model config's ``frontend``). Each network and front end class names its
settings schema in ``settings`` (a dataclass of :mod:`genre_cls.schema`: ``model.arch_kwargs``,
``model.input.<frontend>``). They are found here by reading every module of the package, so a new
network is one new module.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from genre_cls.errors import UserError
from genre_cls.models.cgan import Discriminator, Generator
from genre_cls.models.cnn import Net2, Net3
from genre_cls.models.lstm import Net5
from genre_cls.models.mlp import Net1
from genre_cls.models.resnet import ShortChunkResNet


@lru_cache(maxsize=None)
def _declared(what: str) -> dict[str, type]:
    found: dict[str, type] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        found.update(getattr(importlib.import_module(f"{__name__}.{info.name}"), what, {}))
    return found


def networks() -> dict[str, type]:
    """Every network by the name a model config's ``arch`` gives (``mel_resnet``, ``net1`` ...), sorted."""
    return dict(sorted(_declared("NETWORKS").items()))


def frontends() -> dict[str, type]:
    """Every front end by the name a model config's ``frontend`` gives (``logmel``, ``scale`` ...), sorted."""
    return dict(sorted(_declared("FRONTENDS").items()))


def network(name: str) -> type:
    """The network class called ``name``; an unknown name is one :class:`UserError`."""
    found = networks()
    if name not in found:
        raise UserError(f"unknown network {name!r}: choose one of {', '.join(found)}")
    return found[name]


def frontend(name: str) -> type:
    """The front end class called ``name``; an unknown name is one :class:`UserError`."""
    found = frontends()
    if name not in found:
        raise UserError(f"unknown front end {name!r}: choose one of {', '.join(found)}")
    return found[name]


__all__ = ["Discriminator", "Generator", "Net1", "Net2", "Net3", "Net5", "ShortChunkResNet",
           "frontend", "frontends", "network", "networks"]
