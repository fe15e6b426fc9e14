"""A system that survives kills, restarts, broken caches, concurrent builders and typos."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from conftest import make_cfg
from genre_cls.train import train

REPO = Path(__file__).resolve().parents[1]
TINY_NET1 = ["model=net1", "model.arch_kwargs.hidden=32"]


class SlowEpochs(L.Callback):
    """Make each epoch last at least ``seconds``, so that a test can kill a run between epochs.

    The killed run imports it from this file (``+callbacks.slow._target_=test_robustness.SlowEpochs``).
    """

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        time.sleep(self.seconds)


def _env(cache_dir: Path) -> dict[str, str]:
    return {**os.environ, "GENRE_CLS_CACHE": str(cache_dir), "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}


def _val_acc_steps(run: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars("val/acc")]


def _epoch_of(ckpt: Path) -> int | None:
    """The epoch stored in a checkpoint, or None while it is absent or being written."""
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:
        return None


def test_a_killed_run_resumes_from_last_ckpt_and_finishes(synth_root, cache_dir, tmp_path):
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    args = [
        *TINY_NET1, "epochs=6", f"data.root={synth_root}", f"hydra.run.dir={out}",
        "data.progress=false", "trainer.enable_progress_bar=false",
        "+callbacks.slow._target_=test_robustness.SlowEpochs", "+callbacks.slow.seconds=1.0",
    ]
    log = tmp_path / "killed_run.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "genre_cls.train", *args], cwd=tmp_path, env=_env(cache_dir), stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 240
        while (_epoch_of(last) or 0) < 1:
            assert proc.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no last.ckpt of epoch >= 1 in time"
            time.sleep(0.1)
        proc.kill()  # SIGKILL: no chance to clean up
    finally:
        proc.kill()
        proc.wait(timeout=60)
    killed_at = _epoch_of(last)
    assert killed_at is not None and 1 <= killed_at < 5
    assert not (out / "metrics.json").exists()

    # Restart with ckpt_path: it finishes the 6 requested epochs, not 6 more.
    metrics = train(make_cfg([*TINY_NET1, "epochs=6", f"ckpt_path={last}"], out, synth_root, cache_dir))
    assert metrics["epochs_trained"] == 6
    assert json.loads((out / "metrics.json").read_text())["epochs_trained"] == 6
    assert _epoch_of(last) == 5
    # TensorBoard holds val/acc for every epoch exactly once: those of the killed run and of the
    # resumed one (what the killed run logged after its checkpoint is dropped on resume).
    steps = sorted(_val_acc_steps(out))
    assert len(steps) == 6 and all(a < b for a, b in zip(steps, steps[1:])), steps


def test_the_same_config_gives_the_same_splits_and_metrics(synth_root, cache_dir, tmp_path):
    overrides = [*TINY_NET1, "epochs=1", "callbacks.last_checkpoint=null", "seed=3"]
    runs = [tmp_path / "a", tmp_path / "b"]
    metrics = [train(make_cfg(overrides, run, synth_root, cache_dir)) for run in runs]
    splits = [json.loads((run / "splits.json").read_text()) for run in runs]
    assert splits[0] == splits[1] and splits[0]["seed"] == 3
    a, b = ({k: v for k, v in m.items() if k.startswith("test")} for m in metrics)
    assert a == b and "test/acc" in a


@pytest.mark.parametrize(
    "kind, message",
    [
        ("weights only", "holds weights only (best.ckpt): resume from the same run's checkpoints/last.ckpt"),
        ("truncated", "is not a readable genre_cls checkpoint"),
        ("foreign", "was not written by genre_cls.train"),
    ],
)
def test_an_unusable_resume_checkpoint_is_a_user_error(cfg_factory, tmp_path, kind, message):
    from genre_cls.config import validate
    from genre_cls.errors import UserError
    from genre_cls.systems.classifier import CHECKPOINT_FORMAT

    ckpt = tmp_path / "x.ckpt"
    if kind == "foreign":
        torch.save({"state_dict": {}, "optimizer_states": []}, ckpt)
    else:
        torch.save({"genre_cls": CHECKPOINT_FORMAT, "epoch": 3, "state_dict": {"w": torch.zeros(1000)}}, ckpt)
    if kind == "truncated":  # what a crash in the middle of a copy leaves
        ckpt.write_bytes(ckpt.read_bytes()[:2000])
    with pytest.raises(UserError, match=re.escape(message)):
        validate(cfg_factory([f"ckpt_path={ckpt}"]))


# --------------------------------------------------------------------------- caches


def _pngs(synth_root: Path, n: int = 12) -> list[str]:
    return [str(p) for p in sorted((synth_root / "images_original").rglob("*.png"))[:n]]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_broken_image_cache_is_rebuilt_not_loaded(synth_root, tmp_path, damage):
    from genre_cls.data.images import load_images

    paths = _pngs(synth_root)
    fresh = load_images(paths, 180, tmp_path, progress=False)
    (cache,) = (tmp_path / "images").glob("*.npz")
    good = cache.read_bytes()
    broken = {"truncated": good[: len(good) // 2], "garbage": os.urandom(len(good)), "empty": b""}[damage]
    cache.write_bytes(broken)

    again = load_images(paths, 180, tmp_path, progress=False)
    np.testing.assert_array_equal(again, fresh)
    assert cache.read_bytes() == good  # rewritten whole
    assert [p.name for p in (tmp_path / "images").iterdir()] == [cache.name]


def test_two_processes_building_one_cache_agree_and_leave_one_file(synth_root, tmp_path):
    from genre_cls.data.cache import load_npz
    from genre_cls.data.images import load_images

    paths = _pngs(synth_root, 30)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        a, b = pool.starmap(load_images, [(paths, 180, str(tmp_path), False)] * 2)
    np.testing.assert_array_equal(a, b)
    files = list((tmp_path / "images").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz", files  # no temporary files left
    np.testing.assert_array_equal(load_images(paths, 180, tmp_path, progress=False), a)
    key = files[0].stem
    assert load_npz(files[0], key) is not None


# --------------------------------------------------------------------------- signals, NaN, orphans


class SignalAt(L.Callback):
    """Send ``signum`` to this process when training batch ``batch`` of epoch ``epoch`` starts."""

    def __init__(self, signum: int, epoch: int = 1, batch: int = 1) -> None:
        self.signum, self.epoch, self.batch = int(signum), epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), self.signum)


def test_sigint_mid_epoch_saves_last_ckpt_and_the_run_resumes_to_the_end(synth_root, cache_dir, tmp_path):
    import signal

    from genre_cls.errors import RunInterrupted

    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    handler = signal.getsignal(signal.SIGINT)
    overrides = [*TINY_NET1, "epochs=3", "+callbacks.sig._target_=test_robustness.SignalAt", f"+callbacks.sig.signum={int(signal.SIGINT)}"]
    with pytest.raises(RunInterrupted) as err:
        train(make_cfg(overrides, out, synth_root, cache_dir))
    assert err.value.status == 130 and "interrupted by SIGINT after 1 epochs" in str(err.value)
    assert signal.getsignal(signal.SIGINT) is handler  # the run's handlers are gone with it
    record = json.loads((out / "interrupted.json").read_text())
    assert record["signal"] == "SIGINT" and record["epochs_completed"] == 1
    assert record["checkpoint"] == str(last) and record["resume"].endswith(f"ckpt_path={last}")
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and "optimizer_states" in state  # saved in epoch 2, with its training state
    assert not (out / "metrics.json").exists()

    metrics = train(make_cfg([*TINY_NET1, "epochs=3", f"ckpt_path={last}"], out, synth_root, cache_dir))
    assert metrics["epochs_trained"] == 3 and (out / "metrics.json").is_file()


def test_sigterm_saves_last_ckpt_writes_interrupted_json_and_exits_143(synth_root, cache_dir, tmp_path):
    import signal

    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    args = [
        *TINY_NET1, "epochs=5", f"data.root={synth_root}", f"hydra.run.dir={out}",
        "data.progress=false", "trainer.enable_progress_bar=false",
        "+callbacks.slow._target_=test_robustness.SlowEpochs", "+callbacks.slow.seconds=1.0",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "genre_cls.train", *args], cwd=tmp_path, env=_env(cache_dir),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while _epoch_of(last) is None:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no last.ckpt in time"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # what a scheduler sends before it kills or preempts a job
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted by SIGTERM after ")
    record = json.loads((out / "interrupted.json").read_text())
    assert record["signal"] == "SIGTERM" and f"ckpt_path={last}" in record["resume"]
    assert record["resume"].startswith("python -m genre_cls.train model=net1")
    assert _epoch_of(last) is not None and not (out / "metrics.json").exists()


def test_a_diverging_run_stops_with_an_error_not_a_quiet_success(synth_root, cache_dir, tmp_path):
    from genre_cls.errors import TrainingDiverged

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"loss \((train|val)/loss\) became nan in epoch 1 at lr=1e\+30"):
        train(make_cfg([*TINY_NET1, "epochs=3", "lr=1e30"], out, synth_root, cache_dir))
    assert not (out / "metrics.json").exists()


def _children(pid: int) -> set[int]:
    """The live (not zombie) processes whose parent is ``pid``, from /proc."""
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.add(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_during_feature_extraction_leaves_no_worker_behind(synth_root, tmp_path):
    script = (
        "import glob, sys\n"
        "from genre_cls.data.featureset import extract_dataset\n"
        "paths = sorted(glob.glob(sys.argv[1] + '/genres_original/*/*.wav'))\n"
        "extract_dataset(paths, cache_dir=None, workers=2, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(synth_root)], env=_env(tmp_path), stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(workers := _children(proc.pid)) < 2:
            assert proc.poll() is None, "the extraction ended before its workers were seen"
            assert time.monotonic() < deadline, "no worker processes in time"
            time.sleep(0.05)
        proc.kill()  # SIGKILL: the parent cannot clean up
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "orphaned worker processes"
    finally:
        proc.kill()
        for w in workers | _children(proc.pid):  # should the test fail, leave no orphans either
            if _alive(w):
                os.kill(w, 9)


# --------------------------------------------------------------------------- odd data, odd models


def test_a_missing_genre_folder_is_named_in_a_warning(synth_root, tmp_path, caplog):
    from genre_cls import GENRES
    from genre_cls.data.index import index_gtzan

    for genre in GENRES:
        if genre != "rock":
            (tmp_path / "genres_original" / genre).mkdir(parents=True)
            (tmp_path / "genres_original" / genre / f"{genre}.00000.wav").symlink_to(
                synth_root / "genres_original" / genre / f"{genre}.00000.wav"
            )
    with caplog.at_level("WARNING", logger="genre_cls.data.index"):
        index = index_gtzan(tmp_path, check_files=False)
    assert len(index.tracks) == 9
    (warning,) = [r.getMessage() for r in caplog.records if "no usable tracks" in r.getMessage()]
    assert warning.startswith("no usable tracks of rock under ") and "training on the other 9 genres" in warning


def test_predict_reports_a_file_it_cannot_score_as_an_error_never_nan(tmp_path):
    import soundfile as sf

    from genre_cls.predict import format_json, predict_files
    from genre_cls.systems import GenreClassifier

    model = GenreClassifier(arch="net5", arch_kwargs={"hidden": 8, "num_layers": 1, "dropout": 0.0}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))  # what a diverged run's weights look like
    song = tmp_path / "song.wav"
    sf.write(song, (0.3 * np.sin(np.arange(22050 * 4) * 0.05)).astype(np.float32), 22050)
    (result,) = predict_files(model, [song], skip_errors=True)
    assert set(result) == {"file", "error"}
    assert result["error"].startswith(f"cannot score {song}: the model gives non-finite probabilities")
    def no_nan(constant):
        raise AssertionError(f"{constant} in the JSON output")

    doc = json.loads(format_json([result], model, "x.ckpt"), parse_constant=no_nan)  # strict JSON
    assert doc["results"] == [] and len(doc["errors"]) == 1


@pytest.mark.parametrize("loss, stops", [(2.3, False), (5e5, False), (3.2e31, True), (float("inf"), True), (float("nan"), True)])
def test_a_huge_finite_loss_counts_as_diverged(loss, stops):
    """lr=1e30 on Net5 gives losses near 1e31 that stay finite: that is divergence too."""
    from types import SimpleNamespace

    import torch

    from genre_cls.callbacks import FiniteLoss
    from genre_cls.errors import TrainingDiverged

    trainer = SimpleNamespace(callback_metrics={"train/loss": torch.tensor(loss)}, current_epoch=0, sanity_checking=False)
    if stops:
        with pytest.raises(TrainingDiverged, match=r"training loss \(train/loss\) became .* in epoch 1 at lr=1e\+30"):
            FiniteLoss(1e30).on_train_epoch_end(trainer, None)
    else:
        FiniteLoss(1e30).on_train_epoch_end(trainer, None)
