"""The package's layering: data flows one way (README, "Project layout"), so no module imports
one that stands above it. Imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genre_cls"

# Lowest first. A module may import modules of its own layer or of a lower one. "pkg.*" stands for
# every module of a package, so a new network, dataset or input kind needs no line here.
LAYERS = [
    ["genre_cls", "genre_cls.errors"],
    ["genre_cls.schema", "genre_cls.conf"],
    ["genre_cls.data.cache", "genre_cls.data.processes", "genre_cls.data.shards", "genre_cls.hardware"],
    ["genre_cls.data.splits", "genre_cls.data.audio", "genre_cls.data.melimage", "genre_cls.data.tracks"],
    ["genre_cls.data.context", "genre_cls.data.imageset", "genre_cls.data.features", "genre_cls.data.synth.*", "genre_cls.data.synth",
     "genre_cls.data.audio_stream", "genre_cls.data.audio_files"],
    ["genre_cls.data.datasets.*", "genre_cls.data.datasets"],
    ["genre_cls.data.featureset", "genre_cls.data.waveformset"],
    # Networks are plain torch modules, pretrained ones with their weights: they import no data
    # code, so an input kind may use one (a frozen network that computes embeddings once).
    ["genre_cls.models.*", "genre_cls.models", "genre_cls.pretrained.*", "genre_cls.pretrained"],
    ["genre_cls.data.kinds.*", "genre_cls.data.kinds", "genre_cls.data.embeddingset"],
    ["genre_cls.data.datamodule", "genre_cls.data"],
    ["genre_cls.metrics", "genre_cls.plots", "genre_cls.paper"],
    ["genre_cls.systems.*", "genre_cls.systems"],
    # A model on many files: decoding workers and batched scoring; the results file it fills.
    ["genre_cls.library", "genre_cls.results_file"],
    ["genre_cls.runfolder"],
    ["genre_cls.checkpoints"],
    ["genre_cls.callbacks", "genre_cls.settings", "genre_cls.sweeps", "genre_cls.runs"],
    ["genre_cls.cmdline"],
    ["genre_cls.train", "genre_cls.predict", "genre_cls.evaluate", "genre_cls.report", "genre_cls.bench.*", "genre_cls.bench",
     "genre_cls.serve", "genre_cls.tagging"],
]


def layer_of(name: str) -> int | None:
    """The layer of module ``name``: listed by name, or as a module of a package listed as "pkg.*"."""
    for i, names in enumerate(LAYERS):
        if name in names or any(n.endswith(".*") and name.startswith(n[:-1]) for n in names):
            return i
    return None


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
    return {name for name in found if name.startswith("genre_cls") and layer_of(name) is not None}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    assert sorted(_module_name(p) for p in MODULES if layer_of(_module_name(p)) is None) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_no_import_from_a_higher_layer(path):
    me = _module_name(path)
    upward = sorted(name for name in _imports(path) if layer_of(name) > layer_of(me))
    assert upward == [], f"{me} (layer {layer_of(me)}) imports from higher layers: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: an import of a command from the data layer is caught."""
    fake = PACKAGE / "data" / "tracks.py"
    source = fake.read_text() + "\nfrom genre_cls.train import train\n"
    probe = tmp_path / "index.py"
    probe.write_text(source)
    assert "genre_cls.train" in _imports(probe)
    assert layer_of("genre_cls.train") > layer_of("genre_cls.data.tracks")
    assert layer_of("genre_cls.models.any_new_network") == layer_of("genre_cls.models.resnet")
