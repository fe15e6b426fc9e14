"""A checkpoint scored on a labelled collection: ``python -m genre_cls.evaluate ckpt=<run> data=folders
data.root=<tree> ['map={Hip-Hop: hiphop}'] [part=all|train|val|test]``.

The collection is read as training reads it (any data set: ``data=gtzan``, ``folders``, ``fma``,
``csv``; its clip settings; the model's input kind builds the tensors, cached), its labels mapped
to the checkpoint's classes (:meth:`genre_cls.data.GenreDataModule.setup_evaluation`), and the
checkpoint tested on all of it or on one part of its split, by the same test step as a training
run's test. The evaluation gets its own run folder (``outputs/evaluations/<day>/<time>_<data set>``)
with what a training run's test writes: ``metrics.json`` (the same keys, with the bootstrap
intervals, plus ``trained_on`` and ``evaluation``: the checkpoint, the part, the map and the
tracks left out), ``predictions.csv``, ``confusion_matrix.png`` and ``data_summary.json``; the
report reads it beside the training runs. Scoring a run's checkpoint on its own data set's test
part gives that run's test metrics.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import hydra
import lightning as L
import yaml
from omegaconf import DictConfig, OmegaConf

from genre_cls.checkpoints import CKPT_HINT, load_classifier
from genre_cls.cmdline import check_settings
from genre_cls.conf import optim_name, settings_of
from genre_cls.data.datamodule import DataSettings, GenreDataModule
from genre_cls.errors import UserError, run_cli, user_errors
from genre_cls.predict import _device
from genre_cls.runfolder import check_run_dir, checkpoint_run_dir, claim_run_dir, record_failure, release_run_dir, write_json
from genre_cls.schema import check, fields_of, setting
from genre_cls.settings import check_data_root
from genre_cls.train import metrics_table, write_predictions

log = logging.getLogger(__name__)
PARTS = ("all", "train", "val", "test")


@dataclass
class EvaluateSettings:
    """``conf/evaluate.yaml``: the evaluation's own keys and its ``data`` group."""

    __extra__ = "ignore"
    ckpt: Optional[str] = setting(None, hint=": a run's checkpoints/best.ckpt or the run's folder")
    map: Any = setting(None, null=True, expect="a mapping of labels to classes, or a .yaml/.json file of one")
    part: str = setting("all", choices=PARTS)
    device: str = setting("cpu")
    seed: int = setting(0, ge=0, le=2**32 - 1)
    batch_size: int = setting(32, ge=1)
    data: DataSettings = field(default_factory=DataSettings)


def read_map(value: Any) -> dict[str, str] | None:
    """``map=``: a mapping of collection labels to classes, or a .yaml/.json file that holds one."""
    if value is None:
        return None
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, str):
        path = Path(os.path.expanduser(value))
        if path.suffix.lower() not in (".yaml", ".yml", ".json") or not path.is_file():
            raise UserError(f"map={value} is neither a mapping ('map={{Hip-Hop: hiphop}}') nor a .yaml or .json file that holds one")
        try:
            value = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read map={path}: {str(exc).splitlines()[0]}; it must hold label: class lines") from None
    if not isinstance(value, dict) or not all(isinstance(k, (str, int)) and isinstance(v, (str, int)) for k, v in value.items()):
        raise UserError(f"map must map collection labels to classes, e.g. 'map={{Hip-Hop: hiphop, Rock: rock}}', got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def checkpoint_file(ckpt: str) -> Path:
    """The checkpoint file ``ckpt`` names (a run folder means its ``checkpoints/best.ckpt``), absolute."""
    path = Path(os.path.expanduser(ckpt))
    return (path / "checkpoints" / "best.ckpt" if path.is_dir() else path).absolute()


def training_facts(model, ckpt: Path) -> dict[str, Any]:
    """What the report shows of the run that trained ``ckpt``: its model, optimiser, learning rate,
    epochs, seed and data set, from that run's ``metrics.json`` where the checkpoint sits in a run
    folder, else from the checkpoint itself."""
    import torch

    hparams = model.hparams
    optim = hparams.get("optim") or {}
    saved = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    epoch = int(saved.get("epoch", 0)) + 1
    facts = {
        "model": str(hparams.get("model_name") or hparams.get("arch")),
        "optim": optim_name(optim.get("_target_")) or "unknown",
        "lr": float(optim.get("lr", 0.0)) or 1e-4,
        "epochs": epoch, "epochs_trained": epoch, "best_epoch": epoch, "seed": None, "trained_on": "unknown",
    }
    run = checkpoint_run_dir(str(ckpt))
    try:
        trained = json.loads((run / "metrics.json").read_text()) if run is not None else {}
    except (OSError, ValueError):
        trained = {}
    for key in ("model", "optim", "lr", "epochs", "epochs_trained", "best_epoch", "seed"):
        if trained.get(key) is not None:
            facts[key] = trained[key]
    facts["trained_on"] = str(trained.get("dataset") or facts["trained_on"])
    if trained:
        facts["training_run"] = str(run)
    return facts


def _trainer(device) -> L.Trainer:
    accelerator = "gpu" if device.type == "cuda" else device.type
    devices = [device.index] if device.type == "cuda" and device.index is not None else 1
    return L.Trainer(accelerator=accelerator, devices=devices, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt`` on ``cfg.data`` (its ``cfg.part``, labels mapped by ``cfg.map``), write the
    evaluation's files into ``cfg.output_dir`` and return its metrics. Raises
    :class:`~genre_cls.errors.UserError` for a mistake in the command, before any work."""
    check(EvaluateSettings, cfg)
    if cfg.get("ckpt") in (None, ""):
        raise UserError(f"no checkpoint given: {CKPT_HINT}")
    check_data_root(cfg)
    label_map = read_map(cfg.get("map"))
    device = _device(cfg.get("device", "cpu"))
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no device banner, no tips
    model = load_classifier(str(cfg.ckpt), device)
    ckpt = checkpoint_file(str(cfg.ckpt))
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.pop("_target_", None)
    data.pop("_convert_", None)
    dm = GenreDataModule(**data, input=model.input_kind, input_options=dict(model.input_params))
    dm.setup_evaluation(model.classes, label_map, str(cfg.part))
    out = Path(cfg.output_dir)
    claimed = claim_run_dir(out)
    try:
        model.log_test_metrics = False
        _trainer(device).test(model, datamodule=dm, verbose=False)
        results = dict(model.test_results)
        write_predictions(out / "predictions.csv", dm, model.test_predictions)
        facts = training_facts(model, ckpt)
        part = str(cfg.part)
        results.update(
            **{k: v for k, v in facts.items() if k != "training_run"},
            classes=list(dm.classes),
            dataset=dm.dataset,
            input=dm.input,
            confusion_matrix=results["test/confusion_matrix"],
            split="all" if part == "all" else dm.effective_split,
            folds=dm.folds if part != "all" else None,
            fold=dm.fold if part != "all" and dm.folds is not None else None,
            precision="32-true",
            evaluation={
                "checkpoint": str(ckpt),
                "training_run": facts.get("training_run"),
                "data_root": str(dm.data_root),
                "part": part,
                "map": label_map or {},
                "tracks": len({u[0] for u in dm.units["test"]}),
                "left_out": dict(dm.left_out),
            },
        )
        write_json(out / "metrics.json", results)
        write_json(out / "data_summary.json", {**dm.summary(), "left_out": dict(dm.left_out), "part": part})
        _confusion(results, out)
    finally:
        if claimed:
            release_run_dir(out)
    print(f"\n{facts['model']} (trained on {facts['trained_on']}) on {dm.dataset} {str(dm.data_root)!r}, part={part}: "
          f"{results['evaluation']['tracks']} tracks" + (f", left out: {_left_out(dm.left_out)}" if dm.left_out else ""))
    print(metrics_table(results))
    print(f"run directory: {out}")
    return results


def _left_out(left_out: dict[str, int]) -> str:
    return ", ".join(f"{label} ({n} track{'s' * (n != 1)})" for label, n in left_out.items())


def _confusion(results: dict[str, Any], out: Path) -> None:
    from genre_cls.plots import confusion_figure, save_figure

    title = f"{results['model']} on {results['dataset']}: test acc {results['test/acc']:.3f}"
    save_figure(confusion_figure(results["confusion_matrix"], results["classes"], title), out / "confusion_matrix.png")


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: exit status 0, or 2 when the command is wrong."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    with user_errors():
        try:
            evaluate(cfg)
        except Exception as exc:  # a folder with nothing but Hydra's files goes; else failed.json says why
            record_failure(cfg, exc)
            _remove_empty_parents(Path(cfg.output_dir))
            raise


def _remove_empty_parents(out: Path) -> None:
    """After a refused evaluation whose folder went: the folders made for it (``outputs/evaluations/<day>``)
    go too when they are empty, so that a mistake leaves nothing behind."""
    if out.exists():
        return
    for parent in list(out.parents)[:3]:
        try:
            parent.rmdir()  # only an empty folder
        except OSError:
            return


# The settings of conf/evaluate.yaml (ckpt, map, part, device, seed, batch_size) and the data group.
KEYS = settings_of("evaluate")


def check_args(argv: Sequence[str]) -> None:
    """Reject what Hydra would answer with several lines (unknown keys and data sets, bad syntax,
    bare words) and a run folder that holds another run's results, before Hydra creates one."""
    check_settings(argv, KEYS, bare="pass the checkpoint as ckpt={arg}", several="evaluate one checkpoint on one collection",
                   quote="quote values with spaces, brackets, commas or ~, e.g. 'data.root=\"~/My Music\"'; labels the "
                         "command line cannot write go in a file: map=labels.yaml", groups=("data",))
    known = fields_of(DataSettings)
    for arg in argv:
        key = arg.lstrip("+~").split("=", 1)[0]
        if key.startswith("data.") and key.split(".")[1] not in known:
            raise UserError(f"unknown setting {key!r}: the data group's settings are {', '.join('data.' + k for k in known)}")
    if not any(a.startswith("--") for a in argv):
        check_run_dir(argv)


def cli() -> None:
    run_cli(main, check_args)


if __name__ == "__main__":
    cli()
