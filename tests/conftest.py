"""Shared fixtures: a small synthetic GTZAN tree, an isolated cache, composed configs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Keep every cache the tests build (synthetic sets, images, features) out of the user's home.
os.environ.setdefault("GENRE_CLS_CACHE", tempfile.mkdtemp(prefix="genre_cls_test_cache_"))
os.environ.setdefault("MPLBACKEND", "Agg")
# One torch (OpenMP) thread in this process and in the commands the tests start: the models here
# are small, and on two shared cores their threads wait on each other (Net5's LSTM ran 15x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
TRACKS_PER_GENRE = 10
# Real GTZAN audio, in a shared/ folder beside the repository (CI puts a copy there): one 30 s
# clip per genre, and 409 excerpts of 2-3 s (40-41 per genre, flat <genre>/<genre>.000NN.wav).
SHARED = Path(__file__).resolve().parents[2] / "shared"
GTZAN_SAMPLE = SHARED / "gtzan-sample"
GTZAN_EXCERPTS = SHARED / "gtzan-excerpts"


def _real_audio(folder: Path, check: Path) -> Path:
    """``folder`` when ``check`` exists. Where it is absent the real-audio tests skip, except in
    CI (``CI=true``), where they fail: CI must not pass without having read real audio."""
    if not check.is_dir():
        message = f"no real audio at {folder} (<repo>/../shared/{folder.name})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}, and CI=true: the real-audio tests must run in CI")
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def gtzan_sample() -> Path:
    """``<repo>/../shared/gtzan-sample``: one real 30 s GTZAN clip per genre (Kaggle layout)."""
    return _real_audio(GTZAN_SAMPLE, GTZAN_SAMPLE / "genres_original")


@pytest.fixture(scope="session")
def gtzan_excerpts() -> Path:
    """``<repo>/../shared/gtzan-excerpts``: 409 real GTZAN excerpts of 2-3 s, read as ``data=folders``."""
    return _real_audio(GTZAN_EXCERPTS, GTZAN_EXCERPTS / "classical")


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A synthetic GTZAN tree (Kaggle layout, one corrupt wav), 10 tracks per genre."""
    from genre_cls.data.synth import generate

    root = tmp_path_factory.mktemp("gtzan") / "synth"
    generate(root, tracks_per_genre=TRACKS_PER_GENRE, seed=0, progress=False)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def make_cfg(overrides: list[str], out: Path, root: Path, cache: Path) -> DictConfig:
    """The real ``conf/train.yaml`` composed with ``overrides``, made quiet and local to ``out``."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.output_dir = str(out)
        cfg.data.root = str(root)
        cfg.data.cache_dir = str(cache)
        cfg.data.progress = False
        cfg.data.feature_workers = 0
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
        cfg.trainer.accelerator = "cpu"
    return cfg


@pytest.fixture(scope="session")
def net5_run(synth_root, cache_dir, tmp_path_factory) -> Path:
    """A Net5 run folder, trained one epoch on the synthetic tree (``checkpoints/best.ckpt``, no
    ``last.ckpt``): trained once, shared by the predict and serve tests, which only read it."""
    from genre_cls.train import train

    out = tmp_path_factory.mktemp("net5") / "run"
    train(make_cfg(["model=net5", "epochs=1", "callbacks.last_checkpoint=null"], out, synth_root, cache_dir))
    return out


@pytest.fixture
def cfg_factory(synth_root, cache_dir, tmp_path):
    """``cfg_factory(overrides, out=None)`` -> a composed config writing into ``tmp_path``."""

    def factory(overrides: list[str] = (), out: Path | None = None) -> DictConfig:
        return make_cfg(list(overrides), out or tmp_path / "run", synth_root, cache_dir)

    return factory
