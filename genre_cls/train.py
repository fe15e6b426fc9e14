"""Train, validate and test one model: ``python -m genre_cls.train model=net3 optim=adam lr=1e-4``.

``train(cfg)`` does the work and returns the metrics (tests call it with a composed config);
``main()`` is the thin Hydra entry point and returns the optimised metric to sweepers.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from genre_cls.callbacks import (
    FiniteLoss, GracefulStop, ResumeCleanup, RunIdentity, SnapshotBest, SweepSummary, best_checkpoint, best_score,
)
from genre_cls.checkpoints import (
    RESUMES_KEY,
    SETTINGS_KEY,
    check_resume_data,
    check_resume_fits,
    data_fingerprint,
    epochs_done,
    input_kind,
    load_checkpoint_state,
    resume_settings,
    run_identity,
    settings_changed,
    write_once,
)
from genre_cls.cmdline import check_train_args, hydra_error_line, renamed_keys
from genre_cls.conf import CONF_DIR, optim_name
from genre_cls.data.cache import atomic_write
from genre_cls.data.splits import track_of
from genre_cls.data.processes import available_memory
from genre_cls.errors import RunInterrupted, UserError, exit_with, one_line, run_cli, user_errors
from genre_cls.hardware import check_trainer
from genre_cls.metrics import METRIC_NAMES
from genre_cls.runfolder import (
    claim_run_dir, discard_resume_config, rank_zero, record_failure, release_run_dir, write_json,
)
from genre_cls.settings import check_metric_class, validate, validates
from genre_cls.systems import GenreClassifier
from genre_cls.systems.cgan_augment import cgan_memory

log = logging.getLogger(__name__)

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
    # A split without validation units (data.fractions with a validation share of 0) has no val loader.
    ".*Total length of `list` across ranks is zero.*",
):
    warnings.filterwarnings("ignore", message=_pattern)


def _instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a callbacks/logger group that has a ``_target_``."""
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def _plain(node) -> Any:
    """A config node as plain Python containers (checkpoints must not hold OmegaConf objects)."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def optim_of(cfg: DictConfig) -> str:
    """The run's optimiser by its short name (``adam``)."""
    return optim_name(cfg.optim._target_)


def validating(cfg: DictConfig, dm) -> bool:
    """Whether the run validates: its trainer settings let it (:func:`validates`) and its split
    has validation units (not with a validation share of 0 in ``data.fractions``)."""
    return validates(cfg) and dm.has_validation


def build_system(cfg: DictConfig, dm) -> GenreClassifier:
    """The LightningModule for ``cfg.model``, with plain (checkpoint-safe) hyperparameters: the
    classes and the input kind's parameters come from the data module. A run that does not
    validate (:func:`validating`) has no early stopping: there is no validation loss to watch."""
    model = _plain(cfg.model)
    if not validating(cfg, dm):
        model["early_stopping_patience"] = None
    return GenreClassifier.from_config(model, _plain(cfg.optim), dm.classes, dm.input_params())


def limits_said(cfg: DictConfig) -> dict[str, Any]:
    """The ``trainer.limit_*_batches`` a run uses (those not null and not 1.0), said once in the
    log: a run that trains, validates or tests on part of its data should not look like one that
    used all of it (``metrics.json`` records them as ``limits``)."""
    limits = {key: cfg.trainer.get(key) for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches")}
    limits = {k: v for k, v in limits.items() if v is not None and not (isinstance(v, float) and v == 1.0)}
    if not rank_zero():  # said once, by the first process of a multi-device run
        return limits
    if not validates(cfg):
        why = (f"trainer.limit_val_batches={cfg.trainer.limit_val_batches}" if "limit_val_batches" in limits
               else f"trainer.check_val_every_n_epoch={cfg.trainer.check_val_every_n_epoch} > epochs={cfg.epochs}")
        log.warning("%s: this run does not validate, so it has no early stopping and no best epoch: the last epoch's "
                    "weights are tested and kept as best.ckpt", why)
    parts = [f"{k}={v}" for k, v in limits.items() if not (k == "limit_val_batches" and not validates(cfg))]
    if parts:
        log.warning("trainer.%s: this run uses part of its data in each epoch (fractions of the batches, or that many "
                    "batches); metrics.json records it under limits", ", trainer.".join(parts))
    return limits


def keep_epoch(cfg: DictConfig, dm) -> str:
    """Which epoch the run keeps and tests (:data:`~genre_cls.systems.classifier.KEEP_EPOCHS`):
    ``model.keep_epoch`` (``best`` when a model's config does not say), and the last whenever
    the run has nothing to pick a best by (:func:`validating`)."""
    return str(cfg.model.get("keep_epoch") or "best") if validating(cfg, dm) else "last"


def use_keep_epoch(cfg: DictConfig, dm) -> str:
    """:func:`keep_epoch`, said in one log line (a run that does not validate says so in
    :func:`limits_said`). Where the last epoch is kept, the run drops the callbacks that pick a
    best checkpoint and saves the last epoch's weights as ``best.ckpt`` after training."""
    keep = keep_epoch(cfg, dm)
    if not dm.has_validation and rank_zero():
        stops = " and early stopping is off" if cfg.model.get("early_stopping_patience") is not None else ""
        log.info("no validation units (data.fractions=%s): the last epoch is kept%s",
                 [float(f) for f in dm.fractions], stops)
    elif keep == "last" and validates(cfg) and rank_zero():
        log.info("model.keep_epoch=last: the last epoch is kept (validation is still measured)")
    return keep


def check_memory(cfg: DictConfig, dm) -> None:
    """Refuse, before training, a model and batch that do not fit in this machine's free memory
    when training on the CPU (the kernel would kill the run without a word). The estimate, made
    on the meta device without allocating: the parameters with their gradients and Adam's two
    moments, and the activations of one training batch kept for the backward pass, once per
    process (``trainer.devices`` processes on the CPU); for Net6 also its CGAN, trained first on
    the training segments held in memory. A network it cannot trace is said in one line."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator not in ("cpu", "auto") or (accelerator == "auto" and torch.cuda.is_available()):
        return
    available = available_memory()
    if available is None:
        return
    sizes: list[int] = []

    def count(module, inputs, output) -> None:
        first = output[0] if isinstance(output, tuple) else output
        if torch.is_tensor(first):
            sizes.append(first.numel())

    try:
        train_set = dm.datasets["train"]
        sample = torch.as_tensor(train_set[0][0])  # what one training unit looks like, whatever the dataset
        batch = min(int(cfg.batch_size), len(train_set))
        with torch.device("meta"):
            system = build_system(cfg, dm)
            for module in system.modules():
                module.register_forward_hook(count)
            system(torch.empty((batch, *sample.shape), dtype=sample.dtype))
        cgan = cgan_memory(cfg.cgan, dm, sample) if cfg.model.get("augment") == "cgan" else None
    except Exception as exc:  # only an estimate: a network it cannot trace is not refused, but it says so
        log.warning("the memory check could not trace %s (%s: %s): this run is not checked against the %.1f GB of "
                    "free memory", cfg.model.name, type(exc).__name__, one_line(exc), available / 1e9)
        return
    devices = cfg.trainer.get("devices", 1)
    processes = int(devices) if isinstance(devices, int) and devices > 1 else 1
    params = sum(p.numel() for p in system.parameters())
    need = 4 * (4 * params + 2 * sum(sizes)) * processes
    each = f" in each of its {processes} processes" if processes > 1 else ""
    if need > available:
        sizes_hint = ", ".join(f"model.arch_kwargs.{k}" for k in (cfg.model.get("arch_kwargs") or {})) or "the network's size"
        raise UserError(
            f"this run needs about {need / 1e9:.1f} GB of memory to train ({params / 1e6:.1f} M parameters with their "
            f"gradients and optimiser state, and a batch of {batch}{each}) but {available / 1e9:.1f} GB are free: lower "
            f"batch_size, {'data.image_size, ' if input_kind(cfg) == 'image' else ''}or {sizes_hint}"
        )
    if cgan is not None and cgan[0] > available:
        cgan_need, cgan_params, samples = cgan
        domain = cfg.cgan.domain
        raise UserError(
            f"{cfg.model.name}'s CGAN needs about {cgan_need / 1e9:.1f} GB of memory to train ({cgan_params / 1e6:.1f} M "
            f"parameters with their gradients and optimiser state, and {samples} training samples held in memory) but "
            f"{available / 1e9:.1f} GB are free: lower cgan.{domain}.generator_hidden, cgan.{domain}.discriminator_hidden "
            f"or cgan.batch_size{', or use cgan.domain=features' if domain == 'waveform' else ''}"
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
            lg.experiment.add_figure("test/confusion_matrix", figure, global_step=step, close=False)
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
    claimed = rank_zero() and claim_run_dir(out)
    cleanup = ResumeCleanup(out, cfg.get("ckpt_path"))
    try:
        return _train(cfg, out, stop, cleanup)
    except RunInterrupted as exc:
        if cfg.get("ckpt_path") is not None and not cleanup.started:  # the resume had not begun: nothing to record
            discard_resume_config(cfg.ckpt_path)
            raise RunInterrupted(exc.signum, f"{exc}, before the resume began: the run is as it was; resume with: "
                                             f"{resume_command(Path(os.path.abspath(cfg.ckpt_path)))}") from None
        raise record_interruption(out, stop, stop.epoch) from None
    except Exception as exc:
        if (m := LIMIT_BELOW_ONE_BATCH.search(str(exc))) is not None:
            fraction, part, batches, least = m.groups()
            least = math.ceil(float(least.split("=")[1]) * 1e4) / 1e4
            exc = UserError(
                f"trainer.limit_{part}_batches={fraction} leaves no {part} batch ({fraction} of {batches} batches is less "
                f"than one): give a fraction of at least {least:g} (1.0: every batch) or a whole number of batches (e.g. 1)"
            )
        elif isinstance(exc, (MemoryError, RuntimeError)) and out_of_memory(exc):
            exc = UserError(
                f"not enough memory for this run ({one_line(exc)}): lower batch_size, data.eval_batch_size, "
                "data.image_size or the network's size (model.arch_kwargs), or use a device with more memory"
            )
        if cfg.get("ckpt_path") is not None and rank_zero():
            if cleanup.started:  # the resume had begun to change its run's folder (checkpoints, events): say so there
                write_json(out / "failed.json", {"error": f"{type(exc).__name__}: {exc}", "resumed_from": str(cfg.ckpt_path)})
            else:  # refused before it changed anything: the run's folder stays as it was
                discard_resume_config(cfg.ckpt_path)
        if isinstance(exc, UserError):
            raise exc from None
        raise
    finally:
        stop.restore()
        if claimed:
            release_run_dir(out)


#: Lightning's refusal of a ``limit_*_batches`` fraction that leaves less than one batch (known only
#: once the loaders exist): its fraction, part, number of batches and the smallest fraction that works.
LIMIT_BELOW_ONE_BATCH = re.compile(r"You requested to check (\S+) of the `(\w+)_dataloader` but \S+ \* (\d+) < 1\..*Try at "
                                   r"least `(limit_\w+=[\d.e-]+)`")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that an allocation failed (host or device memory)."""
    text = str(exc)
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text or "out of memory" in text


def _train(cfg: DictConfig, out: Path, stop: GracefulStop, cleanup: ResumeCleanup) -> dict[str, Any]:
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out.mkdir(parents=True, exist_ok=True)

    dm = hydra.utils.instantiate(cfg.data, input=input_kind(cfg), input_options=_plain(cfg.model.get("input")))
    dm.setup("fit")
    check_metric_class(cfg, dm.classes)  # what the index kept: a class whose every file was unusable is gone
    resuming = cfg.get("ckpt_path") is not None
    fingerprint = data_fingerprint(dm)
    settings, resumes = resume_settings(cfg), []
    if resuming:
        # Everything a resume needs is checked before it changes anything in the run's folder.
        check_resume_data(cfg, fingerprint, dm.data_root)
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            check_resume_fits(str(cfg.ckpt_path), build_system(cfg, dm))
        state = load_checkpoint_state(str(cfg.ckpt_path))
        resumes = [*(state.get(RESUMES_KEY) or []), {
            "from_epoch": epochs_done(state), "changed": settings_changed(state.get(SETTINGS_KEY), settings),
        }]
    write_once(out / "splits.json", splits_record(dm, int(dm.seed)), resuming)  # the seed that drew the split (data.seed)
    write_once(out / "data_summary.json", dm.summary(), resuming)
    check_memory(cfg, dm)

    cgan_info: dict[str, Any] = {}
    if cfg.model.get("augment") == "cgan":
        from genre_cls.systems.cgan_augment import augment_with_cgan

        trainer_kwargs = {k: _plain(cfg.trainer.get(k)) for k in ("accelerator", "devices", "precision", "fast_dev_run", "enable_progress_bar")}
        cgan_info = augment_with_cgan(_plain(cfg.cgan), dm, out, trainer_kwargs, seed=int(cfg.seed))
        # Net5's initial weights must not depend on whether the CGAN was trained or reused.
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)

    system = build_system(cfg, dm)
    limits = limits_said(cfg)
    keep = use_keep_epoch(cfg, dm)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    if keep == "last":  # no best checkpoint to pick by validation: the last epoch's is saved after training
        callbacks = [cb for cb in callbacks if not (isinstance(cb, ModelCheckpoint) and cb.monitor)]
    identity = RunIdentity({**run_identity(cfg), "data.fingerprint": fingerprint}, settings, resumes)
    callbacks += [identity, FiniteLoss(float(cfg.lr)), stop, cleanup]
    test_at = [int(e) for e in (cfg.get("test_at") or []) if int(e) < int(cfg.epochs)]
    ckpt_dir = out / "checkpoints"
    snapshots = SnapshotBest(test_at, ckpt_dir, last_is_best=keep == "last")
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
    if keep == "last" and not cfg.trainer.get("fast_dev_run"):
        best = str(ckpt_dir / "best.ckpt")
        trainer.save_checkpoint(best, weights_only=True)  # the last epoch's weights are the run's best
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
            kept=keep,
            **cgan_info,
        )
        results.setdefault("val/acc_best", best_val)
        results.setdefault("best_epoch", None)
        if keep == "last":  # the weights tested are those of the last epoch
            results["best_epoch"] = min(epochs, epochs_trained)
        if limits:
            results["limits"] = limits
        if dm.untrained:  # classes the model never saw in training: their test tracks are scored all the same
            results["classes_not_trained"] = list(dm.untrained)
        if resumes:  # where the run was resumed, and the settings each resume changed
            results["resumes"] = resumes
        results["kept_epoch"] = results["best_epoch"]
        write_json(out / name, results)
        return results

    for epoch in test_at:
        snapshot = SnapshotBest.path_for(ckpt_dir, epoch)
        if not snapshot.is_file():  # early stopping ended the run first
            log.warning("test_at epoch %d was not reached (training ended after %d epochs): no metrics_epoch%d.json",
                        epoch, epochs_trained, epoch)
            continue
        snap = _test(trainer, system, dm, str(snapshot), out / f"predictions_epoch{epoch}.csv")
        snap["val/acc_best"] = snapshots.scores.get(epoch)
        finish(snap, epoch, f"metrics_epoch{epoch}.json")

    metrics = finish(_test(trainer, system, dm, best, out / "predictions.csv"), int(cfg.epochs), "metrics.json")
    failed = out / "failed.json"
    if resuming and failed.is_file():  # an earlier attempt's failure: kept, but no longer the run's state
        failed.rename(out / f"failed-before-resume-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json")
    _log_results(trainer, cfg, metrics, out, steps)
    which = (f"the best epoch ({metrics['kept_epoch']}) by validation accuracy" if keep == "best"
             else f"the last epoch ({metrics['kept_epoch']})")
    print(f"\n{cfg.model.name} ({optim_of(cfg)}, lr={cfg.lr}) test metrics of {which}, of {metrics['epochs_trained']} epochs trained:")
    print(metrics_table(metrics))
    print(f"run directory: {out}")
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: returns ``cfg.optimized_metric`` for sweepers."""
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        if not multirun:
            with user_errors():
                try:
                    metrics = train(cfg)
                except Exception as exc:  # a UserError is the one line the user sees; anything else a traceback
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
            if cfg.get("ckpt_path") is None:  # a resume's failure is recorded by train(), once it began
                write_json(Path(cfg.output_dir) / "failed.json", {"error": f"{type(exc).__name__}: {exc}"})
            return None  # Optuna records a failed trial (a nan return aborts its whole study)
        return metrics.get(cfg.get("optimized_metric", "test/acc"))
    except RunInterrupted as exc:  # a signal stops a sweep too, not just its current run
        exit_with(sweep_interruption(exc) if multirun else exc, exc.status)


def sweep_interruption(exc: RunInterrupted) -> str:
    """What a signal in a sweep's run stopped: that run (``exc`` says how to resume it) and the
    sweep's runs that had not started, by the values that set them apart (a sweep is the product of
    its axes, in the order Hydra's basic launcher runs it; a parallel launcher's runs after this one
    may have started too, and the report says which finished)."""
    from genre_cls.sweeps import grid_points, overrides_of

    hydra_cfg = HydraConfig.get()
    task = [a for a in overrides_of(sys.argv[1:]) if not a.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))]
    try:
        points = grid_points(hydra_cfg.sweeper.get("params"), task)
    except UserError:  # the command line was checked before the sweep started: not expected
        return str(exc)
    number, total = int(hydra_cfg.job.num), len(points)
    rest = points[number + 1 :]
    if not rest:
        return f"{exc} (the last of the sweep's {total} runs)"
    varied = [i for i in range(len(points[0])) if len({point[i] for point in points}) > 1]
    shown = "; ".join(" ".join(point[i] for i in varied) or "(the same overrides)" for point in rest[:5])
    shown += f"; and {len(rest) - 5} more" if len(rest) > 5 else ""
    sequential = str(hydra_cfg.launcher.get("_target_", "")).endswith("BasicLauncher")
    state = "never started" if sequential else "may not have started or finished (a parallel launcher)"
    return (f"{exc}; this was run {number + 1} of the sweep's {total}, and {len(rest)} run(s) after it {state}: {shown} "
            f"(python -m genre_cls.report {Path(str(hydra_cfg.sweep.dir))} lists what finished)")


def cli() -> None:
    # Hydra's parser takes -m only before the overrides; "train lr=1e-3 -m seed=1,2" would
    # otherwise end in its usage block.
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    sys.argv[1:] = renamed_keys(flags + [a for a in sys.argv[1:] if a not in ("-m", "--multirun")])
    # A search whose every trial failed ends inside the Optuna sweeper ("No trials are completed
    # yet"); Hydra would print that as a traceback: let it reach this function instead.
    # (Hydra's own errors then reach it too: they become one line below.)
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        run_cli(main, check_train_args)
    except HydraException as exc:  # what Hydra checks itself (hydra/... groups and hydra.* keys)
        exit_with(hydra_error_line(exc))
    except ValueError as exc:
        if "No trials are completed" not in str(exc):
            raise
        failed = SweepSummary.new_failures()
        where = f" (e.g. {failed[0]}/failed.json)" if failed else ""
        exit_with(f"every trial of the search failed, so there is no best one: each trial has failed.json with the "
                  f"reason{where}; python -m genre_cls.report on the sweep lists them", status=1)
    failed = SweepSummary.failed
    if failed:
        exit_with(
            f"{len(failed)} run(s) of the sweep failed, the others finished; each failed run has failed.json "
            f"with the reason (e.g. {failed[0]}/failed.json); python -m genre_cls.report on the sweep lists them",
            status=1,
        )


if __name__ == "__main__":
    # Run the module's own copy: Hydra's launchers (submitit, joblib) pickle the task function, and
    # genre_cls.train.main pickles by reference, where this __main__'s would go by value with every
    # global it names (torch among them, and torch.classes with it, which cannot be pickled).
    from genre_cls.train import cli as _cli

    _cli()
