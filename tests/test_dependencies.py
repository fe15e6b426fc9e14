"""A fresh install loads: every dependency pyproject.toml declares imports (compiled parts
included), in a version its pin allows. A release that breaks an import (torchaudio 2.11.1's
``libtorchaudio.so: undefined symbol`` against torch 2.11.0) then fails here, not at a user's."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

# Distribution name -> the module it installs, where the two differ. Others import under their
# own name (lower case, "-" as "_").
IMPORT_NAMES = {
    "hydra-core": "hydra",
    "pillow": "PIL.Image",
    "python-multipart": "python_multipart",
    "hydra-joblib-launcher": "hydra_plugins.hydra_joblib_launcher.joblib_launcher",
    "hydra-submitit-launcher": "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
    "hydra-optuna-sweeper": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper",
    "playwright": "playwright.sync_api",
    "pytest-xdist": "xdist",
}


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()


def _installed_groups() -> list[str]:
    """The extras ``pip install -e ".[dev]"`` (the README's and CI's install) brings: dev and
    the ones it names (``genre_cls[sweep]``)."""
    dev = PROJECT["optional-dependencies"]["dev"]
    return ["dev", *(m.group(1) for r in dev if (m := re.match(r"genre_cls\[(\w+)\]", r)))]


def _declared() -> list[str]:
    extras = PROJECT["optional-dependencies"]
    found = list(PROJECT["dependencies"]) + [r for g in _installed_groups() for r in extras[g]]
    return [r for r in found if not r.startswith("genre_cls")]


DECLARED = _declared()


def test_the_declared_list_is_read():
    names = [_name(r) for r in DECLARED]
    assert {"torch", "torchaudio", "lightning", "hydra-core", "fastapi", "hydra-optuna-sweeper", "pytest"} <= set(names)
    assert len(names) == len(set(names))  # a dependency declared twice would hide one pin


@pytest.mark.parametrize("requirement", DECLARED, ids=_name)
def test_every_declared_dependency_imports_in_a_version_its_pin_allows(requirement):
    from packaging.requirements import Requirement

    name = _name(requirement)
    importlib.import_module(IMPORT_NAMES.get(name, name.replace("-", "_")))
    version = importlib.metadata.version(name)
    assert Requirement(requirement).specifier.contains(version, prereleases=True), f"{name} {version} is not {requirement}"


def test_torchaudio_loads_its_compiled_part_against_this_torch():
    import torch
    import torchaudio
    from torchaudio._extension import _IS_TORCHAUDIO_EXT_AVAILABLE

    assert _IS_TORCHAUDIO_EXT_AVAILABLE, "torchaudio imported without its compiled extension"
    assert hasattr(torch.ops.torchaudio, "_lfilter_core_loop")  # registered by libtorchaudio
    # A first-order filter y[n] = 0.5 x[n] + 0.5 y[n-1] through the compiled loop, checked by hand.
    x = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    y = torchaudio.functional.lfilter(x, torch.tensor([1.0, -0.5]), torch.tensor([0.5, 0.0]), clamp=False)
    torch.testing.assert_close(y, torch.tensor([[0.5, 0.25, 0.125, 0.0625]]))


def test_nothing_in_the_project_imports_torchaudio():
    # data.split=filtered reads the shipped lists (genre_cls/data/gtzan_filtered.json): where
    # torchaudio does not load, nothing of the project may need it.
    users = []
    for path in sorted((REPO / "genre_cls").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            users += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n.split(".")[0] == "torchaudio"]
    assert users == []


def test_the_filtered_split_lists_are_package_data():
    shipped = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["genre_cls"]
    assert "data/gtzan_filtered.json" in shipped and (REPO / "genre_cls" / "data" / "gtzan_filtered.json").is_file()


def test_the_wheel_lists_every_package_and_ships_every_config():
    """An install from a wheel (not only an editable one) holds every package and, as
    ``genre_cls.configs``, every file of ``conf/``: pyproject.toml lists the packages, so a new one
    must be added there."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = sorted(".".join(p.relative_to(REPO).parent.parts) for p in (REPO / "genre_cls").rglob("__init__.py"))
    assert sorted(setuptools["packages"]) == sorted([*found, "genre_cls.configs"])
    assert setuptools["package-dir"] == {"genre_cls.configs": "conf"}
    patterns = setuptools["package-data"]["genre_cls.configs"]
    configs = [p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*") if p.is_file()]
    assert configs and all(p.suffix == ".yaml" and any(p.match(g) and len(p.parts) == g.count("/") + 1 for g in patterns)
                           for p in configs), configs
