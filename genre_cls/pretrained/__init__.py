"""Pretrained music taggers that install with the package: musicnn's networks (Pons & Serra
2019) ported to PyTorch (:mod:`genre_cls.models.musicnn`), with weights converted once from the
``musicnn`` 0.1.0 wheel (ISC licence, ``weights/LICENSE-musicnn.md``) by
:mod:`genre_cls.pretrained.convert_musicnn`.

========== ============ ============================== =========================================
name       network      trained on                     tags
========== ============ ============================== =========================================
msd        musicnn      Million Song Dataset           50 Last.fm tags (rock, pop, jazz, ...)
mtt        musicnn      MagnaTagATune                  50 tags (guitar, classical, techno, ...)
msd_vgg    VGG baseline Million Song Dataset           as msd
mtt_vgg    VGG baseline MagnaTagATune                  as mtt
========== ============ ============================== =========================================

``weights/musicnn.json`` holds each model's tag names and where its weights came from (the
package, its version, the sha256 of the wheel, of every checkpoint file read and of the weight
file written). :func:`load` checks the weight file's hash before loading it (with
``weights_only=True``). Tagging audio: :mod:`genre_cls.pretrained.tagger`.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from genre_cls.models.musicnn import ARCHITECTURES

__all__ = ["WEIGHTS_DIR", "PretrainedModel", "PRETRAINED", "pretrained", "load"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
_PROVENANCE = WEIGHTS_DIR / "musicnn.json"


@dataclass(frozen=True)
class PretrainedModel:
    """One entry of the registry: what :func:`load` builds and what it tags."""

    name: str
    architecture: str
    weights: Path
    weights_sha256: str
    tags: tuple[str, ...]
    trained_on: str

    def describe(self) -> str:
        """One line for people: ``musicnn trained on the Million Song Dataset (50 tags)``."""
        network = "musicnn" if self.architecture == "musicnn" else "musicnn's VGG baseline"
        return f"{network} trained on the {self.trained_on} ({len(self.tags)} tags)"


@cache
def _registry() -> dict[str, PretrainedModel]:
    entries = json.loads(_PROVENANCE.read_text())["models"]
    return {
        name: PretrainedModel(
            name=name, architecture=e["architecture"], weights=WEIGHTS_DIR / e["weights"],
            weights_sha256=e["weights_sha256"], tags=tuple(e["tags"]), trained_on=e["trained_on"],
        )
        for name, e in entries.items()
    }


#: The registered names (``weights/musicnn.json``'s models, in its order).
PRETRAINED = ("msd", "mtt", "msd_vgg", "mtt_vgg")


def pretrained(name: str) -> PretrainedModel:
    """The registry entry called ``name``; a ``ValueError`` naming the choices otherwise."""
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown pretrained model {name!r}: choose one of {', '.join(registry)}")
    return registry[name]


def load(name: str, device: str | torch.device = "cpu") -> nn.Module:
    """The pretrained network ``name`` with its converted weights, in eval mode on ``device``.

    Raises ``ValueError`` for an unknown name and ``RuntimeError`` when the weight file is
    missing or is not the one the converter wrote (its sha256 differs from ``musicnn.json``'s).
    """
    entry = pretrained(name)
    if not entry.weights.is_file():
        raise RuntimeError(f"the weights of {name!r} are missing ({entry.weights}): reinstall genre_cls")
    data = entry.weights.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry.weights_sha256:
        raise RuntimeError(f"the weights of {name!r} ({entry.weights}) are damaged (sha256 differs): reinstall genre_cls")
    model = ARCHITECTURES[entry.architecture](num_classes=len(entry.tags))
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval().to(device)
