"""A system that survives kills, restarts, broken caches, concurrent builders and typos."""

from __future__ import annotations

import json
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    from genre_cls.settings import validate
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


# --------------------------------------------------------------------------- signals, NaN, orphans


class SignalAt(L.Callback):
    """Send ``signum`` to this process when training batch ``batch`` of epoch ``epoch`` starts."""

    def __init__(self, signum: int, epoch: int = 1, batch: int = 1) -> None:
        self.signum, self.epoch, self.batch = int(signum), epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), self.signum)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_during_feature_extraction_leaves_no_worker_behind(synth_root, tmp_path):
    script = (
        "import glob, sys\n"
        "from genre_cls.data.context import BuildContext\n"
        "from genre_cls.data.featureset import extract_dataset\n"
        "paths = sorted(glob.glob(sys.argv[1] + '/genres_original/*/*.wav'))\n"
        "extract_dataset(paths, context=BuildContext(workers=2, progress=False))\n"
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
    from genre_cls.data.datasets.gtzan import index_gtzan

    for genre in GENRES:
        if genre != "rock":
            (tmp_path / "genres_original" / genre).mkdir(parents=True)
            (tmp_path / "genres_original" / genre / f"{genre}.00000.wav").symlink_to(
                synth_root / "genres_original" / genre / f"{genre}.00000.wav"
            )
    with caplog.at_level("WARNING", logger="genre_cls.data.datasets.gtzan"):
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


# --------------------------------------------------------------------------- runs never write into other runs


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time: what "nothing touched" compares."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def finished_run(synth_root, tmp_path_factory) -> tuple[Path, Path]:
    """A finished 1-epoch run (seed=1) and the cache it used."""
    cache = tmp_path_factory.mktemp("finished_cache")
    run = tmp_path_factory.mktemp("finished") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "genre_cls.train", *TINY_NET1, "data.image_size=16", "epochs=1", "seed=1",
         f"data.root={synth_root}", f"hydra.run.dir={run}", "data.progress=false", "trainer.enable_progress_bar=false"],
        cwd=run.parent, env=_env(cache), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0 and (run / "metrics.json").is_file(), proc.stderr[-3000:]
    return run, cache


@pytest.mark.slow
@pytest.mark.parametrize("how", ["literal", "interpolation"])
def test_a_run_never_writes_into_a_finished_runs_folder(finished_run, synth_root, tmp_path, how):
    """hydra.run.dir=<a finished run> with another seed: one line, exit 2, the run untouched.
    An interpolation is resolved by Hydra only: the folder is checked before Hydra writes there."""
    run, cache = finished_run
    before = _listing(run)
    given = str(run) if how == "literal" else "${oc.env:GENRE_CLS_TEST_RUN}"
    proc = subprocess.run(
        [sys.executable, "-m", "genre_cls.train", *TINY_NET1, "data.image_size=16", "epochs=1", "seed=2",
         f"data.root={synth_root}", f"hydra.run.dir={given}"],
        cwd=tmp_path, env={**_env(cache), "GENRE_CLS_TEST_RUN": str(run)}, capture_output=True, text=True, timeout=300,
    )
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: hydra.run.dir={run} holds another run's results (")
    assert lines[0].endswith(f"or resume that run with ckpt_path={run}/checkpoints/last.ckpt")
    assert _listing(run) == before


class Boom(L.Callback):
    """A failure after the start that is not a user error (a bug, a library's exception)."""

    def on_train_start(self, trainer, pl_module) -> None:
        raise RuntimeError("boom in epoch 1")


@pytest.mark.slow
def test_a_failure_after_the_start_writes_failed_json_with_the_line_the_user_saw(synth_root, cache_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "genre_cls.train", *TINY_NET1, "data.image_size=16", "epochs=1", f"data.root={synth_root}",
         f"hydra.run.dir={out}", "+callbacks.boom._target_=test_robustness.Boom"],
        cwd=tmp_path, env=_env(cache_dir), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == "RuntimeError: boom in epoch 1"
    assert json.loads((out / "failed.json").read_text()) == {"error": "RuntimeError: boom in epoch 1"}


def test_a_model_too_large_for_the_free_memory_is_refused_before_training(cfg_factory, monkeypatch, tmp_path):
    import genre_cls.train as train_module
    from genre_cls.errors import UserError

    cfg = cfg_factory([*TINY_NET1, "data.image_size=16", "epochs=1"])
    # net1 at 16 px with 32 hidden units: 3*16*16*32 + 32*32 + 32*10 weights, 4 bytes, 4 copies
    params = 3 * 16 * 16 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    monkeypatch.setattr(train_module, "available_memory", lambda: 16 * params - 1)
    with pytest.raises(UserError, match=r"this run needs about 0.0 GB of memory to train \(0.0 M parameters .* are free"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training
    monkeypatch.setattr(train_module, "available_memory", lambda: 10**12)
    assert train(cfg)["epochs_trained"] == 1


def test_an_allocation_failure_is_one_line(cfg_factory, monkeypatch):
    import genre_cls.train as train_module
    from genre_cls.errors import UserError

    def fail(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to allocate 38880000000000 bytes")

    monkeypatch.setattr(train_module, "build_system", fail)
    with pytest.raises(UserError, match="not enough memory for this run .*: lower batch_size"):
        train(cfg_factory([*TINY_NET1, "data.image_size=16", "epochs=1"]))


class FailInEpoch(L.Callback):
    """A failure after the run's first checkpoint (what a resume then continues from)."""

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"failed in epoch {self.epoch + 1}")


@pytest.mark.slow
def test_a_resume_that_finishes_a_failed_run_leaves_it_done_with_the_failure_kept(cfg_factory, tmp_path):
    from genre_cls.runs import read_run
    from genre_cls.runfolder import record_failure

    out = tmp_path / "run"
    tiny = [*TINY_NET1, "data.image_size=16", "epochs=2"]
    cfg = cfg_factory([*tiny, "+callbacks.fail._target_=test_robustness.FailInEpoch"], out=out)
    with pytest.raises(RuntimeError, match="failed in epoch 2") as info:
        train(cfg)
    record_failure(cfg, info.value)  # what main() does
    (out / ".hydra").mkdir()
    (out / ".hydra" / "config.yaml").write_text("model:\n  name: net1\n")
    assert read_run(out)["status"] == "failed"
    train(cfg_factory([*tiny, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"], out=out))
    assert read_run(out)["status"] == "done" and not (out / "failed.json").exists()
    (kept,) = out.glob("failed-before-resume-*.json")
    assert json.loads(kept.read_text()) == {"error": "RuntimeError: failed in epoch 2"}


class SeesItsClaim(L.Callback):
    """Records what the run folder's .running file says while the run trains."""

    seen: list = []

    def on_train_start(self, trainer, pl_module) -> None:
        SeesItsClaim.seen.append(json.loads((Path(trainer.default_root_dir) / ".running").read_text()))


@pytest.mark.slow
def test_a_run_still_running_is_not_resumed_by_another_process(cfg_factory, tmp_path):
    import socket

    from genre_cls.settings import validate
    from genre_cls.errors import UserError

    out = tmp_path / "run"
    tiny = [*TINY_NET1, "data.image_size=16", "epochs=1"]
    SeesItsClaim.seen = []
    train(cfg_factory([*tiny, "+callbacks.sees._target_=test_robustness.SeesItsClaim"], out=out))
    assert SeesItsClaim.seen == [{"pid": os.getpid(), "host": socket.gethostname()}]
    assert not (out / ".running").exists()  # released when the run ended

    resume = cfg_factory([*tiny, "epochs=2", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"], out=out)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:  # the run (or another resume of it) is still writing its folder
        (out / ".running").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        before = (out / "metrics.json").read_bytes()
        with pytest.raises(UserError, match=rf"the run in {out} is still running \(process {other.pid} on host "):
            validate(resume)
        with pytest.raises(UserError, match="is still running"):
            train(resume)
        assert (out / "metrics.json").read_bytes() == before
    finally:
        other.kill()
        other.wait()
    validate(resume)  # the process has gone (killed with kill -9): its .running no longer holds the run


class StopAfterFirstEpoch(L.Callback):
    """What early stopping does: end the training after the first epoch."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


@pytest.mark.slow
def test_a_test_at_epoch_training_never_reached_is_said(cfg_factory, tmp_path, caplog):
    import logging

    out = tmp_path / "run"
    cfg = cfg_factory([*TINY_NET1, "data.image_size=16", "epochs=3", "test_at=[1,2]", "trainer.min_epochs=1",
                       "+callbacks.stop._target_=test_robustness.StopAfterFirstEpoch"], out=out)
    with caplog.at_level(logging.WARNING, logger="genre_cls.train"):
        metrics = train(cfg)
    assert metrics["epochs_trained"] == 1
    assert (out / "metrics_epoch1.json").is_file() and not (out / "metrics_epoch2.json").exists()
    assert [r.getMessage() for r in caplog.records if r.name == "genre_cls.train"] == [
        "test_at epoch 2 was not reached (training ended after 1 epochs): no metrics_epoch2.json"
    ]


