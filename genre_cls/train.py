"""Train, validate and test one model: ``python -m genre_cls.train model=net3 optim=adam lr=1e-4``.

``train(cfg)`` does the work and returns the metrics (tests call it with a composed config);
``main()`` is the thin Hydra entry point and returns the optimised metric to sweepers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf, open_dict

from genre_cls.callbacks import SweepSummary, FiniteLoss, GracefulStop, RunIdentity, SnapshotBest, best_checkpoint, best_score
from genre_cls.config import (
    FRESH_RUN_HINT,
    RUN_KEY,
    RUNNING,
    check_not_a_run,
    check_not_in_use,
    check_train_args,
    checkpoint_run_dir,
    load_checkpoint_state,
    optim_name,
    rank_zero,
    run_identity,
    validate,
)
from genre_cls.data.cache import atomic_write
from genre_cls.data.workers import available_memory
from genre_cls.data.splits import track_of
from genre_cls.errors import RunInterrupted, UserError, exit_with, one_line, run_cli, user_errors
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
    run = checkpoint_run_dir(ckpt_path)
    return str(run) if run is not None else default


def run_dir(ckpt_path: str | None, default: str) -> str:
    """``hydra.run.dir``: the resumed run's folder (:func:`resume_dir`), else a fresh folder named
    like ``default`` (:func:`fresh_dir`)."""
    run = checkpoint_run_dir(ckpt_path)
    return str(run) if run is not None else fresh_dir(default)


def fresh_dir(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``... when it is taken: a folder no other run uses, claimed
    by creating it (an atomic step), so that two runs started in the same second never share
    one. The same ``path`` gives the same folder for the rest of the process."""
    if path not in _FRESH_DIRS:
        candidate, n = Path(path), 1
        while True:
            try:
                candidate.mkdir(parents=True)
                break
            except FileExistsError:
                n += 1
                candidate = Path(f"{path}-{n}")
        _FRESH_DIRS[path] = str(candidate)
    return _FRESH_DIRS[path]


def resume_subdir(ckpt_path: str | None) -> str:
    """Where Hydra saves this run's config (``hydra.output_subdir``): ``.hydra``, except when a
    resume writes into a run folder that already has one; the original ``.hydra/config.yaml``
    then stays as it is and the resume's own config goes to ``.hydra/resume-<date>_<time>/``.

    Hydra asks for it after it made the run folder and before it writes there: a single run
    whose folder (given as an interpolation that ``check_train_args`` could not resolve) holds
    another run's results, or that another process has just claimed, ends here with one line,
    before anything is written; otherwise this process claims the folder (:func:`claim_run_dir`)."""
    out = _output_dir()
    if out is not None and out not in _CHECKED_DIRS and rank_zero():
        try:
            check_not_a_run(Path(out), "hydra.run.dir", checkpoint_run_dir(ckpt_path))
            claim_run_dir(Path(out))  # two runs given the same folder at once: one of them gets it
        except UserError as exc:
            exit_with(exc)
        _CHECKED_DIRS.add(out)
    run = resume_dir(ckpt_path, "")
    if run and (Path(run) / ".hydra" / "config.yaml").is_file():
        # One name per run dir and process, however often Hydra resolves this.
        return _RESUME_SUBDIRS.setdefault(run, f".hydra/resume-{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    return ".hydra"


def _output_dir() -> str | None:
    """The folder of a single run that Hydra is starting (None in a sweep or outside Hydra)."""
    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return None
    return str(hydra_cfg.runtime.output_dir) if hydra_cfg.mode == RunMode.RUN else None


# Plain dicts, not functools.lru_cache: launchers (joblib, submitit) pickle the resolvers.
_RESUME_SUBDIRS: dict[str, str] = {}
_FRESH_DIRS: dict[str, str] = {}
_CHECKED_DIRS: set[str] = set()


OmegaConf.register_new_resolver("resume_dir", resume_dir, replace=True)
OmegaConf.register_new_resolver("run_dir", run_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("fresh_dir", fresh_dir, use_cache=True, replace=True)
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
    # A split without validation units (data.fractions with a validation share of 0) has no val loader.
    ".*Total length of `list` across ranks is zero.*",
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
    classes and the input kind's parameters come from the data module. Without validation
    units there is nothing to stop early on: early stopping is off."""
    return GenreClassifier(
        arch=cfg.model.arch,
        arch_kwargs=_plain(cfg.model.get("arch_kwargs")),
        optim=_plain(cfg.optim),
        classes=dm.classes,
        model_name=cfg.model.name,
        early_stopping_patience=cfg.model.get("early_stopping_patience") if dm.has_validation else None,
        input_params=dm.input_params(),
        train_augment=_plain(cfg.model.get("train_augment")),
        schedule=_plain(cfg.model.get("schedule")),
        label_smoothing=float(cfg.model.get("label_smoothing") or 0.0),
    )


def keep_epoch(cfg: DictConfig, dm) -> str:
    """Which epoch the run keeps and tests (:data:`~genre_cls.config.KEEP_EPOCHS`):
    ``model.keep_epoch`` (``best`` when a model's config does not say), and the last whenever
    the split has no validation units (``data.fractions`` with a validation share of 0)."""
    return str(cfg.model.get("keep_epoch") or "best") if dm.has_validation else "last"


def use_keep_epoch(cfg: DictConfig, dm) -> str:
    """Set up ``cfg`` to keep :func:`keep_epoch`'s epoch: where the last is kept, the checkpoint
    callback that writes ``best.ckpt`` monitors nothing and so holds the latest epoch. Says what
    is kept in one log line and returns it (``best`` or ``last``)."""
    keep = keep_epoch(cfg, dm)
    writer = (cfg.get("callbacks") or {}).get("model_checkpoint")
    if keep == "last" and writer is not None:
        with open_dict(cfg):
            writer.monitor = None
    if not dm.has_validation:
        stops = " and early stopping is off" if cfg.model.get("early_stopping_patience") is not None else ""
        log.info("no validation units (data.fractions=%s): the last epoch is kept%s",
                 [float(f) for f in dm.fractions], stops)
    elif keep == "last":
        log.info("model.keep_epoch=last: the last epoch is kept (validation is still measured)")
    return keep


def check_memory(cfg: DictConfig, dm) -> None:
    """Refuse, before training, a model and batch that do not fit in this machine's free memory
    when training on the CPU (the kernel would kill the run without a word). The estimate, made
    on the meta device without allocating: the parameters with their gradients and Adam's two
    moments, and the activations of one training batch kept for the backward pass."""
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
    except Exception:  # only an estimate: a network or dataset it cannot trace is not refused
        return
    params = sum(p.numel() for p in system.parameters())
    need = 4 * (4 * params + 2 * sum(sizes))
    if need > available:
        raise UserError(
            f"this run needs about {need / 1e9:.1f} GB of memory to train ({params / 1e6:.1f} M parameters with their "
            f"gradients and optimiser state, and a batch of {batch}) but {available / 1e9:.1f} GB are free: lower "
            "model.arch_kwargs.hidden, data.image_size or batch_size"
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
    claimed = rank_zero() and claim_run_dir(out)
    try:
        return _train(cfg, out, stop)
    except RunInterrupted:
        raise record_interruption(out, stop, stop.epoch) from None
    except (MemoryError, RuntimeError) as exc:
        if not out_of_memory(exc):
            raise
        raise UserError(
            f"not enough memory for this run ({one_line(exc)}): lower batch_size, data.eval_batch_size, "
            "data.image_size or model.arch_kwargs.hidden, or use a device with more memory"
        ) from None
    finally:
        stop.restore()
        if claimed:
            release_run_dir(out)


def claim_run_dir(out: Path) -> bool:
    """Mark ``out`` as written by this process (:data:`~genre_cls.config.RUNNING`: its pid and
    host) for as long as it runs, so that another run or resume started meanwhile in the same
    folder is refused (a :class:`UserError` here). The mark is made with an exclusive create:
    of two processes that claim one folder at the same moment, one gets it. Returns True."""
    import socket

    out.mkdir(parents=True, exist_ok=True)
    mark = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
    while True:
        try:
            fd = os.open(out / RUNNING, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            check_not_in_use(out)  # another live process holds it: refused
            if _holds(out):
                return True
            (out / RUNNING).unlink(missing_ok=True)  # left by a process that is gone
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(mark)
        return True


def _holds(out: Path) -> bool:
    """Whether this process's mark is the one in ``out``."""
    try:
        return json.loads((out / RUNNING).read_text()).get("pid") == os.getpid()
    except (OSError, ValueError, AttributeError):
        return False


def release_run_dir(out: Path) -> None:
    """Remove this process's mark from ``out`` (another process's is left alone)."""
    if _holds(out):
        (out / RUNNING).unlink(missing_ok=True)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says that an allocation failed (host or device memory)."""
    text = str(exc)
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text or "out of memory" in text


def _train(cfg: DictConfig, out: Path, stop: GracefulStop) -> dict[str, Any]:
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out.mkdir(parents=True, exist_ok=True)

    dm = hydra.utils.instantiate(cfg.data, input=ARCHITECTURES[cfg.model.arch][1], input_options=_plain(cfg.model.get("input")))
    dm.setup("fit")
    resuming = cfg.get("ckpt_path") is not None
    fingerprint = data_fingerprint(dm)
    if resuming:
        check_resume_data(cfg, fingerprint, dm.data_root)
    write_once(out / "splits.json", splits_record(dm, int(dm.seed)), resuming)  # the seed that drew the split (data.seed)
    write_once(out / "data_summary.json", dm.summary(), resuming)
    check_memory(cfg, dm)

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
    keep = use_keep_epoch(cfg, dm)
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
            kept=keep,
            **cgan_info,
        )
        results.setdefault("val/acc_best", best_val)
        results.setdefault("best_epoch", None)
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
    release_run_dir(out)
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
            write_json(Path(cfg.output_dir) / "failed.json", {"error": f"{type(exc).__name__}: {exc}"})
            return None  # Optuna records a failed trial (a nan return aborts its whole study)
        return metrics.get(cfg.get("optimized_metric", "test/acc"))
    except RunInterrupted as exc:  # a signal stops a sweep too, not just its current run
        exit_with(exc, exc.status)


def hydra_error_line(exc: BaseException) -> str:
    """Hydra's report of a composition error as one line: ``Could not find 'hydra/launcher/x';
    available options in 'hydra/launcher': basic, joblib``, or the override and its cause."""
    paragraphs = [[line.strip() for line in block.splitlines() if line.strip()] for block in str(exc).split("\n\n")]
    paragraphs = [block for block in paragraphs if block]
    text = paragraphs[0][0] if paragraphs else type(exc).__name__
    if len(paragraphs) > 1 and paragraphs[1][0].endswith(":"):  # "Available options in 'hydra/launcher':"
        head, *items = paragraphs[1]
        items = list(itertools.takewhile(lambda item: not item.endswith(":"), items))  # up to "Config search path:"
        text += f"; {head[0].lower()}{head[1:]} {', '.join(items)}"
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        text += f": {str(cause).strip().splitlines()[0]}"
    return text


def cli() -> None:
    # Hydra's parser takes -m only before the overrides; "train lr=1e-3 -m seed=1,2" would
    # otherwise end in its usage block.
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    sys.argv[1:] = flags + [a for a in sys.argv[1:] if a not in ("-m", "--multirun")]
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
    cli()
