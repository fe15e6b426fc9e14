"""Lightning callbacks of the training command, and where a run's best checkpoint is."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


def _best_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path:
            return cb
    return None


def best_score(trainer: L.Trainer) -> float | None:
    """The monitored validation score of the best checkpoint so far (``val/acc``)."""
    cb = _best_callback(trainer)
    return float(cb.best_model_score) if cb is not None and cb.best_model_score is not None else None


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The path of the best checkpoint so far (of the ModelCheckpoint that monitors a metric)."""
    cb = _best_callback(trainer)
    return cb.best_model_path if cb is not None else None


class SnapshotBest(L.Callback):
    """Copy the best checkpoint so far once each epoch in ``at`` (1-based) is complete.

    One 100-epoch run then answers "best model within 50 epochs" and "within 100 epochs"
    without training the first 50 epochs twice. Lightning runs ModelCheckpoint's
    ``on_train_epoch_end`` after every other callback's, so the epoch's checkpoint exists only
    when the next epoch starts (or training ends): the copy is made then.
    """

    def __init__(self, at: list[int], dirpath: Path) -> None:
        self.at = sorted(set(int(e) for e in at))
        self.dirpath = Path(dirpath)
        self.scores: dict[int, float | None] = {}

    @staticmethod
    def path_for(dirpath: Path, epoch: int) -> Path:
        return Path(dirpath) / f"best_upto_epoch{epoch}.ckpt"

    def _snapshot(self, trainer: L.Trainer, completed: int) -> None:
        best = best_checkpoint(trainer)
        if completed in self.at and trainer.is_global_zero and best:
            shutil.copyfile(best, self.path_for(self.dirpath, completed))
            self.scores[completed] = best_score(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(trainer, trainer.current_epoch)  # current_epoch = epochs completed

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._snapshot(trainer, trainer.current_epoch)
