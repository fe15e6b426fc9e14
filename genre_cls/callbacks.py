"""Lightning callbacks of the training command, and where a run's best checkpoint is."""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning as L
from hydra.experimental.callback import Callback as HydraCallback
import torch
from omegaconf import DictConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

from genre_cls.checkpoints import RESUMES_KEY, RUN_KEY, SETTINGS_KEY, SNAPSHOT_NAME
from genre_cls.errors import RunInterrupted, TrainingDiverged
from genre_cls.schema import setting
from genre_cls.systems.classifier import LOGGED_METRICS

log = logging.getLogger(__name__)


@dataclass
class BestCheckpointSettings:
    """``callbacks.model_checkpoint``: the checkpoint of the best epoch (``best.ckpt``); its other
    keys are ``ModelCheckpoint``'s."""

    __extra__ = "ignore"
    monitor: Optional[str] = setting("val/acc", choices=LOGGED_METRICS)
    mode: str = setting("max", choices=("max", "min"))
    save_top_k: int = setting(1, ge=-1)


@dataclass
class LastCheckpointSettings:
    """``callbacks.last_checkpoint``: the checkpoint a run resumes from (``last.ckpt``)."""

    __extra__ = "ignore"
    every_n_epochs: int = setting(1, ge=1)


@dataclass
class CallbacksSettings:
    """The ``callbacks`` group (``conf/callbacks/*.yaml``): Lightning callbacks by name, each
    instantiated from its ``_target_`` (null: off)."""

    __extra__ = "ignore"
    model_checkpoint: Optional[BestCheckpointSettings] = setting(None)
    last_checkpoint: Optional[LastCheckpointSettings] = setting(None)


def _kept_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The ModelCheckpoint that writes the model a run keeps (``checkpoints/best.ckpt``): the one
    that monitors a metric (``model.keep_epoch=best``) or, where the last epoch is kept, the one
    that saves weights only (``last.ckpt``, the full training state for resuming, is not it)."""
    monitored = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor]
    weights = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.save_weights_only]
    for cb in monitored or weights:
        if cb.best_model_path:
            return cb
    return None


def best_score(trainer: L.Trainer) -> float | None:
    """The monitored validation score of the kept checkpoint so far (``val/acc``; ``None`` where
    the last epoch is kept)."""
    cb = _kept_callback(trainer)
    return float(cb.best_model_score) if cb is not None and cb.best_model_score is not None else None


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The path of the checkpoint the run keeps so far: the best epoch's by the monitored metric,
    or the last epoch's where the last is kept (``model.keep_epoch=last``, or no validation)."""
    cb = _kept_callback(trainer)
    return cb.best_model_path if cb is not None else None


class SnapshotBest(L.Callback):
    """Copy the best checkpoint so far once each epoch in ``at`` (1-based) is complete.

    One 100-epoch run then answers "best model within 50 epochs" and "within 100 epochs"
    without training the first 50 epochs twice. Lightning runs ModelCheckpoint's
    ``on_train_epoch_end`` after every other callback's, so the epoch's checkpoint exists only
    when the next epoch starts (or training ends): the copy is made then.
    """

    def __init__(self, at: list[int], dirpath: Path, last_is_best: bool = False) -> None:
        self.at = sorted(set(int(e) for e in at))
        self.dirpath = Path(dirpath)
        self.scores: dict[int, float | None] = {}
        self.last_is_best = last_is_best  # a run without validation: the weights of that epoch are kept

    @staticmethod
    def path_for(dirpath: Path, epoch: int) -> Path:
        return Path(dirpath) / SNAPSHOT_NAME.format(epoch=epoch)

    def _snapshot(self, trainer: L.Trainer, completed: int) -> None:
        if completed not in self.at:
            return
        if self.last_is_best:
            trainer.save_checkpoint(self.path_for(self.dirpath, completed), weights_only=True)
            self.scores[completed] = None
            return
        best = best_checkpoint(trainer)
        if trainer.is_global_zero and best:
            shutil.copyfile(best, self.path_for(self.dirpath, completed))
            self.scores[completed] = best_score(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(trainer, trainer.current_epoch)  # current_epoch = epochs completed

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(trainer, trainer.current_epoch)


class RunIdentity(L.Callback):
    """Write what defines the run (:func:`genre_cls.checkpoints.run_identity` and the data
    fingerprint), the settings it may change on a resume (:func:`genre_cls.checkpoints.resume_settings`)
    and what its resumes changed of them into every checkpoint, so that a resume with other
    settings or other data is refused and one with other devices or more epochs is recorded."""

    def __init__(self, identity: dict[str, Any], settings: dict[str, Any] | None = None,
                 resumes: list[dict[str, Any]] | None = None) -> None:
        self.identity = dict(identity)
        self.settings = dict(settings or {})
        self.resumes = list(resumes or [])

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUN_KEY] = dict(self.identity)
        checkpoint[SETTINGS_KEY] = dict(self.settings)
        checkpoint[RESUMES_KEY] = list(self.resumes)


class ResumeCleanup(L.Callback):
    """On a resume, once Lightning has loaded the checkpoint into the model, the optimiser and the
    loops (and only then: a checkpoint that does not load leaves the run's folder as it was), remove
    the TensorBoard points the run logged after that checkpoint
    (:func:`genre_cls.checkpoints.drop_orphaned_events`) and note that the run's folder is changing
    (``started``: a failure from here on is recorded in ``failed.json``)."""

    def __init__(self, run_dir: Path, ckpt_path: str | None) -> None:
        self.run_dir = Path(run_dir)
        self.ckpt_path = ckpt_path
        self.started = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer)  # a resume with no epoch left to train (it tests the run again) starts no training

    def _start(self, trainer: L.Trainer) -> None:
        from genre_cls.checkpoints import drop_orphaned_events

        if self.started:
            return
        self.started = True
        if self.ckpt_path is None or not trainer.is_global_zero:
            return
        dropped = drop_orphaned_events(self.run_dir, int(trainer.global_step))
        if dropped:
            log.info("removed %d TensorBoard points logged after %s; their epochs are trained again", dropped, self.ckpt_path)


#: A cross-entropy loss above this has diverged: ten classes start near ln(10) = 2.3, and even a
#: confidently wrong model stays far below (a loss of 1e6 means logits apart by about 1e6).
DIVERGED_LOSS = 1e6


class FiniteLoss(L.Callback):
    """Stop with :class:`~genre_cls.errors.TrainingDiverged` when the training or validation loss
    is NaN, infinite or above :data:`DIVERGED_LOSS`, instead of training on (and early stopping
    quietly on) NaN or numbers that are no longer a loss.

    The epoch's mean training loss is checked when the epoch ends, before ``last.ckpt`` is saved
    (Lightning runs the checkpoint callbacks last), so the last checkpoint stays a finite one.
    One check per epoch, not per step: a NaN in any step makes the epoch's mean NaN.
    """

    def __init__(self, lr: float | None = None) -> None:
        self.lr = lr

    def _check(self, trainer: L.Trainer, key: str, where: str) -> None:
        value = trainer.callback_metrics.get(key)
        if value is None or bool((torch.isfinite(value) & (value.abs() <= DIVERGED_LOSS)).all()):
            return
        lr = f" at lr={self.lr:g}" if self.lr is not None else ""
        raise TrainingDiverged(
            f"the {where} loss ({key}) became {float(value):.4g} in epoch {trainer.current_epoch + 1}{lr}: "
            "training diverged; lower the learning rate (the paper's: lr=1e-4) or check the data "
            "(data_summary.json lists what was read)"
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, "train/loss", "training")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer, "val/loss", "validation")


class GracefulStop(L.Callback):
    """SIGINT (Ctrl-C) and SIGTERM (what schedulers send before they kill or preempt a job) end a
    run cleanly: training stops at the end of the current batch, the state is saved as
    ``last.ckpt`` and :class:`~genre_cls.errors.RunInterrupted` is raised (the caller writes
    ``interrupted.json`` and exits 128 + the signal's number).

    Outside ``fit`` (data preparation, testing) the signal raises at once. A second signal
    does not wait for the batch to end.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, last_ckpt: Path) -> None:
        self.last_ckpt = Path(last_ckpt)
        self.signum: int | None = None
        self.saved: Path | None = None
        self.epoch = 0  # epochs completed when the signal came
        self._fitting = False
        self._previous: dict[int, Any] = {}

    # -- the handlers, installed for the whole run ---------------------------------------------
    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def interrupted(self) -> RunInterrupted:
        name = signal.Signals(self.signum).name if self.signum else "a signal"
        return RunInterrupted(self.signum or signal.SIGTERM, f"interrupted by {name}")

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = signum
        if not (self._fitting and first):
            raise self.interrupted()

    # -- inside fit: stop between batches -------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fitting = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fitting = False

    def _stop_if_signalled(self) -> None:
        if self.signum is not None:
            raise self.interrupted()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_if_signalled()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._stop_if_signalled()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._fitting = False
        self.epoch = int(trainer.current_epoch)
        # With several processes (DDP) saving is a collective that every rank would have to
        # reach: they resume from the last epoch's last.ckpt instead.
        if self.signum is None or trainer.state.fn != TrainerFn.FITTING or trainer.world_size > 1:
            return
        # Lightning resumes a mid-epoch checkpoint by running the batches left in that epoch.
        trainer.save_checkpoint(self.last_ckpt, weights_only=False)
        self.saved = self.last_ckpt


class SweepSummary(HydraCallback):
    """A Hydra callback (not Lightning's), in the process that runs a ``-m`` sweep (whatever the launcher): when
    the sweep ends it notes the runs of this sweep that failed (their ``failed.json``), so that
    ``genre_cls.train.cli`` ends with one line and exit status 1 instead of reporting success.

    Only this sweep's failures count: a ``failed.json`` that was in the sweep folder before it
    started (and was not written again since) belongs to another sweep."""

    failed: list[str] = []
    # The sweep folder and its failed.json files (with their modification times) when it started.
    sweep: Path | None = None
    before: dict[str, int] = {}

    @classmethod
    def _failures(cls) -> dict[str, int]:
        """The ``failed.json`` files under the sweep folder, each with its modification time (ns)."""
        found = {}
        for path in cls.sweep.glob("**/failed.json") if cls.sweep is not None else ():
            try:
                found[str(path)] = path.stat().st_mtime_ns
            except OSError:  # removed meanwhile
                pass
        return found

    @classmethod
    def new_failures(cls) -> list[str]:
        """The run folders of this sweep that failed so far (written or rewritten since it started)."""
        return sorted(str(Path(p).parent) for p, t in cls._failures().items() if cls.before.get(p) != t)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            SweepSummary.sweep = Path(str(config.hydra.sweep.dir))
        except Exception:  # an interpolation that does not resolve: nothing to summarise
            SweepSummary.sweep = None
        SweepSummary.failed = []
        SweepSummary.before = self._failures()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        SweepSummary.failed = self.new_failures()
