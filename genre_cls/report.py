"""The paper's Table 2 from a sweep: ``python -m genre_cls.report MULTIRUN_DIR [--out DIR] [--compare A B]``.

Every run under the directory (a folder with ``.hydra/config.yaml``; a single run directory
works too) gives one row per epochs value it answers: ``metrics.json`` for its ``epochs`` and
``metrics_epoch<E>.json`` for each ``test_at`` value. Runs that differ only in ``seed`` and/or
``data.fold`` form one configuration: its row is the mean ± std over them, n, and a 95%
interval (Student's t over the runs when n >= 2, the run's bootstrap interval over test tracks
when n = 1), beside the paper's numbers (SPEC section 7), marked inside or outside it.
Failed runs (``failed.json``) and runs without metrics yet (still running or killed) are
listed, not dropped, so a partial sweep can be reported while it runs. A run whose files are
malformed is listed as unreadable with the file and the reason; the others are still reported.

Writes ``report.md``, ``report.csv``, ``accuracy_grid.png``, ``training_curves.png`` and
``best_confusion_matrix.png``. ``--compare A B`` adds a paired comparison of two
configurations on the same test tracks (:func:`compare`). Reading and checking a run's files is
:mod:`genre_cls.runs`. The functions (:func:`collect_runs`, :func:`build_table`,
:func:`aggregate`, the figure builders) are importable for notebooks.
"""

from __future__ import annotations

import argparse
import csv
import math
import tempfile
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from genre_cls.errors import exit_with, printable, user_errors
from genre_cls.metrics import bootstrap_mean_ci, mcnemar, paired_bootstrap_ci, sign_flip_test, t_interval, welch_interval
from genre_cls.paper import PAPER_TABLE2, paper_row
from genre_cls.plots import accuracy_grid_figure, confusion_figure, save_figure, training_curves_figure

# Reading runs is genre_cls.runs' job; its functions stay importable from here for notebooks.
from genre_cls.runs import GTZAN
from genre_cls.runs import (  # noqa: F401
    ReportError,
    RunFileError,
    collect_runs,
    find_run_dirs,
    read_curves,
    read_predictions,
    read_run,
    validate_metrics,
)

# -- the table -----------------------------------------------------------------------------------

# Table columns: (key, heading, metrics.json key); values in %.
METRIC_COLUMNS = (
    ("acc", "acc", "test/acc"),
    ("precision", "prec", "test/precision_weighted"),
    ("recall", "rec", "test/recall_weighted"),
    ("f1", "F1", "test/f1_weighted"),
    ("f1_macro", "F1 macro", "test/f1_macro"),
    ("track_acc", "track acc", "test_track/acc"),
    ("track_f1", "track F1", "test_track/f1_weighted"),
)
# Columns with a 95% interval: (key, heading, metrics.json key of the run's bootstrap interval).
INTERVAL_COLUMNS = (
    ("acc_ci", "acc 95% CI", "test/acc_ci95"),
    ("f1_ci", "F1 95% CI", "test/f1_weighted_ci95"),
    ("track_acc_ci", "track acc 95% CI", "test_track/acc_ci95"),
    ("track_f1_ci", "track F1 95% CI", "test_track/f1_weighted_ci95"),
)
CI_KEYS = {c[0] for c in INTERVAL_COLUMNS}
PAPER_COLUMNS = (
    ("paper_acc", "paper acc", "acc"),
    ("paper_precision", "paper prec", "precision"),
    ("paper_recall", "paper rec", "recall"),
    ("paper_f1", "paper F1", "f1"),
)
CSV_COLUMNS = (
    ["kind", "dataset", "trained_on", "model", "epochs", "optim", "lr", "n"]
    + [c[0] for c in METRIC_COLUMNS]
    + [f"{k}_std" for k in ("acc", "f1", "track_acc", "track_f1")]
    + [f"{c[0]}_{end}" for c in INTERVAL_COLUMNS for end in ("low", "high")]
    + ["paper"]
    + [c[0] for c in PAPER_COLUMNS]
    + ["paper_acc_inside", "paper_f1_inside"]
    + ["epochs_trained", "best_epoch", "kept", "seed", "folds", "fold", "split", "setting", "run"]
)


def _evaluation_for(run: dict[str, Any], epochs: int) -> dict | None:
    """The metrics answering "best model within ``epochs`` epochs" for a run, if known yet."""
    if epochs in run["results"]:
        return run["results"][epochs]
    final = run["results"].get(run["epochs"])
    # A run that stopped early before ``epochs`` has no snapshot there: its final best answers.
    if final is not None and final["epochs_trained"] <= epochs:
        return final
    return None


def _pct(value: Any) -> float | None:
    return None if value is None else 100.0 * float(value)


def build_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 2 rows: one per run and epochs value it answers, values in %, beside the paper's.

    Each row also carries its run's bootstrap intervals (``acc_ci`` etc., ``[low, high]`` in %),
    per-genre F1 (``genre_f1``) and ``group``, what :func:`aggregate` pools over seeds and folds.
    Grouped by data set (GTZAN first), then sorted like the paper: by optimiser, model, epochs,
    then learning rate (largest first).
    """
    rows = []
    for run in runs:
        if run["status"] == "unreadable":
            continue
        for epochs in sorted(set(run["test_at"]) | {run["epochs"]} | set(run["results"])):
            ev = _evaluation_for(run, epochs)
            if ev is None:
                continue
            row: dict[str, Any] = {"kind": "run", "dataset": run["dataset"], "trained_on": ev["trained_on"],
                                   "model": ev["model"], "epochs": epochs, "optim": ev["optim"], "lr": ev["lr"], "n": 1}
            row.update({key: _pct(ev.get(src)) for key, _, src in METRIC_COLUMNS})
            row.update({key: (None if ev.get(src) is None else [100.0 * v for v in ev[src]])
                        for key, _, src in INTERVAL_COLUMNS})
            # The paper's numbers are GTZAN's: no other data set's run is compared with them.
            paper = paper_row(row["model"], row["optim"], epochs, row["lr"]) if run["dataset"] == GTZAN else None
            row["paper"] = paper.label if paper else None
            row.update({key: (getattr(paper, attr) if paper else None) for key, _, attr in PAPER_COLUMNS})
            _mark_paper(row)
            f1 = {g: ev.get(f"test/f1/{g}") for g in ev["classes"]}
            row.update(
                epochs_trained=ev["epochs_trained"],
                best_epoch=ev["best_epoch"],
                kept=ev["kept"],
                seed=ev["seed"] if ev["seed"] is not None else run["seed"],
                folds=ev["folds"] if ev["folds"] is not None else run["folds"],
                # A fold means something only with folds (data.fold is 0 by default).
                fold=(ev["fold"] if ev["folds"] is not None else run["fold"]),
                split=ev["split"] or run["split"],
                setting=run["setting"],
                run=run["name"],
                runs=[run["name"]],
                group=(run["group"], epochs),
                confusion_matrix=ev["confusion_matrix"],
                classes=ev["classes"],
                genre_f1=None if None in f1.values() else {g: 100.0 * v for g, v in f1.items()},
            )
            rows.append(row)
    order = {"adam": 0, "rmsprop": 1}
    rows.sort(key=lambda r: (r["dataset"] != GTZAN, r["dataset"], order.get(r["optim"], 2), str(r["model"]), r["epochs"],
                             -r["lr"], str(r["split"]),
                             str(r["setting"]), str(r["seed"]), str(r["fold"]), r["run"]))
    return rows


def _mark_paper(row: dict[str, Any]) -> None:
    """``paper_acc_inside`` / ``paper_f1_inside``: whether the paper's number lies in the row's interval."""
    for metric in ("acc", "f1"):
        paper, ci = row.get(f"paper_{metric}"), row.get(f"{metric}_ci")
        row[f"paper_{metric}_inside"] = None if paper is None or ci is None else bool(ci[0] <= paper <= ci[1])


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: the rows of :func:`build_table` that differ only in seed and/or
    fold, pooled.

    Each metric is the mean over the runs, with ``<metric>_std`` (sample standard deviation) and
    ``n``; the intervals (``acc_ci`` etc.) are Student-t intervals of the mean when n >= 2 and the
    run's own bootstrap interval over test tracks when n = 1. The confusion matrix is the sum of
    the runs' matrices; ``genre_f1`` maps a genre to (mean, std) of its F1 over the runs.
    """
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    out = []
    for members in groups.values():
        first = members[0]
        agg = {k: first[k] for k in ("dataset", "trained_on", "model", "epochs", "optim", "lr", "split", "setting", "folds", "group",
                                     "classes")}
        agg.update({k: first[k] for k, _, _ in PAPER_COLUMNS}, paper=first["paper"], kind="mean", n=len(members))
        agg["runs"] = [m["run"] for m in members]
        agg["run"] = "; ".join(agg["runs"])
        agg["seed"] = None if len(members) > 1 else first["seed"]
        agg["fold"] = None if len(members) > 1 else first["fold"]
        agg["values"] = {}
        for key, _, _ in METRIC_COLUMNS:
            values = [m[key] for m in members]
            if None in values:
                agg[key] = None
                continue
            mean, std, n, ci = t_interval(values)
            agg[key], agg[f"{key}_std"], agg["values"][key] = mean, (std if n > 1 else None), values
            if f"{key}_ci" in CI_KEYS:  # a percentage: the t-interval is cut to [0, 100]
                agg[f"{key}_ci"] = [max(ci[0], 0.0), min(ci[1], 100.0)] if n > 1 else first[f"{key}_ci"]
        _mark_paper(agg)
        trained = sorted({m["epochs_trained"] for m in members})
        agg["epochs_trained"] = trained[0] if len(trained) == 1 else (trained[0], trained[-1])
        agg["best_epoch"] = first["best_epoch"] if len(members) == 1 else None
        agg["kept"] = "/".join(sorted({m["kept"] for m in members}))
        matrices = [m["confusion_matrix"] for m in members]
        agg["confusion_matrix"] = np.sum(matrices, axis=0).tolist()
        f1s = [m["genre_f1"] for m in members]
        agg["genre_f1"] = None if None in f1s else {
            g: (float(np.mean([f[g] for f in f1s])), float(np.std([f[g] for f in f1s], ddof=1)) if len(f1s) > 1 else None)
            for g in agg["classes"]
        }
        out.append(agg)
    return out


def problems(runs: list[dict[str, Any]]) -> list[str]:
    """One line per failed, unfinished or unreadable run, naming the overrides that set it apart."""
    lines = []
    for run in runs:
        if run["status"] == "done":
            continue
        if run["status"] == "unreadable":
            lines.append(f"unreadable: {run['name']}: {run['error']}")
            continue
        own = " ".join(run.get("own_overrides", []))
        what = f"{run['name']} ({run['model']} {run['optim']} lr={run['lr']:g}{'; ' + own if own else ''})"
        if run["status"] == "failed":
            lines.append(f"failed: {what}: {run['error']}")
        elif run["status"] == "interrupted":
            how = f"; resume with: {run['resume']}" if run.get("resume") else ""
            lines.append(f"interrupted: {what}{how}")
        else:
            have = ", ".join(str(e) for e in sorted(run["results"]))
            so_far = f" (metrics so far for epochs {have})" if have else ""
            last = Path(run["dir"]) / "checkpoints" / "last.ckpt"
            if run.get("running"):
                lines.append(f"running: {what}, in {run['running']}{so_far}")
            elif run.get("killed"):
                how = f"; resume with ckpt_path={last}" if last.is_file() else "; nothing to resume: start it again"
                lines.append(f"killed (its process is gone, no failed.json): {what}{so_far}{how}")
            else:
                lines.append(f"running/incomplete: {what}{so_far}")
    return lines


# -- text output ---------------------------------------------------------------------------------


def _display_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(key, heading) of the columns worth showing: none empty in every row; seed, split and
    setting only when the rows vary them; n when rows pool several runs."""
    datasets = [("dataset", "dataset")] if len({r.get("dataset") for r in rows}) > 1 else []
    # Checkpoints evaluated on another collection (python -m genre_cls.evaluate) say where they were trained.
    if any(r.get("trained_on", r.get("dataset")) != r.get("dataset") for r in rows):
        datasets = [("dataset", "dataset"), ("trained_on", "trained on")]
    cols = [*datasets, ("model", "model"), ("epochs", "epochs"), ("optim", "optim"), ("lr", "lr")]
    pooled = any(r.get("kind") == "mean" for r in rows)
    varied = ("split", "setting") if pooled else ("seed", "fold", "split", "setting")
    cols += [(key, key) for key in varied if len({str(r.get(key)) for r in rows}) > 1]
    cols += [("acc", "acc"), ("acc_ci", "acc 95% CI")]
    cols += [("n", "n")] if pooled else []
    cols += [(k, h) for k, h, _ in METRIC_COLUMNS[1:5]]
    cols += [("track_acc", "track acc"), ("track_acc_ci", "track acc 95% CI"), ("track_f1", "track F1")]
    cols += [(k, h) for k, h, _ in PAPER_COLUMNS]
    return [(k, h) for k, h in cols if any(r.get(k) is not None for r in rows)]


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if key == "lr":
        return f"{value:g}"
    if key == "epochs":
        trained = row.get("epochs_trained")
        last = " (last kept)" if row.get("kept") == "last" else ""  # the best epoch by val/acc is the default
        if isinstance(trained, tuple):  # several runs stopped at different epochs
            return (f"{value} (stopped {trained[0]}-{trained[1]})" if trained[0] < value else str(value)) + last
        return (f"{value} (stopped {trained})" if trained is not None and trained < value else str(value)) + last
    if key == "model" and row.get("paper") and not row["paper"].lower().startswith(str(value)):
        return f"{value} (= {row['paper'].split()[0]})"  # net3 with RMSprop is the paper's Net4
    if key == "optim":
        return {"adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}.get(value, str(value))
    if key.endswith("_ci"):
        return f"[{value[0]:.1f}, {value[1]:.1f}]"
    if key.startswith("paper_"):
        inside = row.get(f"{key}_inside")
        return f"{value:g}" + ("" if inside is None else " (in)" if inside else " (out)")
    std = row.get(f"{key}_std")
    if isinstance(value, float) and std is not None:
        return f"{value:.1f} ± {std:.1f}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The table as aligned plain text (what the command prints)."""
    if not rows:
        return "(no finished evaluations yet)"
    cols = _display_columns(rows)
    cells = [[h for _, h in cols]] + [[printable(_cell(r, k)) for k, _ in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    text_cols = {"dataset", "trained_on", "model", "optim", "split", "setting"}
    lines = []
    for n, line in enumerate(cells):
        aligned = (c.ljust(w) if key in text_cols else c.rjust(w) for (key, _), c, w in zip(cols, line, widths))
        lines.append("  ".join(aligned))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The table in Markdown."""
    if not rows:
        return "_No finished evaluations yet._"
    cols = _display_columns(rows)
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(_cell(r, k)) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)


def _md_cell(text: object) -> str:
    """``text`` as one Markdown table cell: on one line, its pipes escaped."""
    return printable(text).replace("|", "\\|")


def _csv_value(row: dict[str, Any], key: str) -> Any:
    for ci_key, _, _ in INTERVAL_COLUMNS:
        if key in (f"{ci_key}_low", f"{ci_key}_high"):
            ci = row.get(ci_key)
            return "" if ci is None else ci[0 if key.endswith("_low") else 1]
    value = row.get(key)
    if key == "epochs_trained" and isinstance(value, tuple):
        return f"{value[0]}-{value[1]}"
    return "" if value is None else value


def write_csv(rows: list[dict[str, Any]], path: str | Path, aggregated: list[dict[str, Any]] = ()) -> None:
    """``report.csv``: every run's row (``kind=run``) and the mean of each configuration run more
    than once (``kind=mean``, ``n`` runs); values in %, empty where not applicable."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in list(rows) + [a for a in aggregated if a["n"] > 1]:
            writer.writerow({k: _csv_value(row, k) for k in CSV_COLUMNS})


def _label(row: dict[str, Any]) -> str:
    """A configuration's name: model, optimiser, lr, and what else sets it apart."""
    extra = [f"dataset={row['dataset']}"] if row.get("dataset", GTZAN) != GTZAN else []
    extra += [f"trained on {row['trained_on']}"] if row.get("trained_on", row.get("dataset")) != row.get("dataset") else []
    extra += [f"split={row['split']}"] if row.get("split") not in (None, "track") else []  # track: the default
    extra += [row["setting"]] if row.get("setting") else []
    return printable(" ".join([f"{row['model']} {row['optim']} lr={row['lr']:g}", *extra]))


def genre_f1_lines(row: dict[str, Any] | None) -> list[str]:
    """A Markdown table of the per-genre test F1 (%) of a row: mean ± std over its runs."""
    if row is None or not row.get("genre_f1"):
        return []
    n = row.get("n", 1)
    lines = [f"Per-genre test F1 (%) of the best row, {_label(row)}, {row['epochs']} epochs"
             + (f", mean ± std over {n} runs:" if n > 1 else ":"), "",
             "| genre | F1 |", "|---|---|"]
    for genre, value in row["genre_f1"].items():
        mean, std = value if isinstance(value, tuple) else (value, None)
        lines.append(f"| {_md_cell(genre)} | {mean:.1f}" + (f" ± {std:.1f}" if std is not None else "") + " |")
    return lines


def split_effects(aggregated: list[dict[str, Any]]) -> list[str]:
    """When a sweep varies ``data.split``: per configuration, the accuracy on each split and how
    much the segment split (leaky: one track's segments on both sides) inflates it, with
    Welch's 95% interval of the difference over the runs."""
    if len({r["split"] for r in aggregated}) < 2:
        return []
    by_config: dict[tuple, dict[str, dict]] = {}
    for row in aggregated:
        key = (row["dataset"], row["model"], row["optim"], row["lr"], row["epochs"], row["setting"])
        by_config.setdefault(key, {})[row["split"]] = row
    lines = []
    for (dataset, model, optim, lr, epochs, setting), splits in by_config.items():
        if len(splits) < 2 or any(r["acc"] is None for r in splits.values()):
            continue
        name = (f"{model} {optim} lr={lr:g}, {epochs} epochs" + (f", {setting}" if setting else "")
                + (f", dataset={dataset}" if dataset != GTZAN else ""))
        parts = []
        for split, row in sorted(splits.items(), key=lambda kv: str(kv[0])):
            ci = row.get("acc_ci")
            parts.append(f"{split} {_cell(row, 'acc')}" + (f" {_cell(row, 'acc_ci')}" if ci else "") + f" (n={row['n']})")
        line = f"- {name}: test accuracy " + "; ".join(parts) + "."
        leaky = splits.get("segment")
        for other in ("track", "filtered"):
            if leaky is None or other not in splits:
                continue
            diff = leaky["acc"] - splits[other]["acc"]
            ci = welch_interval(leaky["values"]["acc"], splits[other]["values"]["acc"])
            line += (f" The segment split reads {diff:+.1f} points over {other}"
                     + (f" (95% interval [{ci[0]:+.1f}, {ci[1]:+.1f}])." if ci else " (run 2 or more seeds of each for an interval)."))
        lines.append(line)
    return lines


def pooled_accuracy(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Track accuracy pooled over the finished runs of one configuration (its folds, and its
    repetitions over split seeds), from their ``predictions.csv``: every test track's share of
    right predictions, their mean weighted by how often each track was tested, and a bootstrap
    interval over tracks (a track tested in several repetitions is resampled as one). ``None``
    when no run has readable predictions."""
    outcomes: dict[str, list[bool]] = {}
    for run in runs:
        if run["status"] != "done":
            continue
        try:
            predictions = read_predictions(run["dir"] / "predictions.csv", run["classes"])
        except RunFileError:
            continue
        for track, (true, probs) in predictions.items():
            outcomes.setdefault(track, []).append(int(np.argmax(probs)) == true)
    if not outcomes:
        return None
    counts = np.array([len(o) for o in outcomes.values()])
    shares = np.array([np.mean(o) for o in outcomes.values()])
    return {"tracks": len(outcomes), "predictions": int(counts.sum()), "repeats": (int(counts.min()), int(counts.max())),
            "acc": 100 * float(np.sum(shares * counts) / counts.sum()),
            "acc_ci": [100 * v for v in bootstrap_mean_ci(shares)]}


def cross_validation_lines(aggregated: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    """Per configuration run over folds: its track accuracy pooled over every test track of its
    folds and split seeds (:func:`pooled_accuracy`), the number a K-fold cross-validation is
    judged by (the mean over folds with its t-interval is the table's)."""
    by_name = {r["name"]: r for r in runs}
    lines = []
    for row in aggregated:
        members = [by_name[name] for name in row.get("runs", []) if name in by_name]
        if row.get("folds") is None or len(members) < 2:
            continue
        pooled = pooled_accuracy(members)
        if pooled is None:
            continue
        folds = sorted({m["fold"] for m in members if m["fold"] is not None})
        split_seeds = sorted({m["data_seed"] for m in members}, key=str)
        lo, hi = pooled["acc_ci"]
        times = pooled["repeats"][0] if pooled["repeats"][0] == pooled["repeats"][1] else "{}-{}".format(*pooled["repeats"])
        lines.append(f"- {_label(row)}, {row['epochs']} epochs: {pooled['acc']:.1f}% of {pooled['predictions']} test "
                     f"predictions of {pooled['tracks']} tracks (folds {','.join(map(str, folds))} of {row['folds']}, "
                     f"split seed(s) {','.join(map(str, split_seeds))}; each track tested {times} time(s)), "
                     f"95% interval [{lo:.1f}, {hi:.1f}] (bootstrap over tracks)")
    return lines


def write_markdown(
    rows: list[dict[str, Any]], runs: list[dict[str, Any]], root: Path, path: str | Path, figures: list[str],
    aggregated: list[dict[str, Any]] | None = None, comparison: list[str] = (), cv_lines: list[str] = (),
) -> None:
    """``report.md``: the table (one row per configuration), what is missing from it, the
    per-genre F1 of the best row, the split effect, the cross-validation pooled over folds, a paired comparison, the figures."""
    aggregated = aggregate(rows) if aggregated is None else aggregated
    count = {s: sum(r["status"] == s for r in runs) for s in ("done", "failed", "interrupted", "incomplete", "unreadable")}
    covered = {r["paper"] for r in rows if r["paper"]}
    gtzan = any(r["dataset"] == GTZAN for r in rows) or not rows
    parts = [
        f"# {'Table 2' if gtzan else 'Results'} from `{root}`",
        "",
        (f"{len(runs)} runs: {count['done']} done, {count['failed']} failed, {count['interrupted']} interrupted, "
        f"{count['incomplete']} running/incomplete, "
        f"{count['unreadable']} unreadable. Test set, %. "
        "Runs that differ only in seed and/or fold form one row: mean ± std over its n runs, and a 95% "
        "interval: Student's t over the runs when n >= 2, the run's bootstrap over test tracks when n = 1. "
        "Precision, recall and F1 are weighted averages (the paper's table matches weighted averaging); "
        "`track` columns vote a segment model's segments per track. The `paper` columns are the "
        "paper's Table 2 (GTZAN runs only, all at lr 1e-4; its Net4 is Net3's network with RMSprop, its Net5 and "
        "Net6 rows stopped early), marked (in) or (out) of the row's interval. Runs of different data sets "
        "are never pooled. Every run is a row of `report.csv`."),
        "",
        markdown_table(aggregated),
        "",
    ]
    if any(r.get("trained_on", r["dataset"]) != r["dataset"] for r in rows):
        parts += ["Rows whose `trained on` differs from their `dataset` score a checkpoint trained on one collection on "
                  "another (`python -m genre_cls.evaluate`): the collection's labels mapped to the checkpoint's classes, "
                  "tracks of unmapped labels left out (each evaluation's `metrics.json` counts them).", ""]
    missing = [p.label for p in PAPER_TABLE2 if p.label not in covered]
    if missing and gtzan:
        parts += ["Paper rows without a run here: " + "; ".join(missing) + ".", ""]
    best = genre_f1_lines(best_row(aggregated))
    if best:
        parts += ["## Per-genre F1 of the best row", "", *best, ""]
    effects = split_effects(aggregated)
    if effects:
        parts += ["## How much the split changes accuracy", "", *effects, ""]
    if cv_lines:
        parts += ["## Cross-validation: track accuracy pooled over the folds", "", *cv_lines, ""]
    if comparison:
        parts += ["## Paired comparison", "", *[f"    {line}" for line in comparison], ""]
    issues = [line for line in problems(runs) if not line.startswith("unreadable: ")]
    parts += ["## Failed and incomplete runs", ""] + ([f"- {line}" for line in issues] or ["None."]) + [""]
    unreadable = [r for r in runs if r["status"] == "unreadable"]
    if unreadable:
        parts += ["## Unreadable runs", "", "Left out of the table; the file and why:", ""]
        parts += [f"- {r['name']}: {r['error']}" for r in unreadable] + [""]
    if figures:
        parts += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    Path(path).write_text("\n".join(parts))


# -- paired comparison ---------------------------------------------------------------------------


def _selector(text: str) -> list[tuple[str, str]]:
    """``net5`` or ``model=net5,lr=0.001`` -> ``[("model", "net5"), ("lr", "0.001")]``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ReportError(f"empty configuration {text!r}: give a model (net5) or key=value pairs (model=net5,lr=0.001)")
    out = []
    for part in parts:
        key, sep, value = part.partition("=")
        out.append((key, value) if sep else ("model", part))
    return out


# What a selector's key may name besides a config key: (the run's field), read from its metrics.
SELECTOR_FIELDS = ("dataset", "model", "optim", "lr", "epochs", "seed", "split")


def _matches(run: dict[str, Any], conditions: list[tuple[str, str]]) -> bool:
    for key, value in conditions:
        have = run[key] if key in SELECTOR_FIELDS else run["config"].get(key, run["config"].get(f"data.{key}"))
        if str(have) == value:
            continue
        try:
            if math.isclose(float(have), float(value), rel_tol=1e-9):
                continue
        except (TypeError, ValueError):
            pass
        return False
    return True


def _side(runs: list[dict[str, Any]], text: str) -> dict[tuple, dict[str, Any]]:
    """The finished runs of one configuration, by (seed, fold)."""
    conditions = _selector(text)
    for key, _ in conditions:
        if key not in SELECTOR_FIELDS and not any(key in r["config"] or f"data.{key}" in r["config"] for r in runs):
            raise ReportError(f"unknown key {key!r} in {text!r}: name {', '.join(SELECTOR_FIELDS)} or a config key "
                              "of these runs (model.arch_kwargs.hidden, data.split, cgan.domain, ...)")
    chosen = [r for r in runs if r["status"] == "done" and _matches(r, conditions)]
    if not chosen:
        raise ReportError(f"no finished run matches {text!r}: name a model (net5) or key=value pairs "
                          "(model=net5,lr=0.001,data.split=track) of runs in this sweep")
    configs = {r["group"]: r for r in chosen}
    if len(configs) > 1:
        labels = sorted({_label({**r, "split": r["split"]}) for r in configs.values()})
        raise ReportError(f"{text!r} matches {len(configs)} configurations ({'; '.join(labels)}): "
                          "narrow it with key=value pairs, e.g. net5,lr=0.001")
    return {_repeat(r): r for r in chosen}


def _repeat(run: dict[str, Any]) -> tuple:
    """What sets a run apart from the other runs of its configuration: ``(seed, split seed,
    fold)``; the split seed is ``None`` where it is the seed (the default, ``data.seed=${seed}``)."""
    data_seed = run.get("data_seed")
    return run["seed"], (None if data_seed == run["seed"] else data_seed), run["fold"]


def _pair_name(key: tuple) -> str:
    seed, data_seed, fold = key
    return (f"seed={seed}" + (f" data.seed={data_seed}" if data_seed is not None else "")
            + (f" fold={fold}" if fold is not None else ""))


def compare(runs: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """A paired comparison of configurations ``a`` and ``b`` (selectors such as ``net5`` or
    ``model=net6,cgan.domain=features``) on the test tracks they share.

    Runs are paired by seed, split seed (``data.seed``) and fold, and a pair counts only when
    both runs tested the same tracks. Per pair, track-level accuracy (a segment model's segments
    vote per track) from ``predictions.csv``; the mean difference B - A over the pairs with a
    t-interval (n >= 2) or a paired bootstrap over the tracks (n = 1); McNemar's exact test on
    the pooled track predictions of all pairs.

    Pooled over the pairs (``pooled``): each side's accuracy over all its paired track
    predictions, and per track the share of right predictions of B minus that of A. With
    repeated cross-validation (several split seeds) a track is predicted once per repetition,
    and McNemar's test, which takes those predictions as independent, is too optimistic: the
    per-track differences give a paired bootstrap interval over tracks and a sign-flip
    permutation test in which each track counts once (:func:`genre_cls.metrics.sign_flip_test`;
    it equals McNemar's exact test when every track is predicted once).
    """
    side_a, side_b = _side(runs, a), _side(runs, b)
    if next(iter(side_a.values()))["group"] == next(iter(side_b.values()))["group"]:
        raise ReportError(f"{a!r} and {b!r} are the same configuration: name two that differ, e.g. net5 net6")
    pairs, skipped, a_correct, b_correct, last = [], [], [], [], None
    unreadable = 0  # pairs skipped because a run's predictions.csv cannot be used
    per_track: dict[str, list[tuple[bool, bool]]] = {}
    for key in sorted(set(side_a) & set(side_b), key=str):
        run_a, run_b = side_a[key], side_b[key]
        if run_a["classes"] != run_b["classes"]:
            skipped.append(f"{_pair_name(key)}: {run_a['name']} and {run_b['name']} have different classes")
            continue
        try:
            pred_a = read_predictions(run_a["dir"] / "predictions.csv", run_a["classes"])
            pred_b = read_predictions(run_b["dir"] / "predictions.csv", run_b["classes"])
        except RunFileError as exc:
            skipped.append(f"{_pair_name(key)}: {exc}")
            unreadable += 1
            continue
        if set(pred_a) != set(pred_b):
            skipped.append(f"{_pair_name(key)}: {run_a['name']} and {run_b['name']} tested different tracks")
            continue
        tracks = sorted(pred_a)
        ca = np.array([int(np.argmax(pred_a[t][1])) == pred_a[t][0] for t in tracks])
        cb = np.array([int(np.argmax(pred_b[t][1])) == pred_b[t][0] for t in tracks])
        pairs.append({"seed": key[0], "data_seed": key[1], "fold": key[2], "a": run_a["name"], "b": run_b["name"],
                      "tracks": len(tracks), "acc_a": 100 * ca.mean(), "acc_b": 100 * cb.mean()})
        for track, right_a, right_b in zip(tracks, ca, cb):
            per_track.setdefault(track, []).append((bool(right_a), bool(right_b)))
        a_correct.append(ca)
        b_correct.append(cb)
        last = (ca, cb)
    if not pairs:
        reason = "; ".join(skipped[:2]) + (f"; and {len(skipped) - 2} more" if len(skipped) > 2 else "") if skipped \
            else "no seed/fold of one is a seed/fold of the other"
        if skipped and unreadable == len(skipped):  # the runs match; their files are what is wrong
            raise ReportError(f"{a!r} and {b!r} cannot be paired: {reason}; re-run the run(s) named (or restore their "
                              "predictions.csv) to compare them")
        raise ReportError(f"{a!r} and {b!r} share no test tracks to pair ({reason}): "
                          "run both with the same seeds, folds and data.split")
    diffs = [p["acc_b"] - p["acc_a"] for p in pairs]
    mean, std, n, ci = t_interval(diffs)
    ci = None if ci is None else [max(ci[0], -100.0), min(ci[1], 100.0)]
    ci_kind = "t over pairs"
    if ci is None:
        ci, ci_kind = [100 * v for v in paired_bootstrap_ci(*last)], "paired bootstrap over tracks"
    test = mcnemar(np.concatenate(a_correct), np.concatenate(b_correct))
    label_a, label_b = (_label(next(iter(side.values()))) for side in (side_a, side_b))
    return {"a": label_a, "b": label_b, "pairs": pairs, "skipped": skipped, "diff": mean,
            "diff_std": std if n > 1 else None, "diff_ci": ci, "ci_kind": ci_kind,
            "pooled_tracks": int(sum(len(c) for c in a_correct)), "mcnemar": test, "pooled": _pooled(per_track)}


def _pooled(per_track: dict[str, list[tuple[bool, bool]]]) -> dict[str, Any]:
    """The pooled view of a comparison, from each track's (A right, B right) per pair: each
    side's accuracy over all predictions, the mean per-track difference B - A with its bootstrap
    interval over tracks, and the sign-flip test over tracks (see :func:`compare`)."""
    shares = np.array([np.mean(outcomes, axis=0) for outcomes in per_track.values()])  # (tracks, 2)
    counts = [len(outcomes) for outcomes in per_track.values()]
    diff = shares[:, 1] - shares[:, 0]
    return {
        "tracks": len(per_track),
        "repeats": (min(counts), max(counts)),
        "acc_a": 100 * float(np.sum(shares[:, 0] * counts) / sum(counts)),
        "acc_b": 100 * float(np.sum(shares[:, 1] * counts) / sum(counts)),
        "diff": 100 * float(diff.mean()),
        "diff_ci": [100 * v for v in bootstrap_mean_ci(diff)],
        "p_value": sign_flip_test(diff),
    }


def format_comparison(result: dict[str, Any]) -> list[str]:
    """A paired comparison as text lines."""
    lines = [f"Paired comparison on shared test tracks: A = {result['a']}, B = {result['b']}"]
    for p in result["pairs"]:
        where = _pair_name((p["seed"], p.get("data_seed"), p["fold"]))
        lines.append(f"  {where}: A {p['acc_a']:.1f}% ({p['a']}), "
                     f"B {p['acc_b']:.1f}% ({p['b']}), {p['tracks']} tracks")
    lo, hi = result["diff_ci"]
    std = f" ± {result['diff_std']:.1f}" if result["diff_std"] is not None else ""
    lines.append(f"  B - A track accuracy: {result['diff']:+.1f}{std} points over {len(result['pairs'])} pair(s), "
                 f"95% interval [{lo:+.1f}, {hi:+.1f}] ({result['ci_kind']})")
    m = result["mcnemar"]
    lines.append(f"  McNemar's exact test on {result['pooled_tracks']} pooled track predictions: "
                 f"A right and B wrong {m['a_only']}, A wrong and B right {m['b_only']}, p = {m['p_value']:.3g}")
    pooled = result.get("pooled")
    if pooled and pooled["repeats"][1] == 1:
        lines.append(f"  Pooled over the {pooled['tracks']} tracks: A {pooled['acc_a']:.1f}%, B {pooled['acc_b']:.1f}%")
    if pooled and pooled["repeats"][1] > 1:
        lo, hi = pooled["diff_ci"]
        times = (f"{pooled['repeats'][0]}" if pooled["repeats"][0] == pooled["repeats"][1]
                 else f"{pooled['repeats'][0]}-{pooled['repeats'][1]}")
        lines.append(f"  Over {pooled['tracks']} tracks, each predicted {times} times: A {pooled['acc_a']:.1f}%, "
                     f"B {pooled['acc_b']:.1f}%, B - A {pooled['diff']:+.1f} points, 95% interval [{lo:+.1f}, {hi:+.1f}] "
                     f"(bootstrap over tracks); sign-flip test over tracks (each counts once): p = {pooled['p_value']:.3g}")
    lines += [f"  not paired: {s}" for s in result["skipped"]]
    return lines


# -- figures (drawn by genre_cls.plots) ----------------------------------------------------------


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the highest (mean) test accuracy that has a confusion matrix."""
    scored = [r for r in rows if r["acc"] is not None and r.get("confusion_matrix")]
    return max(scored, key=lambda r: r["acc"]) if scored else None


def best_confusion_figure(rows: list[dict[str, Any]]):
    """The best row's test confusion matrix (summed over its runs; ``None`` when nothing has finished)."""
    best = best_row(rows)
    if best is None:
        return None
    runs = f", {best['n']} runs summed" if best.get("n", 1) > 1 else ""
    title = f"best: {best['model']} {best['optim']} lr={best['lr']:g}, {best['epochs']} epochs: acc {best['acc']:.1f}%{runs}"
    return confusion_figure(best["confusion_matrix"], best["classes"], title)


def curve_series(runs: list[dict[str, Any]]) -> list[tuple[str, str, list[dict]]]:
    """(label, line style, curves of each run) per configuration, for
    :func:`genre_cls.plots.training_curves_figure`: the runs that differ only in seed and/or
    fold share one entry, drawn as their mean with a band."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["status"] != "unreadable":
            groups.setdefault(run["group"], []).append(run)
    series = []
    for members in groups.values():
        first = members[0]
        label = _label(first) + (f" ({len(members)} runs)" if len(members) > 1 else "")
        series.append((label, "-" if first["optim"] == "adam" else "--", [read_curves(r["dir"]) for r in members]))
    return series


def write_figures(rows: list[dict[str, Any]], runs: list[dict[str, Any]], out: Path,
                  aggregated: list[dict[str, Any]] | None = None) -> list[str]:
    """Save the three figures into ``out``; returns the file names written."""
    written = []
    figures = {
        "accuracy_grid.png": accuracy_grid_figure(rows) if rows else None,
        "training_curves.png": training_curves_figure(curve_series(runs)),
        "best_confusion_matrix.png": best_confusion_figure(aggregate(rows) if aggregated is None else aggregated),
    }
    for name, fig in figures.items():
        if fig is not None:
            save_figure(fig, out / name)
            written.append(name)
    return written


# -- command -------------------------------------------------------------------------------------


def report(root: str | Path, out: str | Path | None = None, compare_pair: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Read the sweep at ``root``, print the table, write the report files into ``out`` (default
    ``root``); with ``compare_pair=(A, B)`` also the paired comparison of A and B. Returns the
    aggregated rows."""
    root = Path(root)
    runs = collect_runs(root)
    rows = build_table(runs)
    aggregated = aggregate(rows)
    comparison = format_comparison(compare(runs, *compare_pair)) if compare_pair else []
    out = Path(out) if out is not None else root
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {str(out)!r} is a file: give a folder for report.md, report.csv and the figures")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # permissions do not tell for root, /proc or a read-only mount
    except OSError as exc:
        raise ReportError(f"cannot write to --out {str(out)!r}: {exc.strerror or exc}; give a folder you can write to") from None
    write_csv(rows, out / "report.csv", aggregated)
    figures = write_figures(rows, runs, out, aggregated)
    cv_lines = cross_validation_lines(aggregated, runs)
    write_markdown(rows, runs, root, out / "report.md", figures, aggregated, comparison, cv_lines)
    print(format_table(aggregated))
    best = genre_f1_lines(best_row(aggregated))
    for line in ([""] + best if best else []) + ([""] + split_effects(aggregated) if split_effects(aggregated) else []):
        print(line)
    for line in ([""] + ["Cross-validation, track accuracy pooled over the folds:"] + cv_lines if cv_lines else []):
        print(line)
    for line in ([""] + comparison if comparison else []):
        print(line)
    for line in problems(runs):
        print(line)
    print(f"written to {out}: " + ", ".join(["report.md", "report.csv", *figures]))
    return aggregated


USAGE = "python -m genre_cls.report MULTIRUN_DIR [--out DIR] [--compare A B]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of argparse's usage block
        exit_with(f"{message} (usage: {USAGE})")


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(prog="python -m genre_cls.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="a Hydra multirun folder (outputs/multirun/<date>/<time>) or one run folder")
    parser.add_argument("--out", default=None, help="where to write the report files (default: the sweep folder)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                        help="paired comparison of two configurations on their shared test tracks: a model "
                             "(net5) or key=value pairs (model=net6,cgan.domain=features)")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # files only, also without a display
    with user_errors():
        try:
            report(args.sweep_dir, args.out, tuple(args.compare) if args.compare else None)
        except OSError as exc:  # an unwritable --out, a folder that vanished while being read
            raise ReportError(str(exc)) from None


if __name__ == "__main__":
    main()
