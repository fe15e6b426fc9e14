"""Run folders: which folder a run (or a sweep) writes, the claim a running process keeps there,
and what a run leaves behind when it fails.

* Where: ``conf/train.yaml`` names ``hydra.run.dir`` through the resolvers registered here
  (:func:`run_dir`, :func:`fresh_dir`, :func:`resume_subdir`): a new run gets a folder no other
  run uses; a resume (``ckpt_path=<run>/checkpoints/last.ckpt``) writes into its own run's folder.
* Whether: :func:`check_run_dir` refuses, before Hydra creates anything, a folder that cannot be
  written or that holds another run's results (:data:`RUN_FILES`).
* Who: a running process marks its folder with :data:`RUNNING` (its pid and host,
  :func:`claim_run_dir`), so that another run or resume of the same folder is refused while it
  runs (:func:`check_not_in_use`); a mark left by a process that is gone is taken over.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from genre_cls.data.cache import atomic_write
from genre_cls.data.processes import process_alive
from genre_cls.errors import UserError, exit_with

#: What a run writes into its folder (and a sweep into its own): a folder holding any of these
#: holds a run's results, or files that a run would overwrite. (Hydra's log is only appended to.)
RUN_FILES = (
    ".hydra", "checkpoints", "cgan", "metrics.json", "failed.json", "interrupted.json", "splits.json",
    "data_summary.json", "predictions.csv", "confusion_matrix.png", "hparams.yaml", "multirun.yaml",
    "optimization_results.yaml", "events.out.tfevents.*", "metrics_epoch*.json", "predictions_epoch*.csv",
)
#: The file a run keeps in its folder while it runs: its process id and host.
RUNNING = ".running"


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically: a reader never sees a half-written metrics file."""
    atomic_write(path, lambda fh: fh.write((json.dumps(obj, indent=2) + "\n").encode()))


def rank_zero() -> bool:
    """Whether this is the first (or only) process of a run: the other processes of a
    multi-device run (Lightning's DDP children, SLURM tasks) start the same command in the same
    run folder, which the first one has already checked and claimed."""
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def checkpoint_run_dir(ckpt_path: str | None) -> Path | None:
    """The run folder that a ``ckpt_path`` in ``<run>/checkpoints/`` belongs to (absolute, symlinks
    not followed), or ``None`` for a checkpoint outside a run's ``checkpoints/`` folder."""
    if not ckpt_path:
        return None
    path = Path(os.path.abspath(os.path.expanduser(str(ckpt_path))))
    return path.parent.parent if path.parent.name == "checkpoints" else None


# --------------------------------------------------------------------------- who writes a folder


def run_in_use(folder: Path) -> str | None:
    """Who is writing ``folder`` now (``process 123 on host x``), or ``None`` when nobody is: no
    :data:`RUNNING` file, or one left by a process of this host that no longer runs."""
    try:
        holder = json.loads((folder / RUNNING).read_text())
        pid, host = int(holder["pid"]), str(holder["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host == socket.gethostname() and (pid == os.getpid() or not process_alive(pid)):
        return None
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


def claim_run_dir(out: Path) -> bool:
    """Mark ``out`` as written by this process (:data:`RUNNING`: its pid and host) for as long as
    it runs, so that another run or resume started meanwhile in the same folder is refused (a
    :class:`UserError` here). The mark is made with an exclusive create: of two processes that
    claim one folder at the same moment, one gets it. Returns True."""
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


# --------------------------------------------------------------------------- whether a run may write there


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


def check_not_a_run(target: Path, key: str, resumed: Path | None, sweep: bool = False) -> None:
    """Refuse to write a run (or a sweep) into ``target`` when it holds another run's results;
    ``resumed`` is the run folder of the checkpoint this run resumes, which it may write."""
    if resumed is not None and os.path.realpath(target) == os.path.realpath(resumed):
        return
    found = run_results(target, sweep)
    if found:
        shown = ", ".join(str(p.relative_to(target)) for p in found[:3]) + (", ..." if len(found) > 3 else "")
        what = "an earlier sweep's runs" if sweep else "another run's results"
        last = target / "checkpoints" / "last.ckpt"
        resume = f", or resume that run with ckpt_path={last}" if not sweep and last.is_file() else ""
        raise UserError(
            f"{key}={target} holds {what} ({shown}): nothing was written; choose a new or empty folder "
            f"(or leave {key} out for a fresh one){resume}"
        )


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
        return  # an interpolation only Hydra resolves (resume_subdir checks the resolved folder)
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


# --------------------------------------------------------------------------- where Hydra writes (resolvers)


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
    whose folder (given as an interpolation that :func:`check_run_dir` could not resolve) holds
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


def discard_resume_config(ckpt_path: str | None) -> None:
    """Remove the config Hydra saved in this process for a resume (``.hydra/resume-<date>_<time>/``,
    :func:`resume_subdir`) when the resume was refused before it changed anything: the run's folder
    is then left as it was."""
    run = resume_dir(ckpt_path, "")
    subdir = _RESUME_SUBDIRS.get(run) if run else None
    if subdir is not None:
        shutil.rmtree(Path(run) / subdir, ignore_errors=True)


def _output_dir() -> str | None:
    """The folder of a single run that Hydra is starting (None in a sweep or outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        hydra_cfg = HydraConfig.get()
    except ValueError:
        return None
    return str(hydra_cfg.runtime.output_dir) if hydra_cfg.mode == RunMode.RUN else None


# Plain dicts, not functools.lru_cache: launchers (joblib, submitit) pickle the resolvers.
_RESUME_SUBDIRS: dict[str, str] = {}
_FRESH_DIRS: dict[str, str] = {}
_CHECKED_DIRS: set[str] = set()


# The resolvers conf/train.yaml's hydra: section names, known once this module is imported.
OmegaConf.register_new_resolver("resume_dir", resume_dir, replace=True)
OmegaConf.register_new_resolver("run_dir", run_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("fresh_dir", fresh_dir, use_cache=True, replace=True)
OmegaConf.register_new_resolver("resume_subdir", resume_subdir, replace=True)


# --------------------------------------------------------------------------- after a failure


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


def record_failure(cfg: Any, exc: BaseException) -> None:
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
