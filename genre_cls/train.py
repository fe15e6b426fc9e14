"""Train, validate and test one model: ``python -m genre_cls.train model=net3 optim=adam lr=1e-4``.

``train(cfg)`` does the work and returns the metrics (tests call it with a composed config);
``main()`` is the thin Hydra entry point and returns the optimised metric to sweepers.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from genre_cls.config import UserError, check_overrides, validate
from genre_cls.data.index import DataRootError
from genre_cls.data.splits import SplitError
from genre_cls.metrics import METRIC_NAMES
from genre_cls.systems import GenreClassifier

log = logging.getLogger(__name__)

# Errors a user causes (and can fix); reported as one line without a traceback.
USER_ERRORS = (UserError, DataRootError, SplitError)


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a callbacks/logger group that has a ``_target_``."""
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def optim_name(cfg: DictConfig) -> str:
    return str(cfg.optim._target_).rsplit(".", 1)[-1].lower()


def build_system(cfg: DictConfig, dm) -> GenreClassifier:
    """The LightningModule for ``cfg.model``, with plain (checkpoint-safe) hyperparameters."""
    from genre_cls.data.features import FeatureParams

    system = GenreClassifier(
        arch=cfg.model.arch,
        arch_kwargs=OmegaConf.to_container(cfg.model.get("arch_kwargs") or {}, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        classes=dm.classes,
        model_name=cfg.model.name,
        early_stopping_patience=cfg.model.get("early_stopping_patience"),
        image_size=dm.image_size,
        feature_params=FeatureParams().as_dict() if dm.input == "features" else None,
    )
    if dm.input == "features":
        system.set_feature_stats(dm.feature_mean, dm.feature_std)
    return system


def hparams_of(cfg: DictConfig) -> dict[str, Any]:
    """The hyperparameters shown in TensorBoard's HPARAMS tab."""
    return {
        "model": cfg.model.name,
        "optim": optim_name(cfg),
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

    title = f"{cfg.model.name} {optim_name(cfg)} lr={cfg.lr}: test acc {metrics['test/acc']:.3f}"
    scalars = {k: v for k, v in metrics.items() if k.count("/") == 1 and isinstance(v, float)}
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.log_hyperparams(hparams_of(cfg), {"hp_metric": metrics["test/acc"], **scalars})
            lg.experiment.add_figure("test/confusion_matrix", confusion_figure(metrics["confusion_matrix"], metrics["classes"], title))
            lg.experiment.flush()
    save_figure(confusion_figure(metrics["confusion_matrix"], metrics["classes"], title), out / "confusion_matrix.png")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit ``cfg.model`` on ``cfg.data``, test the best checkpoint, write and return the metrics."""
    validate(cfg)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    write_json(out / "splits.json", {"split": dm.effective_split, "seed": int(cfg.seed), **dm.splits})
    write_json(out / "data_summary.json", dm.summary())

    system = build_system(cfg, dm)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=_instantiate_all(cfg.get("callbacks")), logger=_instantiate_all(cfg.get("logger")) or False
    )
    trainer.fit(system, datamodule=dm, ckpt_path=cfg.get("ckpt_path"))

    ckpt_cb = trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None
    best = ckpt_cb.best_model_path if ckpt_cb is not None and ckpt_cb.best_model_path else None
    trainer.test(system, datamodule=dm, ckpt_path=best, verbose=False)

    metrics: dict[str, Any] = dict(system.test_results)
    metrics.update(
        model=str(cfg.model.name),
        optim=optim_name(cfg),
        lr=float(cfg.lr),
        epochs=int(cfg.epochs),
        epochs_trained=int(trainer.current_epoch),
        best_epoch=int(torch.load(best, map_location="cpu", weights_only=True)["epoch"]) + 1 if best else None,
        classes=list(dm.classes),
        confusion_matrix=metrics["test/confusion_matrix"],
        split=dm.effective_split,
        seed=int(cfg.seed),
    )
    write_json(out / "metrics.json", metrics)
    _log_results(trainer, cfg, metrics, out)
    print(f"\n{cfg.model.name} ({optim_name(cfg)}, lr={cfg.lr}) test metrics, best of {metrics['epochs_trained']} epochs:")
    print(metrics_table(metrics))
    print(f"run directory: {out}")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point: returns ``cfg.optimized_metric`` for sweepers."""
    try:
        metrics = train(cfg)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    return metrics.get(cfg.get("optimized_metric", "test/acc"))


def cli() -> None:
    """Check group overrides first (one clear line instead of Hydra's report), then run Hydra."""
    try:
        check_overrides(sys.argv[1:])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
