"""Checks of a command line before Hydra starts (and so before it creates a run folder): what
Hydra would answer with several lines, or only after work has begun, is one
:class:`~genre_cls.errors.UserError` line here.

* the training command (:func:`check_train_args`): group options, keys added with ``+``, Hydra's
  sweep settings and modes, every run's config (:func:`genre_cls.sweeps.check_sweep`) and the
  run folder (:func:`genre_cls.runfolder.check_run_dir`);
* the one-shot commands predict and serve (:func:`check_settings`);
* Hydra's own errors as one line (:func:`hydra_error_line`).
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Sequence

from omegaconf import OmegaConf

from genre_cls.conf import CONF_DIR, EVERY_KEY, GROUPS, options
from genre_cls.errors import UserError
from genre_cls.runfolder import check_run_dir
from genre_cls.sweeps import check_sweep

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
#: Config keys that were renamed: the old name still works on the command line, with a warning.
RENAMED = {"data.feature_workers": "data.workers"}


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


def check_new_keys(argv: Sequence[str]) -> None:
    """``+key=value`` adds a key the config lacks: at the top level, where nothing reads an
    unknown key, it is a typo (``+seeed=1``), refused with one line. Hydra's own keys, config
    groups and keys below a group (checked against the group's schema) are left alone."""
    known = set(OmegaConf.load(CONF_DIR / "train.yaml").keys()) | set(GROUPS) | {"hydra"}
    for arg in argv:
        m = re.match(r"^\+{1,2}([\w]+)=", arg)
        if m and m.group(1) not in known:
            raise UserError(f"unknown key {m.group(1)!r} (added with +): nothing reads it; check its spelling ({EVERY_KEY})")


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


def renamed_keys(argv: Sequence[str]) -> list[str]:
    """``argv`` with the old names of renamed keys (:data:`RENAMED`) replaced by the new ones,
    saying so on stderr, one line each: scripts written for the old names keep working."""
    out = []
    for arg in argv:
        prefix = re.match(r"^[+~]*", arg).group(0)
        key, sep, value = arg[len(prefix):].partition("=")
        if key in RENAMED:
            print(f"warning: {key} is now {RENAMED[key]}; {key}= still works but will be removed", file=sys.stderr)
            arg = f"{prefix}{RENAMED[key]}{sep}{value}"
        out.append(arg)
    return out


def check_train_args(argv: Sequence[str]) -> None:
    """The training command line, checked before Hydra starts (and so before it creates a run
    folder): group options, keys, and every value of the composed config
    (:func:`genre_cls.settings.validate`).

    A sweep is checked at every point (:func:`genre_cls.sweeps.check_sweep`), so that a bad value
    anywhere is one line before the first run trains, not a failed run hours into the sweep.
    """
    check_overrides(list(argv))
    check_new_keys(argv)
    check_sweep_settings(argv)
    if not any(a.startswith("--") for a in argv):  # --cfg, --help, --info...
        check_sweep(argv)
        check_run_dir(argv)


def check_settings(argv: Sequence[str], keys: Sequence[str], bare: str, several: str, quote: str,
                   groups: Sequence[str] = ()) -> None:
    """The command line of a one-shot command (predict, serve, evaluate): ``key=value`` settings
    among ``keys`` (or, for the config ``groups`` it composes, ``group=option`` and ``group.key``,
    whose options and keys the config's own checks judge), each parsable and none a sweep. What
    Hydra would answer with several lines is one :class:`UserError`: ``bare`` (a word without ``=``,
    formatted with ``arg``), ``several`` (a sweep, formatted with ``arg`` and ``key``) or ``quote``
    (an unparsable value)."""
    check_overrides([a for a in argv if re.split(r"[=./]", a.lstrip("+~"))[0] in groups])
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
        if key not in keys and re.split(r"[./]", key)[0] not in ("hydra", *groups):
            raise UserError(f"unknown setting {key!r}: use {', '.join(k + '=' for k in sorted([*keys, *groups]))}")
        try:
            (override,) = parser.parse_overrides([arg])
        except OverrideParseException:
            raise UserError(f"cannot parse {arg!r}: {quote}") from None
        if override.is_sweep_override():
            raise UserError(f"{arg!r} lists several values: " + several.format(arg=arg, key=key))


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
