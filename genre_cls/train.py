"""Train, validate and test one model: ``python -m genre_cls.train model=net3 optim=adam lr=1e-4``.

``train(cfg)`` does the work and returns the metrics (tests call it with a composed config);
``main()`` is the thin Hydra entry point and returns the optimised metric to sweepers.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from genre_cls.callbacks import SnapshotBest, best_checkpoint, best_score
from genre_cls.config import check_train_args, optim_name, validate
from genre_cls.data.cache import atomic_write
from genre_cls.data.splits import track_of
from genre_cls.errors import UserError, run_cli, user_errors
from genre_cls.metrics import METRIC_NAMES
from genre_cls.models import ARCHITECTURES
from genre_cls.systems import GenreClassifier

log = logging.getLogger(__name__)


def resume_dir(ckpt_path: str | None, default: str) -> str:
    """The run directory to write into: the resumed run's own (``<run>/checkpoints/last.ckpt``),
    so that its best checkpoint, TensorBoard history and metrics stay in one place."""
    if ckpt_path:
        path = Path(str(ckpt_path)).expanduser().resolve()
        if path.parent.name == "checkpoints":
            return str(path.parent.parent)
    return default


OmegaConf.register_new_resolver("resume_dir", resume_dir, replace=True)

# Lightning's advice that does not apply here: data are in memory (no loader workers needed),
# metrics are logged per epoch, and a resumed run writes into its own checkpoint folder.
for _pattern in (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*exists and is not empty.*",
    ".*LeafSpec.*",
):
    warnings.filterwarnings("ignore", message=_pattern)

def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically: a reader never sees a half-written metrics file."""
    atomic_write(path, lambda fh: fh.write((json.dumps(obj, indent=2) + "\n").encode()))


def drop_orphaned_events(run_dir: Path, ckpt_path: str) -> int:
    """Remove from the run's TensorBoard files the points a killed run logged after the
    checkpoint it is resumed from (an epoch validated but not yet checkpointed): the resumed run
    logs that epoch again, and TensorBoard should show each epoch once. (SummaryWriter's
    ``purge_step`` would only hide them from readers that honour it; TensorBoard's fast data
    server does not.) Returns how many points were removed."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    step = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True).get("global_step")
    if step is None:  # not a Lightning training state: nothing to compare the logged steps with
        return 0
    removed = 0
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        kept = [r for r in records if not ((e := Event.FromString(r)).HasField("summary") and e.step >= step)]
        if len(kept) < len(records):
            removed += len(records) - len(kept)

            def write(fh, kept=kept) -> None:
                writer = RecordWriter(fh)
                for record in kept:
                    writer.write(record)

            atomic_write(path, write)
    return removed


def _instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a callbacks/logger group that has a ``_target_``."""
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def _plain(node) -> Any:
    """A config node as plain Python containers (checkpoints must not hold OmegaConf objects)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def optim_of(cfg: DictConfig) -> str:
    return optim_name(cfg.optim._target_)


def build_system(cfg: DictConfig, dm) -> GenreClassifier:
    """The LightningModule for ``cfg.model``, with plain (checkpoint-safe) hyperparameters."""
    from genre_cls.data.features import FeatureParams

    system = GenreClassifier(
        arch=cfg.model.arch,
        arch_kwargs=_plain(cfg.model.get("arch_kwargs")),
        optim=_plain(cfg.optim),
        classes=dm.classes,
        model_name=cfg.model.name,
        early_stopping_patience=cfg.model.get("early_stopping_patience"),
        image_size=dm.image_size,
        feature_params=FeatureParams().as_dict() if dm.input == "features" else None,
    )
    if dm.input == "features":
        system.set_feature_stats(dm.feature_mean, dm.feature_std)
    return system


def splits_record(dm, seed: int) -> dict[str, Any]:
    """``splits.json``: the track ids of train, val and test (and, for the segment split, the
    segment ids, since one track then has segments on several sides)."""
    record: dict[str, Any] = {"split": dm.effective_split, "seed": seed}
    if dm.effective_split == "segment":
        for part, units in dm.splits.items():
            record[part] = sorted({track_of(u) for u in units})
            record[f"{part}_segments"] = units
    else:
        record.update(dm.splits)
    return record


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The hyperparameters shown in TensorBoard's HPARAMS tab."""
    return {
        "model": cfg.model.name,
        "optim": optim_of(cfg),
        "lr": float(cfg.lr),
        "epochs": int(cfg.epochs),
        "batch_size": int(cfg.batch_size),
        "seed": int(cfg.seed),
        "split": str(cfg.data.split),
        "data": "synthetic" if cfg.data.root is None else str(cfg.data.root),
    }


def metrics_table(metrics: dict[str, Any]) -> str:
    """The summary test metrics as a small text table (segment and track level)."""
    prefixes = [p for p in ("test", "test_track") if f"{p}/acc" in metrics]
    rows = [f"{'metric':<20}" + "".join(f"{p:>12}" for p in prefixes)]
    for name in METRIC_NAMES:
        rows.append(f"{name:<20}" + "".join(f"{metrics[f'{p}/{name}']:>12.4f}" for p in prefixes))
    return "\n".join(rows)


def _log_results(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, Any], out: Path) -> None:
    from genre_cls.plots import confusion_figure, save_figure

    title = f"{cfg.model.name} {optim_of(cfg)} lr={cfg.lr}: test acc {metrics['test/acc']:.3f}"
    figure = confusion_figure(metrics["confusion_matrix"], metrics["classes"], title)
    scalars = {k: v for k, v in metrics.items() if k.count("/") == 1 and isinstance(v, float)}
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.log_hyperparams(hparams_of(cfg), {"hp_metric": metrics["test/acc"], **scalars})
            lg.experiment.add_figure("test/confusion_matrix", figure, close=False)
            lg.experiment.flush()
    save_figure(figure, out / "confusion_matrix.png")


def _test(trainer: L.Trainer, system: GenreClassifier, dm, ckpt: str | None, log_metrics: bool = True) -> dict[str, Any]:
    system.log_test_metrics = log_metrics
    trainer.test(system, datamodule=dm, ckpt_path=ckpt, verbose=False)
    results = dict(system.test_results)
    if ckpt:
        results["best_epoch"] = int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]) + 1
    return results


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit ``cfg.model`` on ``cfg.data``, test the best checkpoint, write and return the metrics.

    With ``test_at=[50, 100]`` the best checkpoint seen up to each of those epochs is tested
    too and written as ``metrics_epoch50.json`` etc. (``metrics.json`` is the whole run).
    """
    validate(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    dm = hydra.utils.instantiate(cfg.data, input=ARCHITECTURES[cfg.model.arch][1])
    dm.setup("fit")
    write_json(out / "splits.json", splits_record(dm, int(cfg.seed)))
    write_json(out / "data_summary.json", dm.summary())

    cgan_info: dict[str, Any] = {}
    if cfg.model.get("augment") == "cgan":
        from genre_cls.systems.augment import augment_with_cgan

        trainer_kwargs = {k: _plain(cfg.trainer.get(k)) for k in ("accelerator", "devices", "precision", "fast_dev_run", "enable_progress_bar")}
        cgan_info = augment_with_cgan(_plain(cfg.cgan), dm, out, trainer_kwargs, seed=int(cfg.seed))
        # Net5's initial weights must not depend on whether the CGAN was trained or reused.
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    system = build_system(cfg, dm)
    if cfg.get("ckpt_path") and int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0:
        dropped = drop_orphaned_events(out, str(cfg.ckpt_path))
        if dropped:
            log.info("removed %d TensorBoard points logged after %s; their epochs are trained again", dropped, cfg.ckpt_path)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    test_at = [int(e) for e in (cfg.get("test_at") or []) if int(e) < int(cfg.epochs)]
    ckpt_dir = out / "checkpoints"
    snapshots = SnapshotBest(test_at, ckpt_dir)
    if test_at:
        callbacks.append(snapshots)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=_instantiate_all(cfg.get("logger")) or False
    )
    trainer.fit(system, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    epochs_trained = int(trainer.current_epoch)
    best = best_checkpoint(trainer)
    best_val = best_score(trainer)
    if best_val is None and "val/acc" in trainer.callback_metrics:  # no checkpointing (fast_dev_run)
        best_val = float(trainer.callback_metrics["val/acc"])
    if trainer.world_size > 1:
        # DDP trains on every device; testing runs once, on one device of the main process,
        # so that every test sample is counted exactly once.
        if not trainer.is_global_zero:
            return {}
        # Leave the process group: the other ranks have returned, and the test Trainer's
        # barriers (prepare_data) would wait for them forever.
        torch.distributed.destroy_process_group()
        trainer = L.Trainer(
            accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
            logger=trainer.loggers, enable_progress_bar=cfg.trainer.enable_progress_bar, enable_model_summary=False,
        )

    def finish(results: dict[str, Any], epochs: int, name: str) -> dict[str, Any]:
        results.update(
            model=str(cfg.model.name),
            optim=optim_of(cfg),
            lr=float(cfg.lr),
            epochs=epochs,
            epochs_trained=min(epochs, epochs_trained),
            classes=list(dm.classes),
            confusion_matrix=results["test/confusion_matrix"],
            split=dm.effective_split,
            seed=int(cfg.seed),
            **cgan_info,
        )
        results.setdefault("val/acc_best", best_val)
        results.setdefault("best_epoch", None)
        write_json(out / name, results)
        return results

    for epoch in test_at:
        snapshot = SnapshotBest.path_for(ckpt_dir, epoch)
        if snapshot.is_file():  # absent when early stopping ended the run first
            # Only the whole run's test metrics go to TensorBoard (one test/* point per run).
            snap = _test(trainer, system, dm, str(snapshot), log_metrics=False)
            snap["val/acc_best"] = snapshots.scores.get(epoch)
            finish(snap, epoch, f"metrics_epoch{epoch}.json")

    metrics = finish(_test(trainer, system, dm, best), int(cfg.epochs), "metrics.json")
    _log_results(trainer, cfg, metrics, out)
    print(f"\n{cfg.model.name} ({optim_of(cfg)}, lr={cfg.lr}) test metrics, best of {metrics['epochs_trained']} epochs:")
    print(metrics_table(metrics))
    print(f"run directory: {out}")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: returns ``cfg.optimized_metric`` for sweepers."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if not multirun:
        with user_errors():
            metrics = train(cfg)
        return metrics.get(cfg.get("optimized_metric", "test/acc"))
    try:
        metrics = train(cfg)
    except Exception as exc:
        # In a sweep one failed combination is recorded and the others go on.
        if isinstance(exc, UserError):
            log.error("this run failed: %s; the sweep continues", exc)
        else:
            log.exception("this run failed; the sweep continues")
        write_json(Path(cfg.output_dir) / "failed.json", {"error": f"{type(exc).__name__}: {exc}"})
        return None  # Optuna records a failed trial (a nan return aborts its whole study)
    return metrics.get(cfg.get("optimized_metric", "test/acc"))


def cli() -> None:
    run_cli(main, check_train_args)


if __name__ == "__main__":
    cli()
