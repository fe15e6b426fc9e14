"""The package's layering: data flows one way (README, "Project layout"), so no module imports
one that stands above it. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genre_cls"

# Lowest first. A module may import modules of its own layer or of a lower one.
LAYERS = [
    ["genre_cls", "genre_cls.errors"],
    ["genre_cls.data.cache", "genre_cls.data.workers", "genre_cls.data.engine", "genre_cls.hardware"],
    ["genre_cls.data.splits", "genre_cls.data.index", "genre_cls.data.collections", "genre_cls.data.audio", "genre_cls.data.melimage"],
    ["genre_cls.data.images", "genre_cls.data.features", "genre_cls.data.synth", "genre_cls.data.synth_collections"],
    ["genre_cls.data.featureset", "genre_cls.data.waveforms"],
    ["genre_cls.data.kinds"],
    ["genre_cls.data.datamodule", "genre_cls.data"],
    ["genre_cls.models", "genre_cls.models.mlp", "genre_cls.models.cnn", "genre_cls.models.lstm", "genre_cls.models.cgan",
     "genre_cls.models.frontend", "genre_cls.models.frontends", "genre_cls.models.resnet", "genre_cls.models.augment",
     "genre_cls.models.musicnn"],
    ["genre_cls.pretrained", "genre_cls.pretrained.tagger", "genre_cls.pretrained.convert_musicnn"],
    ["genre_cls.metrics", "genre_cls.plots", "genre_cls.paper"],
    ["genre_cls.systems", "genre_cls.systems.classifier", "genre_cls.systems.cgan", "genre_cls.systems.augment"],
    ["genre_cls.callbacks", "genre_cls.config", "genre_cls.runs"],
    ["genre_cls.train", "genre_cls.predict", "genre_cls.report", "genre_cls.bench", "genre_cls.gpu_check", "genre_cls.serve"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name.startswith("genre_cls") and name in LAYER}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert sorted(_module_name(p) for p in MODULES if _module_name(p) not in LAYER) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_no_import_from_a_higher_layer(path):
    me = _module_name(path)
    upward = sorted(name for name in _imports(path) if LAYER[name] > LAYER[me])
    assert upward == [], f"{me} (layer {LAYER[me]}) imports from higher layers: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: an import of a command from the data layer is caught."""
    fake = PACKAGE / "data" / "index.py"
    source = fake.read_text() + "\nfrom genre_cls.train import train\n"
    probe = tmp_path / "index.py"
    probe.write_text(source)
    assert "genre_cls.train" in _imports(probe)
    assert LAYER["genre_cls.train"] > LAYER["genre_cls.data.index"]
