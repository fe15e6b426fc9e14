"""A run folder as the report reads it, every field checked: ``.hydra/config.yaml`` and
``overrides.yaml``, ``metrics.json`` and ``metrics_epoch<E>.json``, ``failed.json``,
``predictions.csv`` and the TensorBoard scalars.

A run whose files are malformed (a string where a number belongs, a missing key, bad JSON or
YAML, a confusion matrix that is not classes x classes, a file far larger than a run writes) is
``unreadable``, with the file and the reason, and never stops the others from being read. The
caps below bound the work an absurd file can cost.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from genre_cls.conf import optim_name
from genre_cls.runfolder import RUNNING, run_in_use
from genre_cls.errors import UserError
from genre_cls.metrics import METRIC_NAMES

_EPOCH_FILE = re.compile(r"^metrics_epoch(\d+)\.json$")
# Keys that set repeated runs of one configuration apart: runs that differ only in these form one row.
REPEAT_KEYS = ("seed", "data.seed", "data.fold")
# Keys that say where a run writes or resumes from, not what it is.
PLACE_KEYS = ("output_dir", "ckpt_path")
# Overrides that the table shows in columns of their own (not repeated under "setting").
SHOWN_OVERRIDES = ("model", "optim", "lr", "epochs", "seed", "data.fold", "data.split", "test_at")
# How many config keys a row's setting names at most, where only the config tells two configurations apart.
MAX_SHOWN_KEYS = 4
_ABSENT = "(absent)"

# Caps on what one run's files may cost to read: real files are a few KB (metrics, config) and a
# few MB (predictions of GTZAN's 10,000 test segments at most, about 1.5 MB); fma_large's test
# split (about 10,000 tracks, 10 chunks each, 161 classes) writes about 150 MB.
MAX_JSON_BYTES = 1 << 20
MAX_YAML_BYTES = 256 << 10
MAX_PREDICTIONS_BYTES = 512 << 20
MAX_CONFIG_NODES = 5000
MAX_EVENTS_BYTES = 256 << 20
MAX_TEXT = 200
MAX_SNAPSHOTS = 1000
MAX_WHOLE = 10**9  # epochs, seeds, folds: anything larger is not a run's
MAX_CLASSES = 1000  # fma_large has 161 genres; a confusion matrix of 1000 x 1000 is still cheap to check
# The data set of a run that does not name one (runs from before data=folders and data=fma).
GTZAN = "gtzan"


class ReportError(UserError):
    """A problem with the directory the user gave; reported as one line."""


class RunFileError(Exception):
    """A run's file that cannot be used (malformed, absurd); the run is listed as unreadable."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path, self.reason = path, reason


def _read_text(path: Path, limit: int) -> str | None:
    """A run file's text, ``None`` when absent; :class:`RunFileError` when it is too large or not text."""
    if not path.exists():
        return None
    if not path.is_file():
        raise RunFileError(path, "is not a regular file")
    size = path.stat().st_size
    if size > limit:
        raise RunFileError(path, f"{size:,} bytes, more than the {limit:,} such a file can hold")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise RunFileError(path, "is not UTF-8 text") from None
    except OSError as exc:
        raise RunFileError(path, f"cannot be read ({exc.strerror or exc})") from None


def _read_json(path: Path) -> dict | None:
    """A JSON object from a run file (``None`` when absent)."""
    text = _read_text(path, MAX_JSON_BYTES)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RunFileError(path, f"not valid JSON ({getattr(exc, 'msg', exc)})") from None
    except RecursionError:
        raise RunFileError(path, "nested too deeply") from None
    if not isinstance(data, dict):
        raise RunFileError(path, f"holds a JSON {type(data).__name__}, not an object")
    return data


def _read_yaml(path: Path) -> Any:
    text = _read_text(path, MAX_YAML_BYTES)
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        raise RunFileError(path, f"not valid YAML ({first})") from None
    except RecursionError:
        raise RunFileError(path, "nested too deeply") from None


def flatten_config(cfg: dict, path: Path) -> dict[str, Any]:
    """A config as ``{"data.split": "track", ...}`` (lists as their JSON text); at most
    :data:`MAX_CONFIG_NODES` entries, so a YAML alias bomb costs nothing."""
    flat: dict[str, Any] = {}
    budget = [MAX_CONFIG_NODES]

    def walk(node: Any, prefix: str, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0 or depth > 20:
            raise RunFileError(path, "nested too deeply or too large for a training config")
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.", depth + 1)
        elif isinstance(node, list):
            for item in node:
                walk(item, prefix, depth + 1)  # counted, so a list of aliases cannot explode
            flat[prefix[:-1]] = json.dumps(node, default=str, sort_keys=True)
        else:
            flat[prefix[:-1]] = node

    walk(cfg, "", 0)
    return flat


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (an int too large for a float is not: ``math.isfinite`` would raise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < 1e300 if isinstance(value, int) else math.isfinite(value)


def _check(ok: bool, path: Path, key: str, value: Any, wanted: str) -> None:
    if not ok:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise RunFileError(path, f"{key} must be {wanted}, got {shown}")


def _fraction(data: dict, key: str, path: Path) -> float:
    if key not in data:
        raise RunFileError(path, f"missing key {key!r}")
    value = data[key]
    _check(_is_number(value) and 0 <= value <= 1, path, key, value, "a number in [0, 1]")
    return float(value)


def _matrix(value: Any, n: int, path: Path, key: str) -> list[list[int]]:
    """A confusion matrix: ``n`` x ``n`` counts; the shape is checked before any cell is read."""
    _check(isinstance(value, list) and len(value) == n, path, key, f"<{len(value) if isinstance(value, list) else type(value).__name__}>",
           f"a {n} x {n} matrix")
    for row in value:
        _check(isinstance(row, list) and len(row) == n, path, key, "<a bad row>", f"a {n} x {n} matrix")
        _check(all(_is_whole(c) and c >= 0 for c in row), path, key, "<a bad cell>", "counts (whole numbers >= 0)")
    return value


def _optional(data: dict, key: str, path: Path, ok, wanted: str) -> Any:
    value = data.get(key)
    _check(value is None or ok(value), path, key, value, wanted)
    return value


def validate_metrics(data: dict, path: Path) -> dict[str, Any]:
    """The fields the report reads from a ``metrics*.json``, each checked; :class:`RunFileError`
    names the first bad one. Returns only the checked fields."""
    clean: dict[str, Any] = {}
    classes = data.get("classes")
    _check(isinstance(classes, list) and 2 <= len(classes) <= MAX_CLASSES
           and all(isinstance(c, str) and 0 < len(c) <= MAX_TEXT for c in classes) and len(set(classes)) == len(classes),
           path, "classes", classes if not isinstance(classes, list) else f"<{len(classes)} entries>",
           f"a list of 2 to {MAX_CLASSES} distinct class names")
    clean["classes"] = classes
    dataset = _optional(data, "dataset", path, lambda v: isinstance(v, str) and 0 < len(v) <= MAX_TEXT, "a data set name")
    clean["dataset"] = dataset or GTZAN
    # An evaluation of a checkpoint on a collection (python -m genre_cls.evaluate): the data set it was trained on.
    trained_on = _optional(data, "trained_on", path, lambda v: isinstance(v, str) and 0 < len(v) <= MAX_TEXT, "a data set name")
    clean["trained_on"] = trained_on or clean["dataset"]
    for prefix in ("test", "test_track"):
        if prefix == "test_track" and f"{prefix}/acc" not in data:
            continue
        for name in METRIC_NAMES:
            clean[f"{prefix}/{name}"] = _fraction(data, f"{prefix}/{name}", path)
        for name in ("acc", "f1_weighted"):
            key = f"{prefix}/{name}_ci95"
            value = _optional(data, key, path, lambda v: isinstance(v, list) and len(v) == 2
                              and all(_is_number(x) and 0 <= x <= 1 for x in v) and v[0] <= v[1],
                              "[low, high] with 0 <= low <= high <= 1")
            clean[key] = value
        for genre in classes:
            key = f"{prefix}/f1/{genre}"
            clean[key] = _optional(data, key, path, lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
    if "confusion_matrix" not in data:
        raise RunFileError(path, "missing key 'confusion_matrix'")
    clean["confusion_matrix"] = _matrix(data["confusion_matrix"], len(classes), path, "confusion_matrix")
    for key, wanted in (("model", "a model name"), ("optim", "an optimiser name")):
        value = data.get(key)
        _check(isinstance(value, str) and 0 < len(value) <= MAX_TEXT, path, key, value, wanted)
        clean[key] = value
    lr = data.get("lr")
    _check(_is_number(lr) and lr > 0, path, "lr", lr, "a number > 0")
    clean["lr"] = float(lr)
    for key, low, required in (("epochs", 1, True), ("epochs_trained", 0, True), ("best_epoch", 1, False),
                               ("seed", None, False), ("folds", 2, False), ("fold", 0, False)):
        value = data.get(key)
        if value is None and not required:
            clean[key] = None
            continue
        _check(_is_whole(value) and (low is None or value >= low) and abs(value) <= MAX_WHOLE, path, key, value,
               "a whole number" + (f" in {low}..{MAX_WHOLE:,}" if low is not None else f" within ±{MAX_WHOLE:,}"))
        clean[key] = value
    clean["split"] = _optional(data, "split", path, lambda v: isinstance(v, str) and len(v) <= MAX_TEXT, "a split name")
    # Which epoch was kept and tested (runs from before model.keep_epoch kept the best).
    clean["kept"] = _optional(data, "kept", path, lambda v: v in ("best", "last"), "best or last") or "best"
    return clean


def _config_fields(cfg: dict) -> dict[str, Any]:
    """What the table needs from a run's config, each checked; a value a failed run may hold
    (``lr=abc``) becomes ``None``, since the run's own validation rejected it."""
    def pick(node: Any, *keys: str) -> Any:
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    model, target = pick(cfg, "model", "name"), pick(cfg, "optim", "_target_")
    lr, epochs, test_at = cfg.get("lr"), cfg.get("epochs"), cfg.get("test_at")
    return {
        "model": model if isinstance(model, str) and len(model) <= MAX_TEXT else None,
        "optim": optim_name(target) if isinstance(target, str) and len(target) <= MAX_TEXT else None,
        "lr": float(lr) if _is_number(lr) else math.nan,
        "epochs": epochs if _is_whole(epochs) else 0,
        "test_at": sorted({e for e in test_at if _is_whole(e)}) if isinstance(test_at, list) and len(test_at) <= 100 else [],
        "seed": cfg.get("seed") if _is_whole(cfg.get("seed")) else None,
        "split": pick(cfg, "data", "split") if isinstance(pick(cfg, "data", "split"), str) else None,
        "folds": pick(cfg, "data", "folds") if _is_whole(pick(cfg, "data", "folds")) else None,
        "data_seed": _split_seed(cfg),
    } | {"fold": pick(cfg, "data", "fold") if _is_whole(pick(cfg, "data", "fold")) and _is_whole(pick(cfg, "data", "folds")) else None}


def _split_seed(cfg: dict) -> int | None:
    """The seed that drew the run's split (``data.seed``; by default the interpolation
    ``${seed}``, which the saved config keeps unresolved)."""
    value = cfg.get("data", {}).get("seed") if isinstance(cfg.get("data"), dict) else None
    if value == "${seed}":
        value = cfg.get("seed")
    return value if _is_whole(value) else None


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every run directory under ``root`` (``root`` itself when it is one), sorted by path."""
    root = Path(root)
    found = {p.parent.parent for p in root.rglob("config.yaml") if p.parent.name == ".hydra"}
    if (root / ".hydra" / "config.yaml").is_file():
        found.add(root)
    return sorted(found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])


def _run_name(run_dir: Path, root: str | Path | None) -> str:
    try:
        return str(run_dir.relative_to(root)) if root is not None else run_dir.name
    except ValueError:
        return str(run_dir)


def read_run(run_dir: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """One run: its settings, status (done, failed, incomplete, unreadable) and every metrics file it has.

    ``results`` maps an epochs value to that evaluation's checked metrics: ``metrics.json``
    under the run's ``epochs``, ``metrics_epoch<E>.json`` under ``E``. A malformed file makes
    the run ``unreadable``, with ``error`` naming the file and the reason.
    """
    run_dir = Path(run_dir)
    base = {"dir": run_dir, "name": _run_name(run_dir, root), "overrides": [], "results": {}, "config": {},
            "group": None, "model": None, "optim": None, "lr": math.nan, "epochs": 0, "test_at": [],
            "seed": None, "data_seed": None, "split": None, "folds": None, "fold": None, "dataset": GTZAN, "classes": None}
    try:
        return {**base, **_read_run_files(run_dir)}
    except RunFileError as exc:
        return {**base, "status": "unreadable", "error": str(exc)}


def _read_run_files(run_dir: Path) -> dict[str, Any]:
    config_file = run_dir / ".hydra" / "config.yaml"
    cfg = _read_yaml(config_file)
    if not isinstance(cfg, dict):
        raise RunFileError(config_file, f"holds a {type(cfg).__name__}, not a mapping of settings")
    flat = flatten_config(cfg, config_file)
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = _read_yaml(overrides_file) or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and len(o) <= 1000 for o in overrides):
        raise RunFileError(overrides_file, "must be a list of override strings")
    fields = _config_fields(cfg)
    results: dict[int, dict] = {}
    snapshots = sorted(run_dir.glob("metrics_epoch*.json"))
    if len(snapshots) > MAX_SNAPSHOTS:
        raise RunFileError(snapshots[0], f"one of {len(snapshots):,} metrics_epoch*.json files, more than the "
                                         f"{MAX_SNAPSHOTS} test_at values a run may have")
    for path in snapshots:
        m = _EPOCH_FILE.match(path.name)
        data = _read_json(path) if m else None
        if data is not None:
            results[int(m.group(1))] = validate_metrics(data, path)
    final = _read_json(run_dir / "metrics.json")
    if final is not None:
        final = validate_metrics(final, run_dir / "metrics.json")
        results[final["epochs"]] = final
    failed = _read_json(run_dir / "failed.json")
    if failed is not None and not isinstance(failed.get("error"), str):
        raise RunFileError(run_dir / "failed.json", "must hold an 'error' message")
    interrupted = _read_json(run_dir / "interrupted.json") if final is None and failed is None else None
    resume = interrupted.get("resume") if isinstance(interrupted, dict) else None
    status = (
        "failed" if failed is not None
        else "done" if final is not None
        else "interrupted" if interrupted is not None
        else "incomplete"
    )
    # The data set: what its metrics say, else its config (data.dataset), else GTZAN (older runs).
    evaluated = final or (results[max(results)] if results else {})
    dataset = evaluated.get("dataset") or (flat.get("data.dataset") if isinstance(flat.get("data.dataset"), str) else None)
    dataset = (dataset or GTZAN)[:MAX_TEXT]
    group = {k: v for k, v in flat.items() if k not in REPEAT_KEYS + PLACE_KEYS} | {"(dataset)": dataset}
    # An unfinished run whose folder still names its process (genre_cls.train's .running): still
    # running while that process lives, else killed without a word (kill -9, out of memory).
    holder = run_in_use(run_dir) if status == "incomplete" and (run_dir / RUNNING).is_file() else None
    return {
        "status": status,
        "running": holder,
        "killed": status == "incomplete" and holder is None and (run_dir / RUNNING).is_file(),
        "error": failed["error"][:1000] if failed is not None else None,
        "resume": resume[:1000] if isinstance(resume, str) else None,
        "overrides": overrides,
        "config": flat,
        # What makes this configuration: the whole config but the seed, the fold and the run's place.
        "group": json.dumps(group, sort_keys=True, default=str),
        **fields,
        "model": (final or {}).get("model", fields["model"]),
        "optim": (final or {}).get("optim", fields["optim"]),
        "lr": (final or {}).get("lr", fields["lr"]),
        "epochs": (final or {}).get("epochs", fields["epochs"]),
        "test_at": [e for e in fields["test_at"] if 0 < e <= (final or {}).get("epochs", fields["epochs"])],
        "results": results,
        "dataset": dataset,
        "classes": evaluated.get("classes"),
    }


def collect_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every run under ``root`` (see :func:`read_run`); raises :class:`ReportError` if none."""
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory: give a sweep folder such as outputs/multirun/<date>/<time>")
    runs = [read_run(d, root) for d in find_run_dirs(root)]
    if not runs:
        raise ReportError(
            f"no runs under {root} (a run is a folder with .hydra/config.yaml): give a sweep folder "
            "such as outputs/multirun/<date>/<time> or one run's folder"
        )
    _add_settings(runs)
    return runs


def _add_settings(runs: list[dict[str, Any]]) -> None:
    """``run["setting"]``: the run's own overrides that no column shows and not every run shares
    (``batch_size=16``), so that two configurations never look alike in the table. Configurations
    that would still look alike (a value set by an experiment preset or a changed default, not on
    the command line) get the config keys in which they differ, ``key=value`` (at most
    :data:`MAX_SHOWN_KEYS`)."""
    readable = [r for r in runs if r["status"] != "unreadable"]
    common = set.intersection(*(set(r["overrides"]) for r in readable)) if readable else set()
    for run in runs:
        run["own_overrides"] = [o for o in run["overrides"] if o not in common]
        own = [o for o in run["own_overrides"] if o.split("=", 1)[0].lstrip("+~") not in SHOWN_OVERRIDES + REPEAT_KEYS]
        run["setting"] = " ".join(own) or None
    alike: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
    for run in readable:
        look = tuple(str(run[k]) for k in ("dataset", "model", "optim", "lr", "split", "setting"))
        alike.setdefault(look, {}).setdefault(run["group"], []).append(run)
    for groups in alike.values():
        if len(groups) < 2:
            continue
        configs = [members[0]["config"] for members in groups.values()]
        keys = sorted(k for k in set().union(*configs) if k not in REPEAT_KEYS + PLACE_KEYS
                      and len({json.dumps(c.get(k, _ABSENT), default=str) for c in configs}) > 1)
        for config, members in zip(configs, groups.values()):
            shown = [f"{k}={_config_text(config.get(k, _ABSENT))}" for k in keys[:MAX_SHOWN_KEYS]]
            shown += [f"(+{len(keys) - MAX_SHOWN_KEYS} more keys)"] if len(keys) > MAX_SHOWN_KEYS else []
            for run in members:
                run["setting"] = " ".join([run["setting"] or "", *shown]).strip()


def _config_text(value: Any) -> str:
    """A flattened config value as the command line writes it (``null``, ``true``, ``0.001``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_predictions(path: Path, classes: list[str]) -> dict[str, tuple[int, np.ndarray]]:
    """``predictions.csv`` of a run with these ``classes`` (its ``metrics.json``'s) as
    ``{track id: (true class, mean probabilities over its rows)}``: a segment model's segments
    vote per track; every field is checked, the genres against ``classes``."""
    text = _read_text(path, MAX_PREDICTIONS_BYTES)
    if text is None:
        raise RunFileError(path, "is missing (runs written before predictions.csv existed cannot be paired)")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    expected = ["track", "segment", "true", "predicted", *(f"p_{c}" for c in classes)]
    if header != expected:
        shown = ",".join(expected[:5]) + (",..." if len(expected) > 5 else "")
        raise RunFileError(path, f"its header must be {shown} (a p_ column per class of metrics.json, in its order)")
    index = {c: i for i, c in enumerate(classes)}
    sums: dict[str, list] = {}
    end = reader.line_num
    for row in reader:
        number, end = end + 1, reader.line_num  # the row's first line: a quoted field may span several
        if len(row) != len(expected):
            raise RunFileError(path, f"line {number} has {len(row)} fields, not {len(expected)}")
        track, true, predicted = row[0], row[2], row[3]
        if not track or len(track) > MAX_TEXT:
            raise RunFileError(path, f"line {number}: a bad track id")
        for what, genre in (("true", true), ("predicted", predicted)):
            if genre not in index:
                shown = genre if len(genre) <= 40 else genre[:37] + "..."
                raise RunFileError(path, f"line {number}: {what} genre {shown!r} is not one of the run's classes")
        try:
            probs = np.array([float(v) for v in row[4:]])
        except ValueError:
            raise RunFileError(path, f"line {number}: a probability that is not a number") from None
        if not np.all(np.isfinite(probs)):
            raise RunFileError(path, f"line {number}: a probability that is not finite")
        entry = sums.setdefault(track, [index[true], np.zeros(len(classes)), 0])
        if entry[0] != index[true]:
            raise RunFileError(path, f"line {number}: track {track} has two true genres")
        entry[1] += probs
        entry[2] += 1
    if not sums:
        raise RunFileError(path, "holds no predictions")
    return {t: (y, p / n) for t, (y, p, n) in sums.items()}


def read_curves(
    run_dir: str | Path, tags: tuple[str, ...] = ("val/acc", "train/loss")
) -> dict[str, tuple[list[int], list[float]]]:
    """Per-epoch ``(epochs, values)`` of scalar ``tags`` from a run's TensorBoard event files
    (none when they cannot be read: the curves are a figure, not a reason to stop the report)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list(Path(run_dir).glob("events.out.tfevents.*"))
    if sum(p.stat().st_size for p in events if p.is_file()) > MAX_EVENTS_BYTES:
        return {}  # far beyond what a run logs: not worth reading for a figure
    try:
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        available = set(acc.Tags().get("scalars", []))
    except Exception:  # a damaged event file
        return {}
    # Lightning logs ``epoch`` at the step of every epoch-level value: map steps to epochs.
    step_epoch = {e.step: int(e.value) for e in acc.Scalars("epoch")} if "epoch" in available else {}
    curves = {}
    for tag in tags:
        if tag not in available:
            continue
        by_epoch: dict[int, float] = {}
        for i, event in enumerate(acc.Scalars(tag)):
            by_epoch[step_epoch.get(event.step, i) + 1] = event.value  # a resumed epoch: keep the last
        epochs = sorted(by_epoch)
        curves[tag] = (epochs, [by_epoch[e] for e in epochs])
    return curves
