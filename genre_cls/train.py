"""Train, validate and test one model: ``python -m genre_cls.train model=net3 optim=adam lr=1e-4``.

``train(cfg)`` does the work and returns the metrics (tests call it with a composed config);
``main()`` is the thin Hydra entry point and returns the optimised metric to sweepers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from genre_cls.callbacks import SweepSummary, FiniteLoss, GracefulStop, RunIdentity, SnapshotBest, best_checkpoint, best_score
from genre_cls.config import (
    FRESH_RUN_HINT,
    RUN_KEY,
    check_train_args,
    load_checkpoint_state,
    optim_name,
    run_identity,
    validate,
)
from genre_cls.data.cache import atomic_write
from genre_cls.data.splits import track_of
from genre_cls.errors import RunInterrupted, UserError, exit_with, run_cli, user_errors
from genre_cls.hardware import check_trainer
from genre_cls.metrics import METRIC_NAMES
from genre_cls.models import ARCHITECTURES
from genre_cls.systems import GenreClassifier

log = logging.getLogger(__name__)


def resume_dir(ckpt_path: str | None, default: str) -> str:
    """The run directory to write into: the resumed run's own (``<run>/checkpoints/last.ckpt``),
    so that its best checkpoint, TensorBoard history and metrics stay in one place.

    The folder is the one the user named: a symlinked ``last.ckpt`` is not followed into the
    run it points to (that run's files are never rewritten).
    """
    if ckpt_path:
        path = Path(os.path.abspath(os.path.expanduser(str(ckpt_path))))
        if path.parent.name == "checkpoints":
            return str(path.parent.parent)
    return default


def resume_subdir(ckpt_path: str | None) -> str:
    """Where Hydra saves this run's config (``hydra.output_subdir``): ``.hydra``, except when a
    resume writes into a run folder that already has one; the original ``.hydra/config.yaml``
    then stays as it is and the resume's own config goes to ``.hydra/resume-<date>_<time>/``."""
    run = resume_dir(ckpt_path, "")
    if run and (Path(run) / ".hydra" / "config.yaml").is_file():
        # One name per run dir and process, however often Hydra resolves this.
        return _RESUME_SUBDIRS.setdefault(run, f".hydra/resume-{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    return ".hydra"


# A plain dict, not functools.lru_cache: launchers (joblib, submitit) pickle the resolvers.
_RESUME_SUBDIRS: dict[str, str] = {}


OmegaConf.register_new_resolver("resume_dir", resume_dir, replace=True)
OmegaConf.register_new_resolver("resume_subdir", resume_subdir, replace=True)

# Lightning's advice that does not apply here: data are in memory (no loader workers needed),
# metrics are logged per epoch, a resumed run writes into its own checkpoint folder, and a run
# stopped by a signal mid-epoch resumes with the batches left in that epoch, drawn in a new order
# (the in-memory loader keeps no position; README, "Kills, restarts and broken caches").
for _pattern in (
    ".*does not have many workers.*",
    ".*smaller than the logging interval.*",
    ".*exists and is not empty.*",
    ".*LeafSpec.*",
    ".*resuming from a checkpoint that ended before the epoch ended.*",
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
    """The LightningModule for ``cfg.model``, with plain (checkpoint-safe) hyperparameters: the
    classes and the input kind's parameters come from the data module."""
    return GenreClassifier(
        arch=cfg.model.arch,
        arch_kwargs=_plain(cfg.model.get("arch_kwargs")),
        optim=_plain(cfg.optim),
        classes=dm.classes,
        model_name=cfg.model.name,
        early_stopping_patience=cfg.model.get("early_stopping_patience"),
        input_params=dm.input_params(),
        train_augment=_plain(cfg.model.get("train_augment")),
        schedule=_plain(cfg.model.get("schedule")),
        label_smoothing=float(cfg.model.get("label_smoothing") or 0.0),
    )


def splits_record(dm, seed: int) -> dict[str, Any]:
    """``splits.json``: the track ids of train, val and test (and, for the segment split, the
    segment ids, since one track then has segments on several sides)."""
    fold = dm.fold if dm.folds is not None else None  # data.fold means something only with data.folds
    record: dict[str, Any] = {"split": dm.effective_split, "seed": seed, "folds": dm.folds, "fold": fold}
    if dm.effective_split == "segment":
        for part, units in dm.splits.items():
            record[part] = sorted({track_of(u) for u in units})
            record[f"{part}_segments"] = units
    else:
        record.update(dm.splits)
    return record


def write_predictions(path: Path, dm, predictions: dict[str, torch.Tensor]) -> None:
    """``predictions.csv``: one row per test unit (a segment or chunk for voted kinds, a track
    for image models): track id, unit index (blank for a whole track), true and predicted class
    and the probability of each class. Written with the csv module, so track ids with commas,
    quotes or non-ASCII characters stay one cell."""
    import csv
    import io

    probs, target, track = predictions["probs"], predictions["target"], predictions["track"]
    # The test loader serves the units in order; a debug run (fast_dev_run) tests only the first batch.
    units = dm.units["test"][: len(probs)]
    if len(units) != len(probs) or [u[0] for u in units] != track.tolist():
        raise RuntimeError(f"{len(probs)} test predictions do not line up with the {len(units)} test units")
    classes = list(dm.classes)
    pred = probs.argmax(1).tolist()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["track", "segment", "true", "predicted", *(f"p_{c}" for c in classes)])
    for (ti, seg), y, p, row in zip(units, target.tolist(), pred, probs.tolist()):
        writer.writerow([dm.track_ids[ti], "" if seg is None else str(seg), classes[y], classes[p], *(f"{v:.6g}" for v in row)])
    text = buf.getvalue()
    atomic_write(path, lambda fh: fh.write(text.encode()))


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
        "dataset": str(cfg.data.get("dataset", "gtzan")),
        "data": "synthetic" if cfg.data.root is None else str(cfg.data.root),
    }


def metrics_table(metrics: dict[str, Any]) -> str:
    """The summary test metrics as a small text table (segment and track level)."""
    prefixes = [p for p in ("test", "test_track") if f"{p}/acc" in metrics]
    rows = [f"{'metric':<20}" + "".join(f"{p:>12}" for p in prefixes)]
    for name in METRIC_NAMES:
        rows.append(f"{name:<20}" + "".join(f"{metrics[f'{p}/{name}']:>12.4f}" for p in prefixes))
    return "\n".join(rows)


def _log_results(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, Any], out: Path, step: int) -> None:
    """The run's test results in TensorBoard, at the training's last ``step``, and its confusion matrix figure."""
    from genre_cls.plots import confusion_figure, save_figure

    title = f"{cfg.model.name} {optim_of(cfg)} lr={cfg.lr}: test acc {metrics['test/acc']:.3f}"
    figure = confusion_figure(metrics["confusion_matrix"], metrics["classes"], title)
    # The run's test scalars are logged here, once (the test loop logs nothing): the summary ones
    # with the hyperparameters, so that the HPARAMS tab shows them, the per-genre ones beside.
    scalars = {k: v for k, v in metrics.items() if k.count("/") == 1 and isinstance(v, float)}
    per_genre = {k: v for k, v in metrics.items() if k.count("/") == 2 and isinstance(v, float)}
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.log_hyperparams(hparams_of(cfg), {"hp_metric": metrics["test/acc"], **scalars}, step=step)
            lg.log_metrics(per_genre, step=step)
            lg.experiment.add_figure("test/confusion_matrix", figure, close=False)
            lg.experiment.flush()
    save_figure(figure, out / "confusion_matrix.png")


def _test(trainer: L.Trainer, system: GenreClassifier, dm, ckpt: str | None, predictions: Path) -> dict[str, Any]:
    """Test ``ckpt`` (the current weights when ``None``): its metrics, and its per-unit
    predictions written to ``predictions``. Nothing is logged: only the whole run's test metrics
    go to TensorBoard, by :func:`_log_results`."""
    system.log_test_metrics = False
    trainer.test(system, datamodule=dm, ckpt_path=ckpt, verbose=False)
    results = dict(system.test_results)
    write_predictions(predictions, dm, system.test_predictions)
    if ckpt:
        results["best_epoch"] = int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]) + 1
    return results


def data_fingerprint(dm) -> str:
    """A hash of the indexed tracks: their ids and the sizes of their audio and image files.

    A checkpoint records it; a resume on data that changed since (tracks added, removed or
    replaced) is refused. Sizes, not modification times: copying a data set keeps them.
    """
    h = hashlib.sha256()
    for track in dm.index.tracks:
        sizes = [p.stat().st_size if p is not None else -1 for p in (track.audio, track.image)]
        h.update(f"{track.track_id}|{sizes[0]}|{sizes[1]}\n".encode())
    return h.hexdigest()[:16]


def check_resume_data(cfg: DictConfig, fingerprint: str, data_root: Path) -> None:
    """Refuse to resume a checkpoint whose run was trained on other data than ``data_root`` holds now."""
    recorded = load_checkpoint_state(str(cfg.ckpt_path)).get(RUN_KEY)
    was = recorded.get("data.fingerprint") if isinstance(recorded, dict) else None
    if was is not None and was != fingerprint:
        raise UserError(
            f"ckpt_path {str(cfg.ckpt_path)!r} was trained on other data: the tracks or file sizes under "
            f"{data_root} changed since (data fingerprint {was} then, {fingerprint} now); resume on the data "
            f"it was trained on, {FRESH_RUN_HINT}"
        )


def write_once(path: Path, obj: Any, resuming: bool) -> None:
    """Write ``obj`` as JSON, except when a resume finds the run's own file: that one is kept
    (a resumed run never rewrites its splits), and must say the same."""
    if resuming and path.is_file():
        if path.name == "splits.json" and json.loads(path.read_text()) != json.loads(json.dumps(obj)):
            raise UserError(
                f"this resume would split the data differently from the run's {path}: resume with the "
                f"settings the run was started with, {FRESH_RUN_HINT}"
            )
        return
    write_json(path, obj)


def resume_command(ckpt: Path | None) -> str:
    """The command that continues this run from ``ckpt`` (or starts it again when ``None``)."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # called as a function (tests, notebooks), not through Hydra
        overrides = []
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "ckpt_path"]
    if ckpt is not None:
        kept.append(f"ckpt_path={ckpt}")
    return " ".join(["python -m genre_cls.train", *(shlex.quote(o) for o in kept)])


def record_interruption(out: Path, stop: GracefulStop, epochs: int) -> RunInterrupted:
    """Write ``interrupted.json`` (the signal, the epochs completed, how to resume) and return
    the error that ends the command with 128 + the signal's number."""
    exc = stop.interrupted()
    last = out / "checkpoints" / "last.ckpt"
    ckpt = stop.saved or (last if last.is_file() else None)
    command = resume_command(Path(os.path.abspath(ckpt)) if ckpt is not None else None)
    name = signal.Signals(exc.signum).name
    write_json(out / "interrupted.json", {
        "signal": name,
        "epochs_completed": int(epochs),
        "checkpoint": str(ckpt) if ckpt is not None else None,
        "resume": command,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    how = "resume with" if ckpt is not None else "nothing was trained yet; start again with"
    return RunInterrupted(exc.signum, f"interrupted by {name} after {epochs} epochs (see {out / 'interrupted.json'}): {how}: {command}")


def use_precision(cfg: DictConfig) -> str:
    """Set ``cfg.trainer.precision`` to the precision this run trains in (``auto``: the best one
    the device runs, :func:`genre_cls.hardware.check_trainer`), say which and why in one log
    line, and return it."""
    _, precision, why = check_trainer(
        cfg.trainer.get("accelerator", "auto"), cfg.trainer.get("devices", 1), cfg.trainer.get("precision", "32-true")
    )
    with open_dict(cfg):
        cfg.trainer.precision = precision
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:  # once per run, not once per DDP rank
        log.info("precision %s (%s)", precision, why)
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if cfg.trainer.get("sync_batchnorm") and (accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())):
        # torch's SyncBatchNorm runs on GPUs only; on the CPU each rank keeps its own statistics.
        with open_dict(cfg):
            cfg.trainer.sync_batchnorm = False
        if int(os.environ.get("LOCAL_RANK", 0)) == 0:
            log.info("sync_batchnorm off: torch's SyncBatchNorm needs GPUs, and this run trains on the CPU")
    return precision


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit ``cfg.model`` on ``cfg.data``, test the best checkpoint, write and return the metrics.

    With ``test_at=[50, 100]`` the best checkpoint seen up to each of those epochs is tested
    too and written as ``metrics_epoch50.json`` etc. (``metrics.json`` is the whole run).

    SIGINT and SIGTERM save ``last.ckpt``, write ``interrupted.json`` and raise
    :class:`~genre_cls.errors.RunInterrupted`; a non-finite loss raises
    :class:`~genre_cls.errors.TrainingDiverged`.
    """
    validate(cfg)
    use_precision(cfg)
    out = Path(cfg.output_dir)
    stop = GracefulStop(out / "checkpoints" / "last.ckpt")
    stop.install()
    try:
        return _train(cfg, out, stop)
    except RunInterrupted:
        raise record_interruption(out, stop, stop.epoch) from None
    finally:
        stop.restore()


def _train(cfg: DictConfig, out: Path, stop: GracefulStop) -> dict[str, Any]:
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out.mkdir(parents=True, exist_ok=True)

    dm = hydra.utils.instantiate(cfg.data, input=ARCHITECTURES[cfg.model.arch][1], input_options=_plain(cfg.model.get("input")))
    dm.setup("fit")
    resuming = cfg.get("ckpt_path") is not None
    fingerprint = data_fingerprint(dm)
    if resuming:
        check_resume_data(cfg, fingerprint, dm.data_root)
    write_once(out / "splits.json", splits_record(dm, int(cfg.seed)), resuming)
    write_once(out / "data_summary.json", dm.summary(), resuming)

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
    callbacks += [RunIdentity({**run_identity(cfg), "data.fingerprint": fingerprint}), FiniteLoss(float(cfg.lr)), stop]
    test_at = [int(e) for e in (cfg.get("test_at") or []) if int(e) < int(cfg.epochs)]
    ckpt_dir = out / "checkpoints"
    snapshots = SnapshotBest(test_at, ckpt_dir)
    if test_at:
        callbacks.append(snapshots)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=_instantiate_all(cfg.get("logger")) or False
    )
    try:
        trainer.fit(system, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))
    except SystemExit:  # Lightning ends a fit on SIGTERM with SystemExit(None): status 0
        if stop.signum is None:
            raise
        raise stop.interrupted() from None
    epochs_trained, steps = int(trainer.current_epoch), int(trainer.global_step)
    best = best_checkpoint(trainer)
    best_val = best_score(trainer)
    if best_val is None and "val/acc" in trainer.callback_metrics:  # no checkpointing (fast_dev_run)
        best_val = float(trainer.callback_metrics["val/acc"])
    if trainer.world_size > 1:
        # DDP trains on every device; testing runs once, on one device of the main process,
        # so that every test sample is counted exactly once.
        # Every rank leaves the process group together (a rank that returned without it
        # could leave NCCL peers hanging); the test Trainer's barriers would otherwise wait
        # for ranks that have gone.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        if not trainer.is_global_zero:
            return {}
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
            dataset=dm.dataset,
            input=dm.input,
            confusion_matrix=results["test/confusion_matrix"],
            split=dm.effective_split,
            seed=int(cfg.seed),
            folds=dm.folds,
            fold=dm.fold if dm.folds is not None else None,
            precision=str(cfg.trainer.precision),
            **cgan_info,
        )
        results.setdefault("val/acc_best", best_val)
        results.setdefault("best_epoch", None)
        write_json(out / name, results)
        return results

    for epoch in test_at:
        snapshot = SnapshotBest.path_for(ckpt_dir, epoch)
        if snapshot.is_file():  # absent when early stopping ended the run first
            snap = _test(trainer, system, dm, str(snapshot), out / f"predictions_epoch{epoch}.csv")
            snap["val/acc_best"] = snapshots.scores.get(epoch)
            finish(snap, epoch, f"metrics_epoch{epoch}.json")

    metrics = finish(_test(trainer, system, dm, best, out / "predictions.csv"), int(cfg.epochs), "metrics.json")
    _log_results(trainer, cfg, metrics, out, steps)
    print(f"\n{cfg.model.name} ({optim_of(cfg)}, lr={cfg.lr}) test metrics, best of {metrics['epochs_trained']} epochs:")
    print(metrics_table(metrics))
    print(f"run directory: {out}")
    return metrics


def _fresh(out: Path) -> bool:
    """Whether ``out`` holds nothing but what Hydra writes before ``main`` starts."""
    try:
        entries = list(out.iterdir())
        hydra_files = {p.name for p in (out / ".hydra").iterdir()} if (out / ".hydra").is_dir() else set()
    except OSError:
        return False
    return all(p.name == ".hydra" or p.suffix == ".log" for p in entries) and hydra_files <= {
        "config.yaml", "hydra.yaml", "overrides.yaml"
    }


def record_failure(cfg: DictConfig, exc: BaseException) -> None:
    """After a failed run: remove its folder when nothing but Hydra's files are in it (a rejected
    config leaves no run behind), else write ``failed.json`` there. A resume's folder is the
    original run's: it is left as it is."""
    out = Path(cfg.output_dir)
    if cfg.get("ckpt_path") is not None or not out.is_dir():
        return
    if _fresh(out):
        shutil.rmtree(out, ignore_errors=True)
    else:
        write_json(out / "failed.json", {"error": f"{type(exc).__name__}: {exc}"})


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: returns ``cfg.optimized_metric`` for sweepers."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        if not multirun:
            with user_errors():
                try:
                    metrics = train(cfg)
                except UserError as exc:
                    record_failure(cfg, exc)
                    raise
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
    except RunInterrupted as exc:  # a signal stops a sweep too, not just its current run
        exit_with(exc, exc.status)


def cli() -> None:
    run_cli(main, check_train_args)
    failed = SweepSummary.failed
    if failed:
        exit_with(
            f"{len(failed)} run(s) of the sweep failed, the others finished; each failed run has failed.json "
            f"with the reason (e.g. {failed[0]}/failed.json); python -m genre_cls.report on the sweep lists them",
            status=1,
        )


if __name__ == "__main__":
    cli()
