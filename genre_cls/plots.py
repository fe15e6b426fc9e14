"""Figures people would rather look at than read: confusion matrices, the sweep's accuracy grid,
training curves. Each builder returns a matplotlib figure; :func:`save_figure` writes and closes it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


@lru_cache(maxsize=None)
def _chars(font_file: str) -> frozenset[int]:
    """The characters a font file draws."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(font_file).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a font file matplotlib lists but cannot open
        return frozenset()


@lru_cache(maxsize=None)
def _installed_fonts() -> tuple[tuple[str, str], ...]:
    """Every font family matplotlib finds on this machine that draws real glyphs, with one of its
    files, by name."""
    from matplotlib import font_manager

    found: dict[str, str] = {}
    for entry in font_manager.fontManager.ttflist:
        if not entry.name.startswith("Last Resort"):  # a box with the code point for every character: no glyph
            found.setdefault(entry.name, entry.fname)
    return tuple(sorted(found.items()))


def _drawable(content: str, font_file: str, family: str) -> tuple[str, list[str] | None]:
    """``content`` as the fonts of this machine can draw it, and the font families to draw it with
    (``None``: its own font draws every character): the fonts that have the characters its font
    lacks follow it, and a character no font has becomes its escape (``\\u30e1``)."""
    missing = {ord(c) for c in content if not c.isspace()} - _chars(font_file)
    if not missing:
        return content, None
    families = [family]
    for name, other in _installed_fonts():
        if missing & _chars(other):
            families.append(name)
            missing -= _chars(other)
        if not missing:
            break
    return "".join(f"\\u{ord(c):04x}" if ord(c) in missing else c for c in content), families


def fit_glyphs(fig) -> None:
    """Make every text of ``fig`` drawable as it is, whatever its labels hold (class names and file
    names in any script): a text with characters its font lacks gets, after that font, the installed
    fonts that have them (matplotlib draws each character with the first font of the list that has
    it); a character no installed font has is written as its escape (``\\u30e1``), which keeps two
    labels apart, instead of an empty box and a "Glyph missing" warning. Dollar signs are text,
    not mathematics. Called by every figure builder here and by :func:`save_figure`."""
    from matplotlib import font_manager
    from matplotlib.text import Text
    from matplotlib.ticker import FixedFormatter, FuncFormatter

    def font_of(text: Text) -> tuple[str, str]:
        props = text.get_fontproperties()
        return font_manager.findfont(props, fallback_to_default=True), props.get_family()[0]

    for ax in fig.axes:  # tick labels (class names) are drawn anew from their formatter at every draw
        for axis in (ax.xaxis, ax.yaxis):
            formatter, ticks = axis.get_major_formatter(), axis.get_ticklabels()
            if not isinstance(formatter, (FixedFormatter, FuncFormatter)) or not ticks:
                continue
            labels = [str(formatter(x, i)) for i, x in enumerate(axis.get_majorticklocs())]
            fixed = {label: _drawable(label, *font_of(ticks[0])) for label in labels if not label.isascii()}
            families = list(dict.fromkeys(f for _, fams in fixed.values() for f in fams or []))
            if not families:
                continue
            drawn = {label: text for label, (text, _) in fixed.items()}
            axis.set_major_formatter(FuncFormatter(lambda x, pos, f=formatter, d=drawn: d.get(str(f(x, pos)), f(x, pos))))
            axis.set_tick_params(labelfontfamily=families)
    for text in fig.findobj(Text):
        text.set_parse_math(False)
        content = text.get_text()
        if content and not content.isascii():
            drawn, families = _drawable(content, *font_of(text))
            if families is not None:
                text.set_fontfamily(families)
                text.set_text(drawn)


def confusion_figure(cm, classes, title: str = "confusion matrix"):
    """A labelled confusion-matrix heat map (rows = true genre) with counts in the cells (up to 30 classes)."""
    cm = np.asarray(cm)
    side = min(max(6.4, 2.4 + 0.4 * len(classes)), 40.0)  # room for every label, bounded for 161 FMA genres
    fig, ax = plt.subplots(figsize=(side, side * 0.875), dpi=100)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = cm.max() if cm.size else 0
    for i in range(cm.shape[0] if len(classes) <= 30 else 0):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > top / 2 else "black")
    fit_glyphs(fig)
    fig.tight_layout()
    return fig


def accuracy_grid_figure(rows: list[dict[str, Any]]):
    """Heat-map panels, one per epochs value: test accuracy (%) of each model x optimiser by lr
    (and by data set, when the rows have several).

    Several seeds of one cell are averaged.
    """
    epochs_values = sorted({r["epochs"] for r in rows})
    lrs = sorted({r["lr"] for r in rows}, reverse=True)
    several = len({r.get("dataset") for r in rows}) > 1

    def pair_of(r: dict[str, Any]) -> tuple[str, ...]:
        return (str(r.get("dataset")), r["model"], r["optim"]) if several else (r["model"], r["optim"])

    pairs = sorted({pair_of(r) for r in rows}, key=lambda p: (p[:-2], p[-1], p[-2]))
    n = max(len(epochs_values), 1)
    size = (1.4 + 1.1 * max(len(lrs), 2) * n, 1.2 + 0.45 * max(len(pairs), 2))
    fig, axes = plt.subplots(1, n, figsize=size, squeeze=False, dpi=100)
    for ax, epochs in zip(axes[0], epochs_values):
        cells = defaultdict(list)
        for r in rows:
            if r["epochs"] == epochs and r["acc"] is not None:
                cells[pair_of(r), r["lr"]].append(r["acc"])
        grid = np.full((len(pairs), len(lrs)), np.nan)
        for (pair, lr), values in cells.items():
            grid[pairs.index(pair), lrs.index(lr)] = float(np.mean(values))
        ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
        ax.set_yticks(range(len(pairs)), [" ".join(p) for p in pairs])
        ax.set_xlabel("learning rate")
        ax.set_title(f"test accuracy (%), {epochs} epochs", fontsize=9)
        for i in range(len(pairs)):
            for j in range(len(lrs)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=8,
                            color="black" if grid[i, j] > 60 else "white")
    fit_glyphs(fig)
    fig.tight_layout()
    return fig


def _band(runs: Sequence[tuple[list[int], list[float]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epochs and the mean, min and max over the runs that reached each epoch."""
    values: dict[int, list[float]] = defaultdict(list)
    for epochs, ys in runs:
        for e, y in zip(epochs, ys):
            values[e].append(y)
    epochs = np.array(sorted(values))
    stack = [np.array(values[e]) for e in epochs]
    return (epochs, np.array([v.mean() for v in stack]), np.array([v.min() for v in stack]),
            np.array([v.max() for v in stack]))


def training_curves_figure(series: Sequence[tuple[str, str, Any]]):
    """val/acc and train/loss per epoch, one line per configuration ``(label, line style, runs)``.

    ``runs`` is a list of the curves of the configuration's runs (its seeds and folds), each a
    dict mapping a tag to ``(epochs, values)`` (what :func:`genre_cls.report.read_curves` reads);
    one dict stands for one run. Several runs draw their mean, with a band from their minimum
    to their maximum at each epoch.
    """
    from matplotlib.ticker import MaxNLocator

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    drawn = banded = 0
    for label, style, runs in series:
        runs = [c for c in ([runs] if isinstance(runs, dict) else runs) if c]
        if not runs:
            continue
        drawn += 1
        color = f"C{(drawn - 1) % 10}"
        for ax, tag in ((ax_acc, "val/acc"), (ax_loss, "train/loss")):
            curves = [c[tag] for c in runs if tag in c]
            if not curves:
                continue
            epochs, mean, low, high = _band(curves)
            ax.plot(epochs, mean, style, color=color, label=label, linewidth=1)
            if len(curves) > 1:
                banded += 1
                ax.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
    band = " (lines: mean over seeds/folds, bands: their range)" if banded else ""
    for ax, title in ((ax_acc, "validation accuracy"), (ax_loss, "training loss")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title + band, fontsize=10)
        ax.grid(alpha=0.3)
    if drawn:
        ax_loss.set_yscale("log")
        ax_loss.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + drawn // 25)
    else:
        ax_acc.text(0.5, 0.5, "no TensorBoard scalars yet", ha="center", transform=ax_acc.transAxes)
    fit_glyphs(fig)
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> None:
    fit_glyphs(fig)
    fig.savefig(path)
    plt.close(fig)


def write_plot(fig, path, key: str = "plot") -> None:
    """:func:`save_figure` into ``path`` for a command's ``plot=`` (its folders made); a place that
    cannot be written is one :class:`~genre_cls.errors.UserError` line naming ``key``."""
    from genre_cls.errors import UserError, one_line

    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, path)
    except OSError as exc:
        plt.close(fig)
        raise UserError(f"cannot write {key}={path} ({one_line(exc)}): choose a writable place") from exc


def genre_colors(classes) -> dict[str, str]:
    """One colour per genre (matplotlib's ``tab10``, cycled past ten), as ``#rrggbb``; the web page uses the same."""
    from matplotlib.colors import to_hex

    palette = plt.get_cmap("tab10").colors
    return {c: to_hex(palette[i % len(palette)]) for i, c in enumerate(classes)}


def result_parts(result) -> list:
    """The units of one ``predict`` result (segments, chunks or windows, whichever it has)."""
    for key in ("segments", "chunks", "windows"):
        if key in result:
            return list(result[key])
    return []


def timeline_data(result, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a timeline draws from one ``predict`` result: ``(starts_s, ends_s, probs)``.

    One row per 3 s segment (segment models; segments that lie wholly in the padding after the
    end of the file are left out) or per 30 s window (image models); ``probs`` is
    ``(rows, len(classes))``, with non-finite values as 0 and everything clipped to [0, 1].
    """
    parts = [p for p in result_parts(result) if not p.get("padding")]
    starts = np.array([float(p["start_s"]) for p in parts], dtype=float).reshape(-1)
    ends = np.array([float(p["end_s"]) for p in parts], dtype=float).reshape(-1)
    probs = np.array([[p["probabilities"].get(c, np.nan) for c in classes] for p in parts], dtype=float)
    return starts, ends, _finite_probs(probs.reshape(len(parts), len(classes)))


def _finite_probs(p) -> np.ndarray:
    return np.clip(np.nan_to_num(np.asarray(p, dtype=float), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def _tick_step(total_s: float) -> int:
    """Seconds between time ticks: a musical round number that gives at most ten ticks."""
    return next((s for s in (1, 3, 6, 15, 30, 60, 120, 300, 600, 1800) if total_s / s <= 10), 3600)


def _clock(seconds: float, _pos=None) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def timeline_figure(results, classes):
    """The genre timeline of one or more ``predict`` results: one row of panels per file.

    Left, the probabilities of every 3 s segment (or 30 s window) stacked over the song's time
    axis, one colour per genre; right, the track's probabilities as bars in the same colours;
    above, the file name and the top genre. Non-finite probabilities are drawn as 0.
    """
    from pathlib import PurePath

    from matplotlib.ticker import FuncFormatter, MultipleLocator

    results = [results] if isinstance(results, dict) else list(results)
    if not results:
        raise ValueError("timeline_figure needs at least one result")
    classes = list(classes)
    colors = genre_colors(classes)
    fig, axes = plt.subplots(
        len(results), 2, figsize=(12, 3.4 * len(results)), dpi=100, squeeze=False,
        gridspec_kw={"width_ratios": [4, 1.1]},
    )
    for r, (ax, bars) in zip(results, axes):
        starts, ends, probs = timeline_data(r, classes)
        top_edge = np.ones(len(starts))  # stacked from the top down, in the order of the bars
        for j, c in enumerate(classes):
            ax.bar(starts, probs[:, j], width=ends - starts, bottom=top_edge - probs[:, j], align="edge",
                   color=colors[c], linewidth=0, label=c)
            top_edge -= probs[:, j]
        total = ends.max() if len(ends) and ends.max() > 0 else 1.0
        ax.set_xlim(0, total)
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MultipleLocator(_tick_step(total)))
        ax.xaxis.set_major_formatter(FuncFormatter(_clock))
        ax.set_xlabel("time (m:ss)")
        ax.set_ylabel("probability")
        unit = f"{r['unit']}s" if "unit" in r else ("3 s segments" if "segments" in r else "30 s windows")
        ax.set_title(f"{len(starts)} \u00d7 {unit}", loc="right", fontsize=9, color="0.35")
        ax.margins(x=0)

        track = _finite_probs([r.get("probabilities", {}).get(c, np.nan) for c in classes])
        y = np.arange(len(classes))
        bars.barh(y, track, color=[colors[c] for c in classes])
        bars.set_yticks(y, classes)
        bars.invert_yaxis()
        bars.set_xlim(0, 1)
        bars.set_xlabel("track probability")
        top = str(r.get("genre", ""))
        for i, (c, v) in enumerate(zip(classes, track)):
            bars.text(min(v, 1.0) + 0.02, i, f"{v:.0%}", va="center", fontsize=8,
                      fontweight="bold" if c == top else "normal")
            if c == top:
                bars.get_yticklabels()[i].set_fontweight("bold")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
            bars.spines[side].set_visible(False)

        name = PurePath(str(r.get("file", ""))).name or "input"
        prob = r.get("probability")
        sure = f" ({prob:.0%})" if isinstance(prob, (int, float)) and np.isfinite(prob) else ""
        ax.set_title(f"{name}: {top}{sure}", loc="left", fontsize=12, fontweight="bold")
    fit_glyphs(fig)
    fig.tight_layout()
    return fig


def tag_timeline_figure(results, k: int = 10):
    """The tag timeline of one or more ``predict pretrained=...`` records (one row of panels per file).

    Left, a heat map of the file's ``k`` most probable tags (rows, most probable at the top) over
    its patches (columns, on the song's time axis): each tag is its own yes/no question, so the
    probabilities do not add up to one and are drawn side by side, not stacked; right, those tags'
    probabilities over the whole file as bars; above, the file name and its top tag.
    """
    from pathlib import PurePath

    from matplotlib.ticker import FuncFormatter, MultipleLocator

    results = [results] if isinstance(results, dict) else list(results)
    if not results:
        raise ValueError("tag_timeline_figure needs at least one result")
    fig, axes = plt.subplots(
        len(results), 2, figsize=(12, 0.3 * k * len(results) + 1.4 * len(results)), dpi=100, squeeze=False,
        gridspec_kw={"width_ratios": [4, 1.3]},
    )
    for r, (ax, bars) in zip(results, axes):
        top = [t["tag"] for t in r["top"][:k]] if len(r["top"]) >= k else sorted(r["tags"], key=lambda t: -r["tags"][t])[:k]
        patches = r["patches"]
        starts = np.array([p["start_s"] for p in patches], dtype=float)
        ends = np.array([p["end_s"] for p in patches], dtype=float)
        grid = _finite_probs([[p["tags"][t] for p in patches] for t in top])  # (k, patches)
        total = ends.max() if len(ends) and ends.max() > 0 else 1.0
        edges = np.append(starts, max(ends[-1], starts[-1] + 1e-3)) if len(starts) else np.array([0.0, 1.0])
        ax.pcolormesh(edges, np.arange(len(top) + 1) - 0.5, grid.reshape(len(top), -1), cmap="magma", vmin=0, vmax=1)
        ax.set_xlim(0, total)
        ax.set_ylim(len(top) - 0.5, -0.5)
        ax.set_yticks(range(len(top)), top)
        ax.xaxis.set_major_locator(MultipleLocator(_tick_step(total)))
        ax.xaxis.set_major_formatter(FuncFormatter(_clock))
        ax.set_xlabel("time (m:ss)")
        ax.set_title(f"{len(patches)} \u00d7 {r.get('unit', 'patch')}es, darkest = 0, brightest = 1", loc="right",
                     fontsize=9, color="0.35")
        whole = _finite_probs([r["tags"][t] for t in top])
        bars.barh(range(len(top)), whole, color="#b73779")
        bars.set_yticks(range(len(top)), [])
        bars.set_ylim(len(top) - 0.5, -0.5)
        bars.set_xlim(0, 1)
        bars.set_xlabel("probability over the file")
        for i, v in enumerate(whole):
            bars.text(min(v, 1.0) + 0.02, i, f"{v:.0%}", va="center", fontsize=8, fontweight="bold" if i == 0 else "normal")
        for side in ("top", "right"):
            bars.spines[side].set_visible(False)
        name = PurePath(str(r.get("file", ""))).name or "input"
        ax.set_title(f"{name}: {top[0]} ({whole[0]:.0%})" if top else name, loc="left", fontsize=12, fontweight="bold")
    fig.tight_layout()
    return fig
