"""The training command's settings: the schema of ``conf/train.yaml``'s own keys
(:class:`TrainSettings`), which holds each config group's schema (declared beside what the group
configures), and :func:`validate`, which checks a composed config against them and then what only
the whole config can say (an optimiser a model forbids, a data root that is not there, an epoch
count a resume cannot honour) before any work starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from genre_cls.callbacks import CallbacksSettings
from genre_cls.checkpoints import check_resume_checkpoint, check_resume_epochs, input_kind, override_text, run_identity
from genre_cls.conf import optim_name, optimisers
from genre_cls.data.datamodule import DataSettings
from genre_cls.data.datasets import datasets
from genre_cls.data.synth import GENERATING
from genre_cls.errors import UserError
from genre_cls.hardware import TrainerSettings, check_trainer
from genre_cls.schema import check, setting
from genre_cls.systems.cgan import CganSettings
from genre_cls.systems.classifier import ModelSettings, OptimSettings, model_schemas

SEED = {"ge": 0, "le": 2**32 - 1}


@dataclass
class TrainSettings:
    """``conf/train.yaml``: the run's own keys and its config groups."""

    __extra__ = "ignore"
    lr: float = setting(1e-4, gt=0.0, hint=" (the paper's values: 0.01, 0.001, 0.0005, 0.0001)")
    epochs: int = setting(50, ge=1)
    seed: int = setting(0, **SEED, hint=" (any whole number from 0 to 4294967295, e.g. seed=1)")
    batch_size: int = setting(32, ge=1)
    ckpt_path: Optional[str] = setting(None, hint=": a run's checkpoints/last.ckpt")
    test_at: Optional[list[int]] = setting(None, item={"ge": 1}, hint=", e.g. test_at=[50,100]")
    optimized_metric: str = setting("val/acc_best", hint=", e.g. val/acc_best")
    data: DataSettings = field(default_factory=DataSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    callbacks: Optional[CallbacksSettings] = setting(None)
    cgan: Optional[CganSettings] = setting(None)


def _dataset_options(cfg: DictConfig) -> dict[str, type]:
    """The schema of ``data.dataset_options`` for the configured data set."""
    spec = datasets().get(str(cfg.data.get("dataset", "gtzan")))
    return {"data.dataset_options": spec.options} if spec is not None and spec.options is not None else {}


def validate(cfg: DictConfig) -> None:
    """Check a composed training config; raise :class:`UserError` on the first problem."""
    check(TrainSettings, cfg, dynamic={**model_schemas(cfg.model), **_dataset_options(cfg)})
    target = str(cfg.optim.get("_target_", ""))
    targets = optimisers()
    if target not in targets.values():
        choices = " or ".join(f"optim={name}" for name in targets)
        raise UserError(f"unknown optimiser {target!r}: choose {choices}")
    required = cfg.model.get("optim")
    if required is not None and optim_name(target) != required:
        name = cfg.model.get("name")
        raise UserError(
            f"{name} is {cfg.model.arch} trained with {targets.get(required, required).rsplit('.', 1)[-1]}: "
            f"use model={name} without optim=, "
            f"or model={cfg.model.arch} optim={optim_name(target)}"
        )
    # Against this machine: accelerators, device counts and precisions it has.
    check_trainer(cfg.trainer.get("accelerator", "auto"), cfg.trainer.get("devices", 1), cfg.trainer.get("precision", "32-true"))
    if cfg.model.get("augment") == "cgan" and cfg.get("cgan") is None:
        raise UserError(f"model {cfg.model.get('name')} augments with the CGAN but the config has no cgan group: add cgan=default")
    check_data_root(cfg)
    check_requests(cfg)
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None:
        check_resume_checkpoint(str(ckpt), cfg.model.get("name"), run_identity(cfg))
        check_resume_epochs(cfg)


def check_data_root(cfg: DictConfig) -> None:
    """``data.root`` must be what the data set reads (a folder, or a manifest file; null: the
    synthetic set, GTZAN only), and no synthetic set still being written."""
    root = cfg.data.get("root")
    name = str(cfg.data.get("dataset", "gtzan"))
    spec = datasets().get(name) or datasets()["gtzan"]
    holds = spec.holds if spec.root_is_file else f"the folder that holds {spec.holds}"
    if root is None and not spec.synthetic_default:
        raise UserError(f"data={name} needs data.root: {holds}")
    if root is None:
        return
    path = Path(os.path.expanduser(str(root)))
    if path.exists() and path.is_dir() == spec.root_is_file:
        what = "a folder, not a file" if spec.root_is_file else "a file, not a folder"
        raise UserError(f"data.root {str(root)!r} is {what}: point it at {holds}")
    if not path.exists():
        raise UserError(
            f"data.root {str(root)!r} does not exist: point it at {holds}"
            + (" or use data.root=null for the synthetic set" if spec.synthetic_default else "")
        )
    if (path / GENERATING).exists():
        raise UserError(
            f"data.root {str(root)!r} is a synthetic set still being generated, or whose generation was stopped "
            f"({GENERATING} is there): wait for python -m genre_cls.data.synth to finish, or run it again"
        )


def _voted(cfg: DictConfig) -> bool:
    """Whether the configured model's tracks are voted over units (metrics under test_track/ too)."""
    from genre_cls.data.kinds import KINDS

    kind = KINDS.get(input_kind(cfg) or "")
    return bool(kind and kind.voted)


def _per_class_metric(cfg: DictConfig, metric: str) -> bool:
    """``test/f1/<class>`` and its kin for a data set whose classes are known only once indexed."""
    parts = metric.split("/")
    prefixes = ("test", "test_track") if _voted(cfg) else ("test",)
    return (str(cfg.data.get("dataset", "gtzan")) != "gtzan" and len(parts) == 3 and parts[0] in prefixes
            and parts[1] in ("precision", "recall", "f1") and parts[2] != "")


def metric_class(cfg: DictConfig) -> str | None:
    """The class ``optimized_metric`` names (``test_track/f1/Rock`` -> ``Rock``), for data sets whose
    classes are known only once indexed; ``None`` for any other metric."""
    metric = str(cfg.get("optimized_metric"))
    return metric.split("/", 2)[2] if _per_class_metric(cfg, metric) else None


def check_metric_class(cfg: DictConfig, classes: list[str] | None = None) -> None:
    """``optimized_metric`` must name a class the data has (else every trial of a search would train
    and then have no number to return): checked against ``classes``, or before any work against
    the labels the data set's index lists without opening its audio files."""
    wanted = metric_class(cfg)
    if wanted is None:
        return
    if classes is None:
        classes = dataset_labels(cfg)
        if classes is None:
            return  # the data cannot be read here: the run's own indexing says why
    if wanted not in classes:
        shown = ", ".join(map(repr, classes[:20])) + (f" and {len(classes) - 20} more" if len(classes) > 20 else "")
        raise UserError(
            f"optimized_metric {cfg.optimized_metric!r} names the class {wanted!r}, which data={cfg.data.dataset} under "
            f"{cfg.data.root} does not have: its classes are {shown}"
        )


def dataset_labels(cfg: DictConfig) -> list[str] | None:
    """The classes of the configured data set as its index lists them without opening the audio
    files (label folders, FMA's top genres, a manifest's labels); ``None`` when it cannot be read."""
    import json
    import logging

    options = {k: v for k, v in dict(cfg.data.get("dataset_options") or {}).items() if v is not None}
    key = (str(cfg.data.dataset), os.path.realpath(os.path.expanduser(str(cfg.data.root))), json.dumps(options, sort_keys=True))
    logging.disable(logging.WARNING)  # the run's own indexing gives its warnings once
    try:
        return list(_labels(*key))
    except (UserError, OSError):
        return None
    finally:
        logging.disable(logging.NOTSET)


@lru_cache(maxsize=16)
def _labels(dataset: str, root: str, options: str) -> tuple[str, ...]:
    """The classes a data set's index finds under ``root`` without checking its files (every point of
    a sweep on one data set asks once)."""
    import json

    from genre_cls.data.datasets import index_dataset

    return tuple(index_dataset(dataset, root, check_files=False, **json.loads(options)).classes)


def optimizable_metrics(cfg: DictConfig) -> list[str]:
    """The numbers a run's ``metrics.json`` holds, which ``optimized_metric`` may name: the best
    validation accuracy and the test metrics (per track too for segment models)."""
    from genre_cls import GENRES
    from genre_cls.metrics import METRIC_NAMES

    prefixes = ["test", "test_track"] if _voted(cfg) else ["test"]
    names = ["val/acc_best"]
    for prefix in prefixes:
        names += [f"{prefix}/{m}" for m in METRIC_NAMES]
        names += [f"{prefix}/{m}/{g}" for m in ("precision", "recall", "f1") for g in GENRES]
    return names


def validates(cfg: DictConfig) -> bool:
    """Whether the run validates at all: not with ``trainer.limit_val_batches=0``, nor when
    ``trainer.check_val_every_n_epoch`` is more than ``epochs``. Without validation there is no
    early stopping and no best epoch: the last epoch is tested and kept as ``best.ckpt``
    (README, "Configuration"). A limit of 0 training or test batches is refused
    (:func:`check_requests`)."""
    limit = cfg.trainer.get("limit_val_batches")
    every = cfg.trainer.get("check_val_every_n_epoch")
    return not ((limit is not None and float(limit) == 0) or (every is not None and int(every) > int(cfg.epochs)))


def check_requests(cfg: DictConfig) -> None:
    """Settings that are valid alone but that this run could not honour: an ``optimized_metric``
    the run does not produce (every trial of a search would fail), a ``test_at`` epoch after the
    last one, a ``trainer.max_epochs`` other than ``epochs``."""
    from genre_cls.metrics import METRIC_NAMES

    metric = cfg.get("optimized_metric")
    if metric is not None and metric not in optimizable_metrics(cfg) and not _per_class_metric(cfg, str(metric)):
        per_track = " and the same under test_track/" if _voted(cfg) else ""
        raise UserError(
            f"unknown optimized_metric {metric!r}: a run's metrics.json holds val/acc_best (the default), "
            f"test/<{'|'.join(METRIC_NAMES)}> and test/<precision|recall|f1>/<genre>{per_track}"
        )
    check_metric_class(cfg)
    epochs = cfg.get("epochs")
    trainer = cfg.get("trainer") or {}
    for part, why in (("train", "the network would never train"), ("test", "the run would have no test metrics")):
        limit = trainer.get(f"limit_{part}_batches")
        if limit is not None and not isinstance(limit, bool) and float(limit) == 0:
            raise UserError(
                f"trainer.limit_{part}_batches={limit}: {why}; give a fraction of the batches above 0 (e.g. 0.5), a "
                f"number of batches (e.g. 2), or leave it out (trainer.limit_val_batches=0 runs without validation)"
            )
    if trainer.get("max_epochs", epochs) != epochs:
        raise UserError(
            f"trainer.max_epochs={trainer.get('max_epochs')} differs from epochs={epochs}, which metrics.json and the "
            f"report record: set epochs={trainer.get('max_epochs')} instead (trainer.max_epochs follows it)"
        )
    if (trainer.get("min_epochs") or 0) > epochs:
        raise UserError(f"trainer.min_epochs={trainer.get('min_epochs')} is more than epochs={epochs}: "
                        f"use trainer.min_epochs up to {epochs}, or more epochs")
    late = sorted(int(e) for e in cfg.get("test_at") or [] if int(e) > int(epochs))
    if late:
        raise UserError(
            f"test_at={override_text(late)} is after the last epoch (epochs={epochs}): "
            f"use test_at epochs up to {epochs}, or more epochs"
        )
