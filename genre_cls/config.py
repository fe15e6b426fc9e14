"""Checks of the training command: a typo or an impossible value becomes one clear line before
any work starts. The command line is checked before Hydra composes it (:func:`check_train_args`),
the composed config before training (:func:`validate`)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genre_cls.data.splits import SPLITS
from genre_cls.errors import UserError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# Config groups a user picks on the command line (group=option).
GROUPS = ("data", "model", "optim", "trainer", "callbacks", "logger", "experiment", "debug")


def optim_name(target: str | None) -> str:
    """``torch.optim.RMSprop`` -> ``rmsprop``: an optimiser config's short name."""
    return str(target or "").rsplit(".", 1)[-1].lower()


def options(group: str) -> list[str]:
    """The options of a config group: the names of ``conf/<group>/*.yaml``."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def check_overrides(argv: list[str]) -> None:
    """Reject ``group=option`` overrides that name no config, before Hydra starts.

    Hydra would answer with several lines; we answer with one that lists the allowed values.
    Sweep values (``model=net1,net2``) are checked one by one.
    """
    for arg in argv:
        m = re.match(r"^(?:\+|~)?([\w/]+)=(.*)$", arg)
        # hydra/* groups are left to Hydra: its plugins add options that conf/ does not list.
        if not m or m.group(1) not in GROUPS:
            continue
        group, value = m.group(1), m.group(2)
        allowed = options(group)
        for choice in re.split(r"\s*,\s*", value.strip("[]() ")):
            if choice in ("", "null") or choice.startswith(("choice(", "range(", "glob(")):
                continue
            if choice not in allowed:
                raise UserError(f"unknown {group} {choice!r}: choose one of {', '.join(allowed)}")


def _number(cfg: DictConfig, key: str):
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{key} must be a number, got {value!r}")
    return value


def validate(cfg: DictConfig) -> None:
    """Check a composed training config; raise :class:`UserError` on the first problem."""
    from genre_cls.models import ARCHITECTURES

    lr = _number(cfg, "lr")
    if not lr > 0:
        raise UserError(f"lr must be > 0, got {lr} (the paper's values: 0.01, 0.001, 0.0005, 0.0001)")
    epochs = _number(cfg, "epochs")
    if int(epochs) != epochs or epochs < 1:
        raise UserError(f"epochs must be a whole number >= 1, got {epochs}")
    batch_size = _number(cfg, "batch_size")
    if int(batch_size) != batch_size or batch_size < 1:
        raise UserError(f"batch_size must be a whole number >= 1, got {batch_size}")
    if not isinstance(cfg.get("seed"), int):
        raise UserError(f"seed must be a whole number, got {cfg.get('seed')!r}")
    arch = cfg.model.get("arch")
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown model.arch {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
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
    test_at = cfg.get("test_at")
    if test_at is not None and (
        not OmegaConf.is_list(test_at) or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in test_at)
    ):
        raise UserError(f"test_at must be a list of epochs >= 1, e.g. test_at=[50,100], got {test_at!r}")
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible: use trainer.accelerator=cpu (or auto)")
    augment = cfg.model.get("augment")
    if augment not in (None, "cgan"):
        raise UserError(f"unknown model.augment {augment!r}: choose null or cgan")
    cgan = cfg.get("cgan")
    if augment == "cgan" and cgan is None:
        raise UserError(f"model {cfg.model.get('name')} augments with the CGAN but the config has no cgan group: add cgan=default")
    if cgan is not None and cgan.get("domain") not in ("waveform", "features"):
        raise UserError(f"unknown cgan.domain {cgan.get('domain')!r}: choose waveform or features")
    split = cfg.data.get("split")
    if split not in SPLITS:
        raise UserError(f"unknown data.split {split!r}: choose one of {', '.join(SPLITS)}")
    root = cfg.data.get("root")
    if root is not None and not Path(os.path.expanduser(str(root))).is_dir():
        raise UserError(
            f"data.root {str(root)!r} does not exist: point it at a GTZAN folder "
            "(Kaggle genres_original/ + images_original/, or marsyas genres/) or use data.root=null "
            "for the synthetic set"
        )
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None:
        check_resume_checkpoint(str(ckpt), cfg.model.get("name"))


@lru_cache(maxsize=None)
def _optimisers() -> tuple[tuple[str, str], ...]:
    return tuple((name, str(OmegaConf.load(CONF_DIR / "optim" / f"{name}.yaml").get("_target_"))) for name in options("optim"))


def optimisers() -> dict[str, str]:
    """The optimisers a run may use: ``conf/optim/<name>.yaml`` -> its ``_target_``."""
    return dict(_optimisers())


def check_resume_checkpoint(ckpt: str, model: str | None = None) -> None:
    """A resume checkpoint must exist, load safely and hold the training state (last.ckpt, not best.ckpt)."""
    import torch

    path = Path(os.path.expanduser(ckpt))
    if path.is_dir():
        raise UserError(f"ckpt_path {ckpt!r} is a folder: give the file <run dir>/checkpoints/last.ckpt to resume")
    if not path.is_file():
        raise UserError(f"ckpt_path {ckpt!r} does not exist: give a run's checkpoints/last.ckpt to resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # truncated by a crash, another program's file, arbitrary pickles
        raise UserError(
            f"ckpt_path {ckpt!r} is not a readable genre_cls checkpoint (truncated or foreign): "
            "give a run's checkpoints/last.ckpt to resume"
        ) from None
    if not isinstance(state, dict) or "genre_cls" not in state:
        raise UserError(f"ckpt_path {ckpt!r} was not written by genre_cls.train: give a run's checkpoints/last.ckpt to resume")
    if "optimizer_states" not in state:
        raise UserError(f"ckpt_path {ckpt!r} holds weights only (best.ckpt): resume from the same run's checkpoints/last.ckpt")
    trained = state.get("hyper_parameters", {}).get("model_name")
    if model is not None and trained is not None and trained != model:
        raise UserError(f"ckpt_path {ckpt!r} was trained with model={trained}: add model={trained} to resume it")


def precompose(argv: Sequence[str]) -> None:
    """Compose the config once with the command line's overrides (the first value of each
    sweep axis) so that a misspelt key is one line here rather than Hydra's report, and check
    the resume checkpoint (``ckpt_path``)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = []
    for arg in argv:
        if arg.startswith("-") or arg.startswith(("hydra.", "hydra/", "+hydra", "~hydra")) or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        if multirun and "," in value and not value.startswith(("[", "{", "'", '"')):
            value = value.split(",", 1)[0]  # one point of a sweep axis is enough to check the key
        if multirun and value.startswith(("choice(", "range(", "interval(", "tag(", "glob(")):
            continue
        overrides.append(f"{key}={value}")
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        first = lines[0] if lines else type(exc).__name__
        if "LexerNoViableAltException" in first or "mismatched input" in first:
            first = (f"cannot parse the override {first.split(': ', 1)[-1]!r}: quote a value with special "
                     "characters ('data.root=\"~/My Music\"') or write $HOME instead of ~")
        if first.startswith("Could not override") and any(line.startswith("To append") for line in lines):
            first += " (no such key: check its spelling; python -m genre_cls.train --cfg job prints every key)"
        raise UserError(first) from None
    # Before Hydra starts: it would first write this command's .hydra/ over the resumed run's own.
    try:
        ckpt = cfg.get("ckpt_path")
    except OmegaConfBaseException:  # an interpolation only Hydra resolves: validate() checks it
        ckpt = None
    if ckpt is not None:
        check_resume_checkpoint(str(ckpt), cfg.model.get("name"))


def check_train_args(argv: Sequence[str]) -> None:
    """Group options and keys of the training command line, checked before Hydra starts."""
    check_overrides(list(argv))
    if not any(a.startswith("--") for a in argv):  # --cfg, --help, --info...
        precompose(argv)
