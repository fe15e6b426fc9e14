"""Shared fixtures: a small synthetic GTZAN tree, an isolated cache, composed configs, one trained
Net5 run.

The suite runs in two worker processes (pytest-xdist, ``-n 2`` in pyproject.toml). What the
session fixtures build (the synthetic tree, the cache, the Net5 run) is built once per test run,
by whichever worker needs it first, in a folder both workers share and under a file lock; each
test's own ``tmp_path`` is its worker's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

# Keep every cache the tests build (synthetic sets, images, features) out of the user's home; the
# workers of one run share it (its builds are atomic and keyed, so they never see half a cache).
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
os.environ.setdefault(
    "GENRE_CLS_CACHE",
    str(Path(tempfile.gettempdir()) / f"genre_cls_test_cache_{_RUN}") if _RUN else tempfile.mkdtemp(prefix="genre_cls_test_cache_"),
)
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


def shared(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder ``name`` of this test run, made by ``build(folder)`` once: with several workers
    (pytest-xdist) in the run's folder that they share, the first one builds it under a file lock
    while the other waits; alone, in this session's folder."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # /tmp/pytest-of-<user>/pytest-<N>/, above each worker's own popen-gw<i>/
    folder, done = base / "shared" / name, base / "shared" / f"{name}.done"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / "shared" / f"{name}.lock")):
        if not done.exists():
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A synthetic GTZAN tree (Kaggle layout, one corrupt wav), 10 tracks per genre."""
    from genre_cls.data.synth import generate

    return shared(tmp_path_factory, "synth", lambda root: generate(root, tracks_per_genre=TRACKS_PER_GENRE, seed=0, progress=False))


@pytest.fixture
def small_root(synth_root, tmp_path) -> Path:
    """Five tracks per genre of the synthetic set (linked): enough for every split, seconds per
    epoch, few chunks to run musicnn on (the DDP and transfer tests)."""
    root = tmp_path / "gtzan"
    for genre_dir in sorted((synth_root / "genres_original").iterdir()):
        for wav in sorted(genre_dir.glob("*.wav"))[:5]:
            link = root / "genres_original" / genre_dir.name / wav.name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(wav)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """The decoded images, features and waveforms of the synthetic tree, built once a run."""
    return shared(tmp_path_factory, "cache", lambda folder: folder.mkdir())


def make_cfg(overrides: list[str], out: Path, root: Path, cache: Path) -> DictConfig:
    """The real ``conf/train.yaml`` composed with ``overrides``, made quiet and local to ``out``."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.output_dir = str(out)
        cfg.data.root = str(root)
        cfg.data.cache_dir = str(cache)
        cfg.data.progress = False
        cfg.data.workers = 0
        cfg.trainer.enable_progress_bar = False
        cfg.trainer.enable_model_summary = False
        cfg.trainer.accelerator = "cpu"
    return cfg


@pytest.fixture(scope="session")
def net5_run(synth_root, cache_dir, tmp_path_factory) -> Path:
    """A Net5 run folder, trained one epoch on the synthetic tree (``checkpoints/best.ckpt``, no
    ``last.ckpt``): trained once a run, shared by the predict and serve tests, which only read it."""
    from genre_cls.train import train

    def build(out: Path) -> None:
        train(make_cfg(["model=net5", "epochs=1", "callbacks.last_checkpoint=null"], out, synth_root, cache_dir))

    return shared(tmp_path_factory, "net5_run", build)


@pytest.fixture
def cfg_factory(synth_root, cache_dir, tmp_path):
    """``cfg_factory(overrides, out=None)`` -> a composed config writing into ``tmp_path``."""

    def factory(overrides: list[str] = (), out: Path | None = None) -> DictConfig:
        return make_cfg(list(overrides), out or tmp_path / "run", synth_root, cache_dir)

    return factory


def tiny_checkpoint(folder: Path, name: str) -> Path:
    """An untrained checkpoint of a small model of each input kind (``image``, ``features``,
    ``waveform``), as ``genre_cls.train`` writes one: what prediction of many files is tested with
    where a model's weights do not matter (the same computation as a trained one's)."""
    import torch

    from genre_cls import GENRES
    from genre_cls.data.features import FeatureParams
    from genre_cls.systems.classifier import CHECKPOINT_FORMAT, GenreClassifier

    spec = {
        "image": dict(arch="net1", arch_kwargs={"hidden": 16}, input_kind="image", input_params={"image_size": 32}),
        "features": dict(arch="net5", arch_kwargs={"hidden": 16}, input_kind="features",
                         input_params={"feature_params": FeatureParams().as_dict()}),
        "waveform": dict(arch="mel_resnet", arch_kwargs={"width": 4, "depth": 2, "stem_pool": 2}, input_kind="waveform",
                         input_params={"sample_rate": 22050, "chunk_seconds": 3.0,
                                       "logmel": {"n_fft": 1024, "hop_length": 512, "n_mels": 64}}),
    }[name]
    torch.manual_seed(0)
    system = GenreClassifier(classes=list(GENRES), model_name=f"tiny_{spec['arch']}", **spec)
    path = folder / f"tiny_{name}.ckpt"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"genre_cls": CHECKPOINT_FORMAT, "hyper_parameters": dict(system.hparams), "state_dict": system.state_dict(),
                "epoch": 0}, path)
    return path


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory) -> dict[str, Path]:
    """:func:`tiny_checkpoint` of every input kind, by kind."""
    folder = tmp_path_factory.mktemp("tiny_ckpts")
    return {name: tiny_checkpoint(folder, name) for name in ("image", "features", "waveform")}


#: The files that took longest (pytest --durations=0 on two cores), the longest first.
HEAVIEST = (
    "test_multirun.py", "test_gpu_check.py", "test_robustness.py", "test_datasets_train.py", "test_train.py",
    "test_ddp.py", "test_transfer.py", "test_bench_library.py", "test_cli.py", "test_settings.py", "test_kinds.py",
    "test_predict.py", "test_shards.py", "test_results_file.py", "test_serve.py", "test_cgan.py", "test_tagging.py",
)


def pytest_collection_modifyitems(session, config, items) -> None:
    """Run the longest files first (:data:`HEAVIEST`, then the files with the most training runs,
    ``slow`` tests), each file's tests still together and in order: with ``--dist loadfile`` the
    two workers take files from this list, and a long file drawn last would keep one worker busy
    while the other has nothing left."""
    from collections import Counter

    slow = Counter(str(item.path) for item in items if item.get_closest_marker("slow"))
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(str(item.path), i)

    def rank(item) -> tuple:
        name = item.path.name
        return (HEAVIEST.index(name) if name in HEAVIEST else len(HEAVIEST), -slow[str(item.path)], first[str(item.path)])

    items.sort(key=rank)
