"""Checks of the training command: a typo or an impossible value becomes one clear line before
any work starts. The command line is checked before Hydra composes it (:func:`check_train_args`),
the composed config before training (:func:`validate`)."""

from __future__ import annotations

import importlib
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from genre_cls import MAX_SYNTH_TRACKS_PER_GENRE
from genre_cls.data.splits import SPLITS, check_folds
from genre_cls.data.workers import max_workers
from genre_cls.errors import UserError, one_line
from genre_cls.hardware import check_trainer

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


# --------------------------------------------------------------------------- what each key may hold


class Rule:
    """What one config value may be: :meth:`problem` says what it must be, or ``None`` when it fits."""

    def __init__(self, expect: str, ok: Callable[[Any], bool], null: bool = False) -> None:
        self.expect = expect + (" or null" if null else "")
        self.ok = ok
        self.null = null

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None if self.null else self.expect
        return None if self.ok(value) else self.expect

    def message(self, key: str, value: Any, expect: str, hint: str) -> str:
        """The one-line error for ``key`` holding ``value``."""
        return f"{key} must be {expect}, got {_shown(value)}{hint}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def whole(lo: int = 0, hi: int | None = None, null: bool = False) -> Rule:
    """A whole number in ``[lo, hi]`` (not a bool, not ``1.0``)."""
    span = f"a whole number >= {lo}" if hi is None else f"a whole number in [{lo}, {hi}]"
    return Rule(span, lambda v: _is_int(v) and v >= lo and (hi is None or v <= hi), null)


class Number(Rule):
    """A real number in a range: ``lr must be > 0, got -1``; ``... a finite number > 0, got inf``."""

    def __init__(self, lo: float, open_lo: bool, hi: float | None, open_hi: bool, null: bool) -> None:
        self.lo, self.open_lo, self.hi, self.open_hi, self.null = lo, open_lo, hi, open_hi, null
        lo_text = f"> {lo:g}" if open_lo else f">= {lo:g}"
        hi_text = "" if hi is None else (f" and < {hi:g}" if open_hi else f" and <= {hi:g}")
        self.expect = lo_text + hi_text + (" or null" if null else "")

    def ok(self, v: Any) -> bool:  # type: ignore[override]
        return (
            _is_num(v)
            and (v > self.lo if self.open_lo else v >= self.lo)
            and (self.hi is None or (v < self.hi if self.open_hi else v <= self.hi))
        )

    def problem(self, value: Any) -> str | None:
        if (value is None and self.null) or self.ok(value):
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return self.expect
        return "a finite number " + self.expect


def number(lo: float = 0.0, open_lo: bool = False, hi: float | None = None, open_hi: bool = False, null: bool = False) -> Rule:
    """A finite real number between ``lo`` and ``hi`` (each bound open or closed)."""
    return Number(lo, open_lo, hi, open_hi, null)


def boolean(null: bool = False, also: tuple = ()) -> Rule:
    """``true`` or ``false`` (or one of ``also``, e.g. Lightning's ``"warn"``)."""
    extra = "".join(f" or {a!r}" for a in also)
    return Rule(f"true or false{extra}", lambda v: isinstance(v, bool) or v in also, null)


class Choice(Rule):
    """One of a fixed list of values (or of a list computed when checked, e.g. Lightning's strategies)."""

    def __init__(self, values: Sequence | Callable[[], Sequence], null: bool = False) -> None:
        self.values = values
        self.null = null

    @property
    def allowed(self) -> list:
        return list(self.values() if callable(self.values) else self.values)

    @property
    def expect(self) -> str:  # type: ignore[override]
        shown = list(dict.fromkeys(str(a) for a in self.allowed))
        listed = ", ".join(shown[:12]) + (", ..." if len(shown) > 12 else "")
        return "one of " + listed + (" or null" if self.null else "")

    def ok(self, value: Any) -> bool:  # type: ignore[override]
        return isinstance(value, (str, int)) and not isinstance(value, bool) and value in self.allowed

    def message(self, key: str, value: Any, expect: str, hint: str) -> str:
        return f"unknown {key} {_shown(value)}: choose {expect}{hint}"


def choice(values: Sequence | Callable[[], Sequence], null: bool = False) -> Rule:
    """One of ``values``; an error reads ``unknown <key> 'x': choose one of ...``."""
    return Choice(values, null)


def text(null: bool = False) -> Rule:
    """A non-empty string."""
    return Rule("a text (a name or a path)", lambda v: isinstance(v, str) and v != "", null)


def list_of(item: Rule, length: int | None = None, null: bool = False) -> Rule:
    """A non-empty list (of ``length`` items when given) whose every item fits ``item``."""
    size = f"{length} " if length else ""
    return Rule(
        f"a list of {size}values, each {item.expect}",
        lambda v: isinstance(v, (list, tuple, ListConfig))
        and (length is None or len(v) == length)
        and (length is not None or len(v) > 0)
        and all(item.problem(x) is None for x in v),
        null,
    )


def either(*rules: Rule, null: bool = False) -> Rule:
    """A value that fits one of ``rules`` (``0.5`` or ``10`` for Lightning's ``limit_*_batches``)."""
    return Rule(" or ".join(r.expect for r in rules), lambda v: any(r.problem(v) is None for r in rules), null)


def _fractions_ok(v: Any) -> bool:
    return (
        isinstance(v, (list, tuple, ListConfig))
        and len(v) == 3
        and all(_is_num(x) for x in v)
        and v[0] > 0 and v[1] >= 0 and v[2] > 0
        and abs(sum(v) - 1.0) <= 1e-6
    )


def _strategies() -> list[str]:
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


#: Which epoch a run keeps and tests (``model.keep_epoch``): the best by validation accuracy,
#: or the last (what a run without validation keeps).
KEEP_EPOCHS = ("best", "last")
# Images 5.7x the paper's side: larger ones only exhaust the memory (one 1024 px image is 3 MB).
MAX_IMAGE_SIZE = 1024
_FRACTION_OR_COUNT = either(number(0.0, hi=1.0), whole(0))
# Lightning's precision names (lightning.fabric.connector._PRECISION_INPUT) and their short forms;
# auto: the best one this machine runs (genre_cls.hardware.choose_precision).
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "32", "16", "bf16", "64", 32, 16, 64, "auto")

#: Every config key a user can set and what it may hold (``python -m genre_cls.train --cfg job``
#: lists them). A key absent from the composed config is not checked; keys not listed here are
#: checked by their own code (the optimiser's target, the callbacks', the logger's).
RULES: dict[str, tuple[Rule, str]] = {
    # key: (rule, hint appended to the error)
    "lr": (number(0.0, open_lo=True), " (the paper's values: 0.01, 0.001, 0.0005, 0.0001)"),
    "epochs": (whole(1), ""),
    "seed": (whole(0, 2**32 - 1), " (any whole number from 0 to 4294967295, e.g. seed=1)"),
    "batch_size": (whole(1), ""),
    "ckpt_path": (text(null=True), ": a run's checkpoints/last.ckpt"),
    "test_at": (list_of(whole(1), null=True), ", e.g. test_at=[50,100]"),
    "optimized_metric": (text(), ", e.g. val/acc_best"),
    "data.root": (text(null=True), ": the collection's folder (GTZAN: null for the synthetic set)"),
    "data.dataset": (choice(("gtzan", "folders", "fma")), " (gtzan, folders: <root>/<label>/**/<file>, fma)"),
    "data.clip": (choice(("first", "middle")), ""),
    "data.clip_seconds": (number(0.0, open_lo=True, hi=3600.0, null=True), " (seconds of a longer track the models see; null: as it is)"),
    "data.engine": (choice(("local", "ray")), " (where extraction runs: local worker processes, or ray)"),
    "data.ray_address": (text(null=True), " (null: a local Ray; or a cluster's address, e.g. ray://head:10001)"),
    "data.dataset_options.subset": (choice(("small", "medium", "large", "full"), null=True), " (FMA: null = the audio folder present)"),
    "data.dataset_options.metadata": (text(null=True), " (FMA: the fma_metadata folder; null = under data.root)"),
    "data.split": (choice(SPLITS), ""),
    "data.fractions": (
        # Validation may be empty (0): the run then keeps its last epoch.
        Rule("three numbers (train > 0, val >= 0, test > 0) that sum to 1", _fractions_ok),
        ", e.g. data.fractions=[0.7,0.1,0.2], or [0.8,0,0.2] for no validation",
    ),
    "data.seed": (whole(0, 2**32 - 1), ""),
    "data.batch_size": (whole(1), ""),
    "data.eval_batch_size": (whole(1, null=True), ""),
    "data.num_workers": (whole(0, max_workers()), " (4 per core at most)"),
    "data.pin_memory": (boolean(), ""),
    "data.image_size": (whole(4, MAX_IMAGE_SIZE), " (the paper's: 180)"),
    "data.min_seconds": (number(0.0, hi=30.0), " (seconds; GTZAN clips are 30 s, default 10)"),
    "data.cache_dir": (text(null=True), ""),
    "data.synthetic.tracks_per_genre": (whole(1, MAX_SYNTH_TRACKS_PER_GENRE), " (GTZAN has 100)"),
    "data.synthetic.seed": (whole(0, 2**32 - 1), ""),
    "data.feature_workers": (whole(0, max_workers(), null=True), " (null: one per core; 4 per core at most)"),
    "data.progress": (boolean(), ""),
    "data.loader": (choice(("memory", "torch")), ""),
    "data.images": (choice(("auto", "kaggle", "render")), " (auto: Kaggle's PNG where there is one, else rendered from audio)"),
    "data.folds": (whole(2, null=True), " (null, or K >= 2 for a K-fold over tracks)"),
    "data.fold": (whole(0), " (0..data.folds-1)"),
    "optim.lr": (number(0.0, open_lo=True), ""),
    "optim.fused": (boolean(null=True), ""),
    "optim.foreach": (boolean(null=True), ""),
    "optim.weight_decay": (number(0.0), ""),
    "optim.momentum": (number(0.0), ""),
    "model.name": (text(), ""),
    "model.arch": (choice(lambda: _architectures()), ""),
    "model.arch_kwargs.hidden": (whole(1), ""),
    "model.arch_kwargs.num_layers": (whole(1), ""),
    "model.arch_kwargs.dropout": (number(0.0, hi=1.0, open_hi=True), ""),
    "model.early_stopping_patience": (whole(0, null=True), ""),
    "model.keep_epoch": (choice(KEEP_EPOCHS), " (best: the best epoch by val/acc; last: the last epoch)"),
    "model.optim": (choice(lambda: list(optimisers()), null=True), ""),
    "model.augment": (choice(("cgan",), null=True), ""),
    "model.arch_kwargs.width": (whole(1, 512), ""),
    "model.arch_kwargs.depth": (whole(1, 8), ""),
    "model.arch_kwargs.stem_pool": (whole(1, 4), ""),
    "model.arch_kwargs.time_pool": (choice(("max_mean", "max")), ""),
    "model.input.sample_rate": (whole(4000, 192000), ""),
    "model.input.chunk_seconds": (number(0.5, hi=60.0), " (seconds of audio per chunk, e.g. 3)"),
    "model.input.crops_per_track": (whole(1, 1000), ""),
    "model.input.logmel.n_fft": (whole(16, 16384), ""),
    "model.input.logmel.hop_length": (whole(1, 16384), ""),
    "model.input.logmel.n_mels": (whole(8, 512), ""),
    "model.input.logmel.top_db": (number(0.0, open_lo=True, null=True), ""),
    "model.train_augment.gain_db": (number(0.0, hi=40.0), ""),
    "model.train_augment.freq_masks": (whole(0, 16), ""),
    "model.train_augment.freq_width": (whole(0), ""),
    "model.train_augment.time_masks": (whole(0, 16), ""),
    "model.train_augment.time_width": (whole(0), ""),
    "model.train_augment.mixup_alpha": (number(0.0, hi=10.0), " (0: no mixup)"),
    "model.schedule.warmup_epochs": (number(0.0), ""),
    "model.schedule.cosine": (boolean(), ""),
    "model.schedule.min_lr_ratio": (number(0.0, hi=1.0), ""),
    "model.label_smoothing": (number(0.0, hi=1.0, open_hi=True), ""),
    "trainer.max_epochs": (whole(1), ""),
    "trainer.min_epochs": (whole(0, null=True), ""),
    "trainer.accelerator": (choice(("auto", "cpu", "gpu", "cuda", "mps", "tpu")), ""),
    "trainer.devices": (
        either(whole(1), choice((-1, "auto")), list_of(whole(0)), Rule("a text like '0,1'", lambda v: isinstance(v, str) and re.fullmatch(r"\d+(,\d+)*,?", v) is not None)),
        "",
    ),
    "trainer.num_nodes": (whole(1), ""),
    "trainer.strategy": (choice(_strategies), ""),
    "trainer.precision": (choice(PRECISIONS), ""),
    "trainer.log_every_n_steps": (whole(1), ""),
    "trainer.deterministic": (boolean(null=True, also=("warn",)), ""),
    "trainer.benchmark": (boolean(null=True), ""),
    "trainer.enable_progress_bar": (boolean(), ""),
    "trainer.enable_model_summary": (boolean(), ""),
    "trainer.fast_dev_run": (either(boolean(), whole(0)), ""),
    "trainer.overfit_batches": (_FRACTION_OR_COUNT, ""),
    "trainer.limit_train_batches": (either(_FRACTION_OR_COUNT, null=True), ""),
    "trainer.limit_val_batches": (either(_FRACTION_OR_COUNT, null=True), ""),
    "trainer.limit_test_batches": (either(_FRACTION_OR_COUNT, null=True), ""),
    "trainer.gradient_clip_val": (number(0.0, null=True), ""),
    "trainer.sync_batchnorm": (boolean(), ""),
    "trainer.check_val_every_n_epoch": (whole(1, null=True), ""),
    "trainer.accumulate_grad_batches": (whole(1), ""),
    "callbacks.model_checkpoint.monitor": (choice(lambda: LOGGED_METRICS, null=True), ""),
    "callbacks.model_checkpoint.mode": (choice(("max", "min")), ""),
    "callbacks.model_checkpoint.save_top_k": (whole(-1), ""),
    "callbacks.last_checkpoint.every_n_epochs": (whole(1), ""),
    "cgan.domain": (choice(("waveform", "features")), ""),
    "cgan.epochs": (whole(1), ""),
    "cgan.batch_size": (whole(1), ""),
    "cgan.lr": (number(0.0, open_lo=True), ""),
    "cgan.betas": (list_of(number(0.0, hi=1.0, open_hi=True), length=2), ", e.g. cgan.betas=[0.5,0.999]"),
    "cgan.noise_dim": (whole(1), ""),
    "cgan.embed_dim": (whole(1), ""),
    "cgan.per_class": (whole(1, null=True), " (null: as many as the real training segments)"),
    "cgan.log_every_n_epochs": (whole(1), ""),
    "cgan.waveform.generator_hidden": (list_of(whole(1)), ""),
    "cgan.waveform.discriminator_hidden": (list_of(whole(1)), ""),
    "cgan.features.generator_hidden": (list_of(whole(1)), ""),
    "cgan.features.discriminator_hidden": (list_of(whole(1)), ""),
}
#: What GenreClassifier logs per epoch: what a checkpoint callback can monitor.
LOGGED_METRICS = ("val/acc", "val/loss", "val/f1_macro", "val/f1_weighted", "train/loss", "train/acc")
# Groups whose every key is an argument of one class: a key it does not take is a typo.
ARGUMENTS_OF = {"trainer": "lightning.pytorch.Trainer", "data": "genre_cls.data.GenreDataModule"}


def _architectures() -> list[str]:
    from genre_cls.models import ARCHITECTURES

    return list(ARCHITECTURES)


def _shown(value: Any) -> str:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return repr(value)


_ABSENT = object()


def _value(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    """``(present, value)`` of a dotted key, resolved; an unresolvable value raises UserError."""
    try:
        node = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except Exception as exc:  # an interpolation that does not resolve, a missing ??? value
        raise UserError(f"{key} cannot be read: {one_line(exc)}") from None
    if node is _ABSENT:
        return False, None
    return True, node



def _check_arguments(cfg: DictConfig, group: str, target: str) -> None:
    """Every key of ``cfg.<group>`` (but ``_target_``-like keys) is an argument of ``target``."""
    import inspect

    node = cfg.get(group)
    if not isinstance(node, DictConfig) or str(node.get("_target_", "")) != target:
        return
    module, _, name = target.rpartition(".")
    params = inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in node:
        if not str(key).startswith("_") and key not in params:
            raise UserError(f"{group}.{key} is not a setting of {name}: check its spelling (python -m genre_cls.train --cfg job lists every key)")


def check_values(cfg: DictConfig) -> None:
    """Types and ranges of every key in :data:`RULES`: the first value that does not fit is one
    :class:`UserError` that names the key, what it must be and what it got."""
    for key, (rule, hint) in RULES.items():
        present, value = _value(cfg, key)
        if not present:
            continue
        plain = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        expect = rule.problem(plain)
        if expect is not None:
            raise UserError(rule.message(key, value, expect, hint))
    for group, target in ARGUMENTS_OF.items():
        _check_arguments(cfg, group, target)


def validate(cfg: DictConfig) -> None:
    """Check a composed training config; raise :class:`UserError` on the first problem."""
    check_values(cfg)
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
    check_folds(cfg.data.get("folds"), cfg.data.get("fold", 0), cfg.data.get("split"))
    augment = cfg.model.get("augment")
    cgan = cfg.get("cgan")
    if augment == "cgan" and cgan is None:
        raise UserError(f"model {cfg.model.get('name')} augments with the CGAN but the config has no cgan group: add cgan=default")
    root = cfg.data.get("root")
    dataset = str(cfg.data.get("dataset", "gtzan"))
    holds = DATA_ROOTS.get(dataset, DATA_ROOTS["gtzan"])
    if root is None and dataset != "gtzan":
        raise UserError(f"data={dataset} needs data.root: the folder that holds {holds}")
    if root is not None and Path(os.path.expanduser(str(root))).exists() and not Path(os.path.expanduser(str(root))).is_dir():
        raise UserError(f"data.root {str(root)!r} is a file, not a folder: point it at the folder that holds {holds}")
    if root is not None and not Path(os.path.expanduser(str(root))).is_dir():
        raise UserError(
            f"data.root {str(root)!r} does not exist: point it at the folder that holds {holds}"
            + (" or use data.root=null for the synthetic set" if dataset == "gtzan" else "")
        )
    check_requests(cfg)
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None:
        check_resume_checkpoint(str(ckpt), cfg.model.get("name"), run_identity(cfg))
        check_resume_epochs(cfg)


#: What data.root holds, by data set (for the messages about it).
DATA_ROOTS = {
    "gtzan": "GTZAN (Kaggle genres_original/ + images_original/, marsyas genres/, or flat <genre>/ folders)",
    "folders": "your collection, one sub-folder per label (<root>/<label>/**/<audio file>)",
    "fma": "FMA (fma_metadata/tracks.csv and fma_small/, fma_medium/ or fma_large/)",
}


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


def check_requests(cfg: DictConfig) -> None:
    """Settings that are valid alone but that this run could not honour: an ``optimized_metric``
    the run does not produce (every trial of a search would fail), a ``test_at`` epoch after the
    last one, a data root still being written by ``genre_cls.data.synth``."""
    from genre_cls.data.index import GENERATING
    from genre_cls.metrics import METRIC_NAMES

    metric = cfg.get("optimized_metric")
    if metric is not None and metric not in optimizable_metrics(cfg) and not _per_class_metric(cfg, str(metric)):
        per_track = " and the same under test_track/" if _voted(cfg) else ""
        raise UserError(
            f"unknown optimized_metric {metric!r}: a run's metrics.json holds val/acc_best (the default), "
            f"test/<{'|'.join(METRIC_NAMES)}> and test/<precision|recall|f1>/<genre>{per_track}"
        )
    epochs = cfg.get("epochs")
    trainer = cfg.get("trainer") or {}
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
    root = cfg.data.get("root")
    if root is not None and (Path(os.path.expanduser(str(root))) / GENERATING).exists():
        raise UserError(
            f"data.root {str(root)!r} is a synthetic set still being generated, or whose generation was stopped "
            f"({GENERATING} is there): wait for python -m genre_cls.data.synth to finish, or run it again"
        )


def epochs_done(state: dict) -> int:
    """The epochs a training checkpoint has completed (its fit loop's processed epochs)."""
    try:
        return int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):  # no loop state: its last epoch (0-based) is complete
        epoch = state.get("epoch")
        return epoch + 1 if isinstance(epoch, int) else 0


#: The copy of the best checkpoint up to a ``test_at`` epoch, in the run's ``checkpoints/``.
SNAPSHOT_NAME = "best_upto_epoch{epoch}.ckpt"


def check_resume_epochs(cfg: DictConfig) -> None:
    """A resume trains up to ``epochs``: fewer than the checkpoint has already trained would make
    ``metrics.json`` and the report say less was trained than was, so it is refused. A ``test_at``
    epoch the run has passed can be tested only when the run kept its best checkpoint then."""
    ckpt = str(cfg.ckpt_path)
    run = checkpoint_run_dir(ckpt)
    if run is not None and rank_zero():
        check_not_in_use(run)
    done = epochs_done(load_checkpoint_state(ckpt))
    if int(cfg.epochs) < done:  # (trainer.max_epochs follows epochs: check_requests)
        raise UserError(
            f"ckpt_path {ckpt!r} has already trained {done} epochs, more than epochs={cfg.epochs}: resume with "
            f"epochs={done} or more (the run keeps its {done} epochs), {FRESH_RUN_HINT}"
        )
    folder = Path(os.path.expanduser(ckpt)).parent if run is not None else None
    passed = [
        int(e) for e in cfg.get("test_at") or []
        if int(e) <= done and int(e) < int(cfg.epochs)
        and (folder is None or not (folder / SNAPSHOT_NAME.format(epoch=int(e))).is_file())
    ]
    if passed:
        raise UserError(
            f"test_at={override_text(passed)}: ckpt_path {ckpt!r} has already trained {done} epochs and kept no best "
            f"checkpoint up to epoch {passed[0]} ({SNAPSHOT_NAME.format(epoch=passed[0])}); drop those epochs from "
            "test_at to resume, or start a fresh run with them"
        )


@lru_cache(maxsize=None)
def _optimisers() -> tuple[tuple[str, str], ...]:
    return tuple((name, str(OmegaConf.load(CONF_DIR / "optim" / f"{name}.yaml").get("_target_"))) for name in options("optim"))


def optimisers() -> dict[str, str]:
    """The optimisers a run may use: ``conf/optim/<name>.yaml`` -> its ``_target_``."""
    return dict(_optimisers())


def input_kind(cfg: DictConfig) -> str | None:
    """What the configured network reads: ``image``, ``features`` or ``waveform`` (None for an unknown arch)."""
    from genre_cls.models import ARCHITECTURES

    entry = ARCHITECTURES.get(str(cfg.model.get("arch")))
    return entry[1] if entry else None


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """What defines a run, as plain values keyed by the override that sets each one.

    A checkpoint records it (``genre_cls.callbacks.RunIdentity``); resuming with any of these
    different would continue a run on other data or another split, so it is refused. The data
    set's content is compared too, after indexing (``data.fingerprint``, in ``train``).
    """
    root = cfg.data.get("root")
    synthetic = cfg.data.get("synthetic")
    return {
        "model": str(cfg.model.get("name")),
        "optim": optim_name(cfg.optim.get("_target_")),
        "data.dataset": str(cfg.data.get("dataset", "gtzan")),
        "data.clip": [cfg.data.get("clip", "first"), cfg.data.get("clip_seconds")] if cfg.data.get("clip_seconds") is not None else None,
        "model.input": OmegaConf.to_container(cfg.model.input, resolve=True) if cfg.model.get("input") is not None else None,
        "seed": cfg.get("seed"),
        "data.split": cfg.data.get("split"),
        "data.fractions": [float(f) for f in cfg.data.get("fractions") or []],
        "data.folds": cfg.data.get("folds"),
        "data.images": cfg.data.get("images", "auto") if input_kind(cfg) == "image" else None,
        "data.fold": cfg.data.get("fold", 0) if cfg.data.get("folds") is not None else None,
        "data.root": None if root is None else os.path.realpath(os.path.expanduser(str(root))),
        "data.synthetic": OmegaConf.to_container(synthetic, resolve=True) if root is None and synthetic is not None else None,
    }


def override_text(value: Any) -> str:
    """A value as it is written on the command line: ``null``, ``[0.7,0.1,0.2]``, ``net3``."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_text(v)}" for k, v in value.items()) + "}"
    return str(value)


FRESH_RUN_HINT = "or start a fresh run without ckpt_path= (it gets its own run folder)"


def identity_overrides(key: str, value: Any) -> str:
    """The overrides that set a :func:`run_identity` entry to ``value``, ready to paste: ``data.clip``
    records the clip and its length together, but they are set by two keys."""
    if key == "data.clip":
        clip, seconds = value if value is not None else (None, None)
        return (f"data.clip={clip} " if clip is not None else "") + f"data.clip_seconds={override_text(seconds)}"
    return f"{key}={override_text(value)}"


def check_identity(ckpt: str, recorded: Any, identity: dict[str, Any]) -> None:
    """Refuse to resume ``ckpt`` (whose run recorded ``recorded``) with a different ``identity``."""
    if not isinstance(recorded, dict):
        return  # written before runs recorded their identity: nothing to compare
    for key, value in identity.items():
        if key in recorded and recorded[key] != value:
            was, now = identity_overrides(key, recorded[key]), identity_overrides(key, value)
            raise UserError(f"ckpt_path {ckpt!r} belongs to a run with {was}, not {now}: resume with {was}, {FRESH_RUN_HINT}")


def not_a_checkpoint(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a checkpoint, when that is plain from its first bytes (empty, or
    a text file, which inside torch fails as ``KeyError: 101``); ``None`` otherwise (binary
    files are left to ``torch.load``). Every file ``torch.save`` writes is a zip archive."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            return None
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or one_line(exc)})"
    if not head:
        return "it is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "it is a text file, not a file written by torch.save" if "\0" not in text else None


def load_checkpoint_state(ckpt: str) -> dict:
    """A genre_cls training checkpoint's contents (tensors memory-mapped); one-line errors otherwise."""
    import torch

    path = Path(os.path.expanduser(ckpt))
    if path.is_dir():
        raise UserError(f"ckpt_path {ckpt!r} is a folder: give the file <run dir>/checkpoints/last.ckpt to resume")
    if not path.is_file():
        raise UserError(f"ckpt_path {ckpt!r} does not exist: give a run's checkpoints/last.ckpt to resume")
    why = not_a_checkpoint(path)
    if why is not None:
        raise UserError(f"ckpt_path {ckpt!r} is not a checkpoint: {why}; give a run's checkpoints/last.ckpt to resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # truncated by a crash, another program's file, arbitrary pickles
        raise UserError(
            f"ckpt_path {ckpt!r} is not a readable genre_cls checkpoint (truncated or foreign): "
            "give a run's checkpoints/last.ckpt to resume"
        ) from None
    if not isinstance(state, dict) or "genre_cls" not in state:
        raise UserError(f"ckpt_path {ckpt!r} was not written by genre_cls.train: give a run's checkpoints/last.ckpt to resume")
    return state


def check_resume_checkpoint(ckpt: str, model: str | None = None, identity: dict[str, Any] | None = None) -> None:
    """A resume checkpoint must exist, load safely, hold the training state (last.ckpt, not
    best.ckpt) and come from a run defined like this one (:func:`run_identity`)."""
    state = load_checkpoint_state(ckpt)
    if "optimizer_states" not in state:
        raise UserError(f"ckpt_path {ckpt!r} holds weights only (best.ckpt): resume from the same run's checkpoints/last.ckpt")
    trained = state.get("hyper_parameters", {}).get("model_name")
    if model is not None and trained is not None and trained != model:
        raise UserError(f"ckpt_path {ckpt!r} was trained with model={trained}: add model={trained} to resume it")
    if identity is not None:
        check_identity(ckpt, state.get(RUN_KEY), identity)


#: The checkpoint entry that holds :func:`run_identity` (and the data fingerprint).
RUN_KEY = "genre_cls_run"


def _is_hydra_arg(arg: str) -> bool:
    """Hydra's own overrides (``hydra.sweep.dir=``, ``hydra/launcher=``): not part of a run's config."""
    return arg.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))


def _is_multirun(argv: Sequence[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in argv)


def _overrides(argv: Sequence[str]) -> list[str]:
    """The overrides of a command line (``key=value`` and ``~key``), without its flags (``-m``, ``--cfg job``)."""
    return [a for a in argv if not a.startswith("-") and ("=" in a or a.startswith("~"))]


def _first_point(args: Sequence[str], multirun: bool) -> list[str]:
    """``key=value`` ``args`` with each sweep axis cut to its first value (an axis without a list of
    values, such as ``interval()``, left out): enough to compose one run's config."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:  # ~key deletes a key
            out.append(arg)
            continue
        if multirun and "," in value and not value.startswith(("[", "{", "'", '"')):
            value = value.split(",", 1)[0]  # one point of a sweep axis is enough to check the key
        if multirun and value.startswith(("choice(", "range(", "interval(", "tag(", "glob(")):
            continue
        out.append(f"{key}={value}")
    return out


def _compose(overrides: Sequence[str], multirun: bool, hydra: bool = False) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides``; Hydra's (several-line) errors become one line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("train", overrides=list(overrides), return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        first = lines[0] if lines else type(exc).__name__
        if "LexerNoViableAltException" in first or "mismatched input" in first:
            first = (f"cannot parse the override {first.split(': ', 1)[-1]!r}: quote a value with special "
                     "characters ('data.root=\"~/My Music\"') or write $HOME instead of ~")
        if first.startswith("Ambiguous value for argument") and not multirun:
            first += ": several values sweep only with -m (python -m genre_cls.train -m lr=1e-3,1e-4)"
        if first.startswith("Could not override") and any(line.startswith("To append") for line in lines):
            first += " (no such key: check its spelling; python -m genre_cls.train --cfg job prints every key)"
        raise UserError(first) from None


def precompose(argv: Sequence[str]) -> DictConfig:
    """Compose the config once with the command line's overrides (the first value of each
    sweep axis) so that a misspelt key is one line here rather than Hydra's report; return it."""
    args = [a for a in _overrides(argv) if not _is_hydra_arg(a)]
    return _compose(_first_point(args, _is_multirun(argv)), _is_multirun(argv))


def sweep_points(argv: Sequence[str]) -> list[list[str]]:
    """The overrides of each run that a command line makes, as Hydra's basic sweeper makes them: for
    a sweep (``-m``, or an experiment in MULTIRUN mode such as ``experiment=cv10``) the product of
    the axes of ``hydra.sweeper.params`` and of the command line, whose value of a key replaces the
    grid's; otherwise the one run's overrides. An axis that is not a list of values (Optuna's
    ``interval()``) keeps the config's value."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException

    args = _overrides(argv)
    task = [a for a in args if not _is_hydra_arg(a)]
    # Only -m, an experiment or hydra.mode= make a sweep: the usual single run needs no second composition.
    if not _is_multirun(argv) and not any(re.match(r"^\+*(experiment|hydra\.mode)=", a) for a in args):
        return [task]
    hydra_cfg = _compose(_first_point(args, True), True, hydra=True).hydra
    if not _is_multirun(argv) and str(hydra_cfg.get("mode")) != "RunMode.MULTIRUN":
        return [task]
    params = hydra_cfg.sweeper.get("params")
    grid = OmegaConf.to_container(params, resolve=False) if OmegaConf.is_dict(params) else {}
    try:
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in grid.items()] + task)
    except HydraException as exc:
        raise UserError(one_line(exc)) from None
    axes: dict[str, list[str]] = {}
    for override in parsed:
        key, name = override.get_key_element(), override.key_or_group
        if not override.is_sweep_override():
            axes[name] = [override.input_line]
        elif isinstance(override.value(), Glob):
            axes[name] = [f"{key}={v}" for v in override.value().filter(options(name))] if name in GROUPS else []
        elif override.is_discrete_sweep():
            axes[name] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            axes.pop(name, None)
    return [list(point) for point in itertools.product(*(values for values in axes.values() if values))]


def sweep_configs(points: list[list[str]]) -> Iterator[tuple[str, DictConfig]]:
    """``(where, config)`` of every run of a sweep's ``points`` (:func:`sweep_points`), ``where``
    naming the run and its values on the swept axes. Hydra composes what config groups choose
    (``model=net5``) once per choice, and applies each run's values (``lr=0.1``) to a copy the way
    its own composition does, so a grid of 120 runs costs ten compositions, not 120."""
    import copy

    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    varied = [i for i in range(len(points[0])) if len({point[i] for point in points}) > 1] if points else []
    parser = OverridesParser.create()
    composed: dict[tuple[str, ...], DictConfig] = {}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for number, point in enumerate(points, start=1):
            where = f"sweep run {number} of {len(points)} ({' '.join(point[i] for i in varied)})"
            choices = tuple(p for p in point if _group_of(p) is not None)
            try:
                if choices not in composed:
                    composed[choices] = compose("train", overrides=list(choices))
                cfg = copy.deepcopy(composed[choices])
                values = parser.parse_overrides([p for p in point if _group_of(p) is None])
                ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
            except (HydraException, OmegaConfBaseException) as exc:
                raise UserError(f"{where}: {one_line(exc)}") from None
            yield where, cfg


def _group_of(override: str) -> str | None:
    """The config group an override chooses an option of (``model=net5``: model), else ``None``."""
    key = re.sub(r"^[+~]+", "", override.split("=", 1)[0])
    return key if key in GROUPS or "/" in key else None


def check_sweep(argv: Sequence[str]) -> None:
    """:func:`validate` the config of every run the command line makes, every point of a sweep
    before the first one trains: the first bad one is one :class:`UserError` naming the run."""
    points = sweep_points(argv)
    if len(points) <= 1:
        validate(precompose(argv))
        return
    for where, cfg in sweep_configs(points):
        try:
            validate(cfg)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None


def check_new_keys(argv: Sequence[str]) -> None:
    """``+key=value`` adds a key the config lacks: at the top level, where nothing reads an
    unknown key, it is a typo (``+seeed=1``), refused with one line. Hydra's own keys, config
    groups and keys below a group (checked by :func:`check_values`) are left alone."""
    known = set(OmegaConf.load(CONF_DIR / "train.yaml").keys()) | set(GROUPS) | {"hydra"}
    for arg in argv:
        m = re.match(r"^\+{1,2}([\w]+)=", arg)
        if m and m.group(1) not in known:
            raise UserError(
                f"unknown key {m.group(1)!r} (added with +): nothing reads it; check its spelling "
                "(python -m genre_cls.train --cfg job prints every key)"
            )


#: What a run writes into its folder (and a sweep into its own): a folder holding any of these
#: holds a run's results, or files that a run would overwrite. (Hydra's log is only appended to.)
RUN_FILES = (
    ".hydra", "checkpoints", "cgan", "metrics.json", "failed.json", "interrupted.json", "splits.json",
    "data_summary.json", "predictions.csv", "confusion_matrix.png", "hparams.yaml", "multirun.yaml",
    "optimization_results.yaml", "events.out.tfevents.*", "metrics_epoch*.json", "predictions_epoch*.csv",
)


def run_results(folder: Path, sweep: bool = False) -> list[Path]:
    """The files and folders of runs in ``folder`` (and, for a sweep, in its job folders),
    sorted; empty when a run may write there without overwriting anything."""
    try:
        found = [p for pattern in RUN_FILES for p in folder.glob(pattern)]
        if sweep:
            found += [p for job in folder.iterdir() if job.is_dir() for pattern in RUN_FILES for p in job.glob(pattern)]
    except OSError:  # not a folder, or one that cannot be listed: the writability check says so
        return []
    return sorted(found)


def rank_zero() -> bool:
    """Whether this is the first (or only) process of a run: the other processes of a
    multi-device run (Lightning's DDP children, SLURM tasks) start the same command in the same
    run folder, which the first one has already checked and claimed."""
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


#: The file a run keeps in its folder while it runs: its process id and host.
RUNNING = ".running"


def run_in_use(folder: Path) -> str | None:
    """Who is writing ``folder`` now (``process 123 on host x``), or ``None`` when nobody is: no
    :data:`RUNNING` file, or one left by a process of this host that no longer runs."""
    import json
    import socket

    try:
        holder = json.loads((folder / RUNNING).read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host == socket.gethostname():
        if pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # another user's process
            pass
    return f"process {pid} on host {host}"


def check_not_in_use(folder: Path) -> None:
    """Refuse to write a run folder that another process (the run itself, or another resume of it)
    is writing now: both would write its checkpoints and metrics."""
    holder = run_in_use(folder)
    if holder is not None:
        raise UserError(
            f"the run in {folder} is still running ({holder}): wait for it to end, or stop it (Ctrl-C saves "
            f"last.ckpt) before resuming; if no such process runs any more, remove {folder / RUNNING}"
        )


def checkpoint_run_dir(ckpt_path: str | None) -> Path | None:
    """The run folder that a ``ckpt_path`` in ``<run>/checkpoints/`` belongs to (absolute, symlinks
    not followed), or ``None`` for a checkpoint outside a run's ``checkpoints/`` folder."""
    if not ckpt_path:
        return None
    path = Path(os.path.abspath(os.path.expanduser(str(ckpt_path))))
    return path.parent.parent if path.parent.name == "checkpoints" else None


def check_run_dir(argv: Sequence[str]) -> None:
    """The folder Hydra will write the run (or sweep) into must be creatable (Hydra itself would
    answer an unwritable ``hydra.run.dir`` with a traceback) and must not hold another run's
    results: only the resume of a run (``ckpt_path=<that run>/checkpoints/last.ckpt``) writes
    into its folder. Anything this check creates is removed again."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [a.split("=", 1)[1] for a in argv if a.startswith(f"{key}=")]
    target = Path(os.path.expanduser(given[-1].strip("'\""))) if given else Path("outputs")
    if "${" in str(target) or not rank_zero():
        return  # an interpolation only Hydra resolves (genre_cls.train checks the resolved folder)
    if given:
        ckpts = [a.split("=", 1)[1].strip("'\"") for a in argv if re.match(r"^\+{0,2}ckpt_path=", a)]
        resumed = checkpoint_run_dir(ckpts[-1]) if ckpts and not multirun else None
        check_not_a_run(target, key, resumed, sweep=multirun)
    missing = []
    probe = target
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    what = f"{key}={target}" if given else f"the run folder under {Path.cwd() / 'outputs'}"
    if probe.exists() and not probe.is_dir():
        raise UserError(f"cannot write {what}: {probe} is a file; choose a folder you can write to ({key}=...)")
    try:
        target.mkdir(parents=True, exist_ok=True)
        writable = os.access(target, os.W_OK)
        for made in missing:  # deepest first
            made.rmdir()
    except OSError as exc:
        raise UserError(f"cannot write {what}: {exc.strerror or exc}; choose a folder you can write to ({key}=...)") from None
    if not writable:
        raise UserError(f"cannot write {what}: permission denied; choose a folder you can write to ({key}=...)")


#: Hydra settings of sweeps that conf/ does not hold (checked by :func:`check_sweep_settings`):
#: key -> (whether a value is allowed, what it must be).
SWEEP_SETTINGS = {
    "hydra.sweeper.n_trials": (lambda v: v >= 1, "a whole number >= 1"),
    "hydra.sweeper.n_jobs": (lambda v: v >= 1, "a whole number >= 1"),
    "hydra.launcher.n_jobs": (lambda v: v != 0, "a whole number other than 0 (-1: one per core)"),
}
# Hydra's modes, of which a command takes one (its own parser would answer two with a traceback).
MODES = {"-m": "-m", "--multirun": "-m", "-r": "--run", "--run": "--run", "-c": "--cfg", "--cfg": "--cfg",
         "-i": "--info", "--info": "--info", "-sc": "--shell-completion", "--shell-completion": "--shell-completion"}
# What sets a sweep's jobs apart in hydra.sweep.subdir: without one, every job writes one folder.
JOB_KEYS = ("hydra.job.num", "hydra.job.id", "hydra.job.override_dirname")


def check_sweep_settings(argv: Sequence[str]) -> None:
    """Hydra's own sweep settings on the command line: the counts of trials and jobs (a search of
    0 trials would end as "every trial failed", joblib's 0 jobs in a traceback), and a
    ``hydra.sweep.subdir`` that gives every job its own folder (one folder for all would have each
    job overwrite the one before). Hydra's modes (``-m``, ``--cfg``, ``--info``...) are one at a time."""
    modes = list(dict.fromkeys(MODES[a] for a in argv if a in MODES))
    if len(modes) > 1:
        hint = " (--cfg job prints the config of one run: leave -m out)" if "-m" in modes else ""
        raise UserError(f"{' and '.join(modes)} cannot be used together: give one of them{hint}")
    for arg in argv:
        key, _, value = arg.lstrip("+~").partition("=")
        if key in SWEEP_SETTINGS:
            ok, expect = SWEEP_SETTINGS[key]
            try:
                number = int(value)
            except ValueError:
                number = None
            if number is None or not ok(number):
                raise UserError(f"{key} must be {expect}, got {value!r}")
        if key == "hydra.sweep.subdir" and not any(job in value for job in JOB_KEYS):
            raise UserError(
                f"hydra.sweep.subdir={value} is the same folder for every job of the sweep, so each job would "
                "overwrite the one before: include ${hydra.job.num} (the default is ${hydra.job.num}_<model>)"
            )


def check_not_a_run(target: Path, key: str, resumed: Path | None, sweep: bool = False) -> None:
    """Refuse to write a run (or a sweep) into ``target`` when it holds another run's results;
    ``resumed`` is the run folder of the checkpoint this run resumes, which it may write."""
    if resumed is not None and os.path.realpath(target) == os.path.realpath(resumed):
        return
    found = run_results(target, sweep)
    if found:
        shown = ", ".join(str(p.relative_to(target)) for p in found[:3]) + (", ..." if len(found) > 3 else "")
        what = "an earlier sweep's runs" if sweep else "another run's results"
        resume = "" if sweep else f", or resume that run with ckpt_path={target / 'checkpoints' / 'last.ckpt'}"
        raise UserError(
            f"{key}={target} holds {what} ({shown}): nothing was written; choose a new or empty folder "
            f"(or leave {key} out for a fresh one){resume}"
        )


def check_train_args(argv: Sequence[str]) -> None:
    """The training command line, checked before Hydra starts (and so before it creates a run
    folder): group options, keys, and every value of the composed config (:func:`validate`).

    A sweep is checked at every point (:func:`check_sweep`), so that a bad value anywhere is one
    line before the first run trains, not a failed run hours into the sweep.
    """
    check_overrides(list(argv))
    check_new_keys(argv)
    check_sweep_settings(argv)
    if not any(a.startswith("--") for a in argv):  # --cfg, --help, --info...
        check_sweep(argv)
        check_run_dir(argv)


def settings_of(config_name: str) -> tuple[str, ...]:
    """The settings a command's ``conf/<config_name>.yaml`` offers (its keys but Hydra's)."""
    return tuple(sorted(set(OmegaConf.load(CONF_DIR / f"{config_name}.yaml").keys()) - {"defaults", "hydra"}))


def check_settings(argv: Sequence[str], keys: Sequence[str], bare: str, several: str, quote: str) -> None:
    """The command line of a one-shot command (predict, serve): ``key=value`` settings among
    ``keys``, each parsable and none a sweep. What Hydra would answer with several lines is one
    :class:`UserError`: ``bare`` (a word without ``=``, formatted with ``arg``), ``several`` (a
    sweep, formatted with ``arg`` and ``key``) or ``quote`` (an unparsable value)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    after_flag = False
    for arg in argv:
        if arg.startswith("-"):
            after_flag = True  # --cfg job, -cn name, --help ...: Hydra's own options
            continue
        if "=" not in arg:
            if not after_flag:
                raise UserError(f"{arg!r} is not a key=value setting: " + bare.format(arg=arg))
            after_flag = False
            continue
        after_flag = False
        key = re.sub(r"^[+~]+", "", arg.split("=", 1)[0])
        if key not in keys and re.split(r"[./]", key)[0] != "hydra":
            raise UserError(f"unknown setting {key!r}: use {', '.join(k + '=' for k in sorted(keys))}")
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException:
            raise UserError(f"cannot parse {arg!r}: {quote}") from None
        if override.is_sweep_override():
            raise UserError(f"{arg!r} lists several values: " + several.format(arg=arg, key=key))
