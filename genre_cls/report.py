"""The paper's Table 2 from a sweep: ``python -m genre_cls.report MULTIRUN_DIR [--out DIR]``.

Every run under the directory (a folder with ``.hydra/config.yaml``; a single run directory
works too) gives one row per epochs value it answers: ``metrics.json`` for its ``epochs`` and
``metrics_epoch<E>.json`` for each ``test_at`` value. Rows sit beside the paper's numbers
(SPEC section 7). Failed runs (``failed.json``) and runs without metrics yet (still running or
killed) are listed, not dropped, so a partial sweep can be reported while it runs.

Writes ``report.md``, ``report.csv``, ``accuracy_grid.png``, ``training_curves.png`` and
``best_confusion_matrix.png``. The functions (:func:`collect_runs`, :func:`build_table`, the
figure builders) are importable for notebooks.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import matplotlib
import yaml

from genre_cls.config import optim_name
from genre_cls.paper import PAPER_TABLE2, paper_row
from genre_cls.plots import accuracy_grid_figure, confusion_figure, save_figure, training_curves_figure
from genre_cls.errors import UserError, exit_with, user_errors

# -- reading runs --------------------------------------------------------------------------------

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
PAPER_COLUMNS = (
    ("paper_acc", "paper acc", "acc"),
    ("paper_precision", "paper prec", "precision"),
    ("paper_recall", "paper rec", "recall"),
    ("paper_f1", "paper F1", "f1"),
)
CSV_COLUMNS = (
    ["model", "epochs", "optim", "lr"]
    + [c[0] for c in METRIC_COLUMNS]
    + ["paper"]
    + [c[0] for c in PAPER_COLUMNS]
    + ["epochs_trained", "best_epoch", "seed", "split", "run"]
)
_EPOCH_FILE = re.compile(r"^metrics_epoch(\d+)\.json$")


class ReportError(UserError):
    """A problem with the directory the user gave; reported as one line."""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or being written right now
        return None


def _as(kind: type, value: Any, default: Any) -> Any:
    """``kind(value)``, or ``default`` for a value a failed run may hold (``lr=abc``)."""
    try:
        return kind(value)
    except (TypeError, ValueError):
        return default


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every run directory under ``root`` (``root`` itself when it is one), sorted by path."""
    root = Path(root)
    found = {p.parent.parent for p in root.rglob("config.yaml") if p.parent.name == ".hydra"}
    if (root / ".hydra" / "config.yaml").is_file():
        found.add(root)
    return sorted(found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])


def read_run(run_dir: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """One run: its settings, status (done, failed, incomplete) and every metrics file it has.

    ``results`` maps an epochs value to that evaluation's metrics: ``metrics.json`` under the
    run's ``epochs``, ``metrics_epoch<E>.json`` under ``E``.
    """
    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()) or {}
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    overrides = (yaml.safe_load(overrides_file.read_text()) or []) if overrides_file.is_file() else []
    model = cfg.get("model") or {}
    epochs = _as(int, cfg.get("epochs"), 0)
    test_at = cfg.get("test_at") if isinstance(cfg.get("test_at"), list) else []
    results: dict[int, dict] = {}
    for path in run_dir.glob("metrics_epoch*.json"):
        m = _EPOCH_FILE.match(path.name)
        data = _read_json(path) if m else None
        if data is not None:
            results[int(m.group(1))] = data
    final = _read_json(run_dir / "metrics.json")
    if final is not None:
        results[_as(int, final.get("epochs"), epochs)] = final
    failed = _read_json(run_dir / "failed.json")
    status = "failed" if failed is not None else "done" if final is not None else "incomplete"
    try:
        name = str(run_dir.relative_to(root)) if root is not None else run_dir.name
    except ValueError:
        name = str(run_dir)
    return {
        "dir": run_dir,
        "name": name,
        "status": status,
        "error": (failed or {}).get("error"),
        "overrides": [str(o) for o in overrides],
        "model": (final or {}).get("model", model.get("name")),
        "optim": (final or {}).get("optim", optim_name((cfg.get("optim") or {}).get("_target_"))),
        "lr": _as(float, (final or {}).get("lr", cfg.get("lr")), math.nan),
        "epochs": epochs,
        "test_at": sorted(e for e in (_as(int, v, 0) for v in test_at) if 0 < e <= epochs),
        "seed": cfg.get("seed"),
        "split": (cfg.get("data") or {}).get("split"),
        "results": results,
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
    return runs


def _evaluation_for(run: dict[str, Any], epochs: int) -> dict | None:
    """The metrics answering "best model within ``epochs`` epochs" for a run, if known yet."""
    if epochs in run["results"]:
        return run["results"][epochs]
    final = run["results"].get(run["epochs"])
    # A run that stopped early before ``epochs`` has no snapshot there: its final best answers.
    if final is not None and int(final.get("epochs_trained", run["epochs"])) <= epochs:
        return final
    return None


def _pct(value: Any) -> float | None:
    return None if value is None or isinstance(value, (str, list)) else 100.0 * float(value)


def build_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table 2 rows: one per run and epochs value it answers, values in %, beside the paper's.

    Sorted like the paper: by optimiser, model, epochs, then learning rate (largest first).
    """
    rows = []
    for run in runs:
        for epochs in sorted(set(run["test_at"]) | {run["epochs"]} | set(run["results"])):
            ev = _evaluation_for(run, epochs)
            if ev is None:
                continue
            row: dict[str, Any] = {
                "model": ev.get("model", run["model"]),
                "epochs": epochs,
                "optim": ev.get("optim", run["optim"]),
                "lr": float(ev.get("lr", run["lr"])),
            }
            row.update({key: _pct(ev.get(src)) for key, _, src in METRIC_COLUMNS})
            paper = paper_row(row["model"], row["optim"], epochs, row["lr"])
            row["paper"] = paper.label if paper else None
            row.update({key: (getattr(paper, attr) if paper else None) for key, _, attr in PAPER_COLUMNS})
            row.update(
                epochs_trained=ev.get("epochs_trained"),
                best_epoch=ev.get("best_epoch"),
                seed=ev.get("seed", run["seed"]),
                split=ev.get("split", run["split"]),
                run=run["name"],
                confusion_matrix=ev.get("confusion_matrix"),
                classes=ev.get("classes"),
            )
            rows.append(row)
    order = {"adam": 0, "rmsprop": 1}
    rows.sort(key=lambda r: (order.get(r["optim"], 2), str(r["model"]), r["epochs"], -r["lr"], str(r["seed"]),
                             r["run"]))
    return rows


def problems(runs: list[dict[str, Any]]) -> list[str]:
    """One line per failed or unfinished run, naming the overrides that set it apart."""
    common = set.intersection(*(set(r["overrides"]) for r in runs)) if len(runs) > 1 else set()
    lines = []
    for run in runs:
        if run["status"] == "done":
            continue
        own = " ".join(o for o in run["overrides"] if o not in common)
        what = f"{run['name']} ({run['model']} {run['optim']} lr={run['lr']:g}{'; ' + own if own else ''})"
        if run["status"] == "failed":
            lines.append(f"failed: {what}: {run['error']}")
        else:
            have = ", ".join(str(e) for e in sorted(run["results"]))
            lines.append(f"running/incomplete: {what}" + (f" (metrics so far for epochs {have})" if have else ""))
    return lines


# -- text output ---------------------------------------------------------------------------------


def _display_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(key, heading) of the columns worth showing: none empty in every row; seed and split
    only when the sweep varies them."""
    cols = [("model", "model"), ("epochs", "epochs"), ("optim", "optim"), ("lr", "lr")]
    cols += [(key, key) for key in ("seed", "split") if len({str(r.get(key)) for r in rows}) > 1]
    cols += [(k, h) for k, h, _ in METRIC_COLUMNS + PAPER_COLUMNS]
    return [(k, h) for k, h in cols if any(r.get(k) is not None for r in rows)]


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if key == "lr":
        return f"{value:g}"
    if key == "epochs":
        trained = row.get("epochs_trained")
        return f"{value} (stopped {trained})" if trained is not None and trained < value else str(value)
    if key == "model" and row.get("paper") and not row["paper"].lower().startswith(str(value)):
        return f"{value} (= {row['paper'].split()[0]})"  # net3 with RMSprop is the paper's Net4
    if key == "optim":
        return {"adam": "Adam", "rmsprop": "RMSprop"}.get(value, str(value))
    if key.startswith("paper_"):
        return f"{value:g}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The table as aligned plain text (what the command prints)."""
    if not rows:
        return "(no finished evaluations yet)"
    cols = _display_columns(rows)
    cells = [[h for _, h in cols]] + [[_cell(r, k) for k, _ in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    text_cols = {"model", "optim", "split"}
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
    lines += ["| " + " | ".join(_cell(r, k) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    """``report.csv``: every column, values in %, empty where not applicable."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: ("" if r.get(k) is None else r[k]) for k in CSV_COLUMNS} for r in rows)


def write_markdown(
    rows: list[dict[str, Any]], runs: list[dict[str, Any]], root: Path, path: str | Path, figures: list[str]
) -> None:
    """``report.md``: the table, what is missing from it, and the figures."""
    done = sum(r["status"] == "done" for r in runs)
    covered = {r["paper"] for r in rows if r["paper"]}
    parts = [
        f"# Table 2 from `{root}`",
        "",
        f"{len(runs)} runs: {done} done, {sum(r['status'] == 'failed' for r in runs)} failed, "
        f"{sum(r['status'] == 'incomplete' for r in runs)} running/incomplete. Test set, %. "
        "Precision, recall and F1 are weighted averages (the paper's table matches weighted averaging); "
        "`track` columns vote a segment model's segments per track. The `paper` columns are the "
        "paper's Table 2 (all at lr 1e-4; its Net4 is Net3's network with RMSprop, its Net5 and "
        "Net6 rows stopped early).",
        "",
        markdown_table(rows),
        "",
    ]
    missing = [p.label for p in PAPER_TABLE2 if p.label not in covered]
    if missing:
        parts += ["Paper rows without a run here: " + "; ".join(missing) + ".", ""]
    issues = problems(runs)
    parts += ["## Failed and incomplete runs", ""] + ([f"- {line}" for line in issues] or ["None."]) + [""]
    if figures:
        parts += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    Path(path).write_text("\n".join(parts))


# -- figures (drawn by genre_cls.plots) ----------------------------------------------------------


def read_curves(
    run_dir: str | Path, tags: tuple[str, ...] = ("val/acc", "train/loss")
) -> dict[str, tuple[list[int], list[float]]]:
    """Per-epoch ``(epochs, values)`` of scalar ``tags`` from a run's TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    available = set(acc.Tags().get("scalars", []))
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


def _label(run: dict[str, Any]) -> str:
    return f"{run['model']} {run['optim']} lr={run['lr']:g}"


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the highest test accuracy (that has a confusion matrix)."""
    scored = [r for r in rows if r["acc"] is not None and r.get("confusion_matrix")]
    return max(scored, key=lambda r: r["acc"]) if scored else None


def best_confusion_figure(rows: list[dict[str, Any]]):
    """The best row's test confusion matrix (``None`` when nothing has finished)."""
    best = best_row(rows)
    if best is None:
        return None
    title = f"best: {best['model']} {best['optim']} lr={best['lr']:g}, {best['epochs']} epochs: acc {best['acc']:.1f}%"
    return confusion_figure(best["confusion_matrix"], best["classes"], title)


def curve_series(runs: list[dict[str, Any]]) -> list[tuple[str, str, dict]]:
    """(label, line style, curves) of every run for :func:`genre_cls.plots.training_curves_figure`."""
    return [(_label(run), "-" if run["optim"] == "adam" else "--", read_curves(run["dir"])) for run in runs]


def write_figures(rows: list[dict[str, Any]], runs: list[dict[str, Any]], out: Path) -> list[str]:
    """Save the three figures into ``out``; returns the file names written."""
    written = []
    figures = {
        "accuracy_grid.png": accuracy_grid_figure(rows) if rows else None,
        "training_curves.png": training_curves_figure(curve_series(runs)),
        "best_confusion_matrix.png": best_confusion_figure(rows),
    }
    for name, fig in figures.items():
        if fig is not None:
            save_figure(fig, out / name)
            written.append(name)
    return written


# -- command -------------------------------------------------------------------------------------


def report(root: str | Path, out: str | Path | None = None) -> list[dict[str, Any]]:
    """Read the sweep at ``root``, print the table, write the report files into ``out`` (default ``root``)."""
    root = Path(root)
    runs = collect_runs(root)
    rows = build_table(runs)
    out = Path(out) if out is not None else root
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "report.csv")
    figures = write_figures(rows, runs, out)
    write_markdown(rows, runs, root, out / "report.md", figures)
    print(format_table(rows))
    for line in problems(runs):
        print(line)
    print(f"written to {out}: " + ", ".join(["report.md", "report.csv", *figures]))
    return rows


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of argparse's usage block
        exit_with(f"{message} (usage: python -m genre_cls.report MULTIRUN_DIR [--out DIR])")


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(prog="python -m genre_cls.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="a Hydra multirun folder (outputs/multirun/<date>/<time>) or one run folder")
    parser.add_argument("--out", default=None, help="where to write the report files (default: the sweep folder)")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # files only, also without a display
    with user_errors():
        try:
            report(args.sweep_dir, args.out)
        except OSError as exc:  # an unwritable --out, a folder that vanished while being read
            raise ReportError(str(exc)) from None


if __name__ == "__main__":
    main()
