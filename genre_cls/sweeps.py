"""Sweep expansion: the runs a command line makes (``-m``, or an experiment whose grid sweeps) and
the config of each, so that every point of a sweep is checked before the first one trains.

Only Hydra's public API is used: its override parser (:mod:`hydra.core.override_parser`) reads
the axes, :func:`genre_cls.conf.compose` composes what config groups choose, and
:func:`apply_overrides` applies each run's values as Hydra's own composition does.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from genre_cls.conf import GROUPS, compose, options
from genre_cls.errors import UserError, one_line


def is_multirun(argv: Sequence[str]) -> bool:
    """Whether the command line asks for a sweep (``-m``)."""
    return any(a in ("-m", "--multirun") for a in argv)


def _is_hydra_arg(arg: str) -> bool:
    """Hydra's own overrides (``hydra.sweep.dir=``, ``hydra/launcher=``): not part of a run's config."""
    return arg.startswith(("hydra.", "hydra/", "+hydra", "~hydra"))


def overrides_of(argv: Sequence[str]) -> list[str]:
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


def precompose(argv: Sequence[str]) -> DictConfig:
    """Compose the config once with the command line's overrides (the first value of each
    sweep axis) so that a misspelt key is one line here rather than Hydra's report; return it."""
    args = [a for a in overrides_of(argv) if not _is_hydra_arg(a)]
    return compose(_first_point(args, is_multirun(argv)), is_multirun(argv))


def sweep_points(argv: Sequence[str]) -> list[list[str]]:
    """The overrides of each run that a command line makes, as Hydra's basic sweeper makes them: for
    a sweep (``-m``, or an experiment in MULTIRUN mode such as ``experiment=cv10``) the product of
    the axes of ``hydra.sweeper.params`` and of the command line, whose value of a key replaces the
    grid's; otherwise the one run's overrides. An axis that is not a list of values (Optuna's
    ``interval()``) keeps the config's value."""
    args = overrides_of(argv)
    task = [a for a in args if not _is_hydra_arg(a)]
    # Only -m, an experiment or hydra.mode= make a sweep: the usual single run needs no second composition.
    if not is_multirun(argv) and not any(re.match(r"^\+*(experiment|hydra\.mode)=", a) for a in args):
        return [task]
    hydra_cfg = compose(_first_point(args, True), True, hydra=True).hydra
    if not is_multirun(argv) and str(hydra_cfg.get("mode")) != "RunMode.MULTIRUN":
        return [task]
    return grid_points(hydra_cfg.sweeper.get("params"), task)


def grid_points(params, task: Sequence[str]) -> list[list[str]]:
    """The overrides of each run of a sweep whose sweeper's grid is ``params``
    (``hydra.sweeper.params``) and whose command line's run overrides are ``task``: the product of
    the axes, as Hydra's basic sweeper makes it (:func:`sweep_points`, which finds both)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException

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


def group_of(override: str) -> str | None:
    """The config group an override chooses an option of (``model=net5``: model), else ``None``."""
    key = re.sub(r"^[+~]+", "", override.split("=", 1)[0])
    return key if key in GROUPS or "/" in key else None


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Apply ``key=value``, ``+key=value``, ``++key=value`` and ``~key`` overrides to ``cfg`` in
    place, with the meaning Hydra's composition gives them (values parsed by Hydra's parser, so
    ``[1,2]``, quotes and ``${...}`` read the same). A key that does not exist, or ``+`` on one
    that does, is one :class:`UserError`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key, value = override.key_or_group, override.value()
        present = OmegaConf.select(cfg, key, throw_on_missing=False) is not None
        if override.is_delete():
            if not present:
                raise UserError(f"Could not delete from config. '{key}' does not exist.")
            parent, _, leaf = key.rpartition(".")
            with open_dict(cfg):
                del (OmegaConf.select(cfg, parent) if parent else cfg)[leaf]
        elif override.is_add() and present and not isinstance(value, (dict, list)):
            raise UserError(f"Could not append to config. An item is already at '{key}'.")
        elif override.is_add() or override.is_force_add():
            OmegaConf.update(cfg, key, value, merge=True, force_add=True)
        else:
            try:
                OmegaConf.update(cfg, key, value, merge=True)
            except Exception:  # ConfigKeyError, ConfigAttributeError: the key is not in the config
                raise UserError(f"Could not override '{key}': no such key (add it with +{override.input_line})") from None


def sweep_configs(points: list[list[str]]) -> Iterator[tuple[str, DictConfig]]:
    """``(where, config)`` of every run of a sweep's ``points`` (:func:`sweep_points`), ``where``
    naming the run and its values on the swept axes. What config groups choose (``model=net5``)
    is composed once per choice and each run's values (``lr=0.1``) are applied to a copy
    (:func:`apply_overrides`), so a grid of 120 runs costs ten compositions, not 120."""
    from omegaconf.errors import OmegaConfBaseException

    varied = [i for i in range(len(points[0])) if len({point[i] for point in points}) > 1] if points else []
    composed: dict[tuple[str, ...], DictConfig] = {}
    for number, point in enumerate(points, start=1):
        where = f"sweep run {number} of {len(points)} ({' '.join(point[i] for i in varied)})"
        choices = tuple(p for p in point if group_of(p) is not None)
        try:
            if choices not in composed:
                composed[choices] = compose(list(choices), multirun=True)
            cfg = copy.deepcopy(composed[choices])
            apply_overrides(cfg, [p for p in point if group_of(p) is None])
        except (UserError, OmegaConfBaseException) as exc:
            raise UserError(f"{where}: {one_line(exc)}") from None
        yield where, cfg


def check_sweep(argv: Sequence[str]) -> None:
    """Check the config of every run the command line makes (:func:`genre_cls.settings.validate`),
    every point of a sweep before the first one trains: the first bad one is one
    :class:`UserError` naming the run."""
    from genre_cls.settings import validate

    points = sweep_points(argv)
    if len(points) <= 1:
        cfg = precompose(argv)
        validate(cfg)
        check_search_metric(argv, [("the search", cfg)])
        return
    configs = list(sweep_configs(points))
    for where, cfg in configs:
        try:
            validate(cfg)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
    check_search_metric(argv, configs)


def check_search_metric(argv: Sequence[str], configs: list[tuple[str, DictConfig]]) -> None:
    """A search (a sweeper that optimises ``optimized_metric``, such as Optuna) needs that number from
    every trial: the best validation accuracy of a run that does not validate is none, and every
    trial would train and then fail. (A grid sweep does not use the number.)"""
    from genre_cls.data.splits import validation_left_empty
    from genre_cls.settings import validates

    if not (is_multirun(argv) or any(re.match(r"^\+*(experiment|hydra\.mode)=", a) for a in argv)):
        return
    args = overrides_of(argv)
    sweeper = compose(_first_point(args, True), True, hydra=True).hydra.sweeper.get("_target_", "")
    if "optuna" not in str(sweeper).lower():
        return
    for where, cfg in configs:
        data = cfg.get("data") or {}
        fractions = data.get("fractions") or (1, 1, 1)
        no_val = validation_left_empty(data.get("split"), fractions)
        if str(cfg.get("optimized_metric")) == "val/acc_best" and (not validates(cfg) or no_val):
            why = (f"data.fractions=[{','.join(f'{float(f):g}' for f in fractions)}] gives validation nothing, as the "
                   f"configs of mel_resnet and the transfer models do" if validates(cfg)
                   else "trainer.limit_val_batches=0 or check_val_every_n_epoch > epochs")
            raise UserError(
                f"{where}: optimized_metric=val/acc_best is the best validation accuracy, but this run does not "
                f"validate ({why}): every trial would train and have no number to return; validate (e.g. "
                "data.fractions=[0.7,0.1,0.2]), or optimise another metric"
            )
