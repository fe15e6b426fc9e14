"""Genre probabilities for anyone's audio: ``python -m genre_cls.predict ckpt=PATH inputs=[FILE,...]``.

A file in any format soundfile or librosa reads (wav, flac, ogg, mp3, au), at any sample
rate, mono or stereo, is decoded to 22,050 Hz mono exactly as training decodes GTZAN, and
classified the way the model was trained:

* **Segment models** (Net5, Net6) see every 3 s segment (66,000 samples) of every 30 s window
  (660,000 samples, :func:`genre_cls.data.audio.windows`). The track's probabilities are the
  mean over its segments, as in the test metrics' track vote. Segments that lie wholly in the
  zero padding after the end of a file are reported (``"padding": true``) but not averaged:
  a 5 s file is judged on its own two segments, not on eight of silence.
* **Image models** (Net1-Net4) see each window rendered as the Kaggle set's 432x288 mel PNG
  (:func:`genre_cls.data.melimage.render_mel_png`, in memory) and decoded by
  :func:`genre_cls.data.melimage.decode_image`, as training decoded its images; the track's
  probabilities are the mean over windows. A clip of 30 s give or take 1% (every GTZAN clip)
  is rendered whole, as the Kaggle images were; a shorter one is zero-padded to 30 s so that
  time keeps the scale the model learned.

* **Waveform models** (the log-mel ResNet) see every consecutive chunk of the chunk length they
  were trained on (3 s by default), the last one zero-padded when at least half a chunk is left;
  the track's probabilities are the mean over chunks, as in the test metrics' track vote.

Files longer than 30 s are cut into consecutive windows; a tail shorter than half a window is
dropped (see :func:`~genre_cls.data.audio.windows`): 3 minutes give 6 windows, 95 s give 3.
How each model cuts a file lives with its input kind (:meth:`genre_cls.data.kinds.base.InputKind.cut`).

``pretrained=msd`` (or ``mtt``, ``msd_vgg``, ``mtt_vgg``) instead of ``ckpt=`` tags the files with a
pretrained musicnn, with no training: each file's 50 tag probabilities by name, its top tags and
their timeline, in the same formats (:mod:`genre_cls.tagging`).

Python API::

    model = load_classifier("outputs/runs/<day>/<time>_net5/checkpoints/best.ckpt")
    results = predict_files(model, ["song.mp3"])  # [{"file", "genre", "probability", ...}]
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Sequence

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from genre_cls.checkpoints import CKPT_HINT, load_classifier
from genre_cls.cmdline import check_settings
from genre_cls.conf import CONF_DIR, settings_of
from genre_cls.data.audio import SR, sample_problem
from genre_cls.data.cache import can_write_in
from genre_cls.data.audio_files import find_audio_files
from genre_cls.data.audio_stream import AudioStats, waveform_stats
from genre_cls.errors import UserError, printable, run_cli, user_errors
from genre_cls.library import (file_flags, non_finite_error, predict_many, print_results, probabilities, too_short_error,
                               track_result, unit_parts)
from genre_cls.results_file import CheckpointId, ResultsFile, file_state, results_path
from genre_cls.systems.classifier import GenreClassifier

FORMATS = ("table", "json")
#: How many error lines a run with ``out=`` prints (the results file holds them all).
ERROR_LINES = 5


# --------------------------------------------------------------------------- inputs


def predict_waveform(model: GenreClassifier, y: np.ndarray, sr: int = SR, stats: AudioStats | None = None) -> dict[str, Any]:
    """Genre probabilities of a 1-D waveform at ``sr`` Hz (resampled to the rate the model's input
    kind reads, :meth:`~genre_cls.data.kinds.base.InputKind.sample_rate`, when it differs).

    Returns ``{"duration_s", "genre", "probability", "probabilities", "unit", "units", "flags",
    "windows" | "segments" | "chunks"}``: the track's top genre, its probability and every genre's
    probability, how many units it was judged on, what makes it questionable
    (:func:`genre_cls.data.audio_stream.audio_flags`: from ``stats`` of the decoding when given,
    else from the waveform), plus the same per window (image models), per 3 s segment (segment
    models) or per chunk with their time spans.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {y.shape}")
    if (why := too_short_error(len(y), sr)) is not None:
        raise UserError(why)
    if (why := sample_problem(y)) is not None:
        raise UserError(f"the waveform is not audio: {why.replace('the file holds', 'it holds')}")
    rate = model.kind.sample_rate(model.input_params)
    if sr != rate:
        import librosa

        y = np.ascontiguousarray(librosa.resample(y, orig_sr=sr, target_sr=rate), dtype=np.float32)
    # The model's input kind cuts the file the way the model was trained (genre_cls.data.kinds).
    cut = model.kind.cut(y, model.input_params)
    probs = probabilities(model, cut.x)
    track = probs[~cut.padding].mean(0)
    if not (np.isfinite(probs).all() and np.isfinite(track).all()):
        # NaN is not JSON, and a genre picked from NaN means nothing: the file becomes an error entry.
        raise UserError(non_finite_error())
    parts = unit_parts(model, probs, cut.spans, cut.labels, cut.padding)
    flags = file_flags(model, stats if stats is not None else waveform_stats(y, rate))
    return track_result(model, track, len(y), rate, len(probs), flags, parts)


def predict_file(model: GenreClassifier, path: str | os.PathLike) -> dict[str, Any]:
    """One audio file's result, as :func:`predict_waveform` gives it, with ``"file"`` first; the
    file is decoded block by block (:func:`genre_cls.data.audio_stream.decode_blocks`), so that its
    flags also say when its decoded length disagrees with its header.

    Raises :class:`~genre_cls.errors.UserError` for a missing, unreadable or non-audio file.
    """
    ((_, result),) = predict_many(model, [path], workers=0, parts=True)
    if "error" in result:
        raise UserError(result["error"])
    return result


def predict_files(
    model: GenreClassifier, paths: Sequence[str | os.PathLike], skip_errors: bool = False
) -> list[dict[str, Any]]:
    """:func:`predict_file` for each path, in order.

    With ``skip_errors`` a file that cannot be used becomes ``{"file": ..., "error": ...}``
    instead of raising, so that one bad file does not cost the others' results. (Many files are
    faster with :func:`genre_cls.library.predict_many`: decoding in worker processes, batches of
    several files' units.)
    """
    out = []
    for path in paths:
        try:
            out.append(predict_file(model, path))
        except UserError as exc:
            if not skip_errors:
                raise
            out.append({"file": str(path), "error": str(exc)})
    return out


# --------------------------------------------------------------------------- output


def format_table(results: Sequence[dict[str, Any]], classes: Sequence[str]) -> str:
    """One row per file: the top genre, its probability and all genre probabilities, and a
    ``flags`` column (:func:`genre_cls.data.audio_stream.audio_flags`' names) when a file has one.
    A label or file name with a newline stays one cell."""
    flagged = any(r.get("flags") for r in results)
    head = ["file", "genre", "prob", *map(printable, classes), *(["flags"] if flagged else [])]
    rows = [[printable(r["file"]), printable(r["genre"]), f"{r['probability']:.3f}",
             *(f"{r['probabilities'][c]:.3f}" for c in classes),
             *([",".join(r.get("flags") or {}) or "-"] if flagged else [])] for r in results]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = []
    for row in [head, *rows]:
        numbers = row[2 : 3 + len(classes)]
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])] + [v.rjust(w) for v, w in zip(numbers, widths[2:])]
        if flagged:
            cells.append(row[-1])
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_json(results: Sequence[dict[str, Any]], model: GenreClassifier, ckpt: str) -> str:
    """One JSON document: the model, its classes, the files' results and the files that failed."""
    doc = {
        "checkpoint": str(ckpt),
        "model": model.hparams.get("model_name") or model.hparams.get("arch"),
        "input": model.input_kind,
        "classes": list(model.classes),
        "results": [r for r in results if "error" not in r],
        "errors": [r for r in results if "error" in r],
    }
    return json.dumps(doc, indent=2)


# --------------------------------------------------------------------------- command line


def _inputs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value if str(v) != ""]
    return [str(value)] if str(value) else []


def _device(name: Any) -> torch.device:
    try:
        device = torch.device(str(name))
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"unknown device {name!r}: use device=cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} is not available on this machine: use device=cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} is not available on this machine: use device=cpu")
    return device


def _plot_path(value: Any) -> Path | None:
    """The ``plot=`` file, checked before any work: a .png whose folder exists or can be made."""
    if value in (None, ""):
        return None
    path = Path(os.path.expanduser(str(value)))
    if path.suffix.lower() != ".png":
        raise UserError(f"plot={value} must be a .png file, e.g. plot=song.png")
    if path.is_dir():
        raise UserError(f"plot={value} is a folder: name a file in it, e.g. plot={path / 'timeline.png'}")
    parent = path.parent.absolute()
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"cannot create the folder of plot={value}: {existing} is a file, choose another place")
    if not can_write_in(existing):
        raise UserError(f"cannot write plot={value}: {existing} is not writable, choose another place")
    return path


def save_timeline(results: Sequence[dict[str, Any]], classes: Sequence[str], path: str | os.PathLike) -> None:
    """Draw the genre timeline of ``results`` (one row per file) into the PNG ``path``."""
    from genre_cls.plots import timeline_figure, write_plot

    write_plot(timeline_figure(results, classes), path)


def _count(cfg: DictConfig, key: str, low: int) -> int | None:
    value = cfg.get(key)
    if value is None and key == "workers":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{key} must be a whole number >= {low}{' (or null: one per core)' if key == 'workers' else ''}, got {value!r}")
    return value


def _progress(value: Any) -> bool:
    if value == "auto":
        return sys.stderr.isatty()
    if isinstance(value, bool):
        return value
    raise UserError(f"progress must be auto, true or false, got {value!r}")


def run(cfg: DictConfig) -> int:
    """Predict ``cfg.inputs`` (files, and folders walked for their audio files) with ``cfg.ckpt``
    (or tag them with ``cfg.pretrained``, no training: :mod:`genre_cls.tagging`); return the exit status.

    Without ``out=``: the results on stdout (a table or JSON), errors on stderr. With
    ``out=results.jsonl`` (or ``.csv``, or a list of both): one record per file in that file,
    written as each file finishes; files it already holds are skipped (:func:`run_to_files`).

    Raises :class:`~genre_cls.errors.UserError` for a problem with the command itself (no
    checkpoint, no inputs, a folder without audio, a bad ``format``, ``device``, ``plot``,
    ``out``, ``workers`` or ``batch``, an unusable checkpoint, a results file of another
    checkpoint), before any file is predicted. Files that fail are reported one ``error:`` line
    each; the status is then 1. With ``plot=FILE.png`` the timeline of the files that worked is drawn.
    """
    fmt = str(cfg.get("format"))
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    ckpt = cfg.get("ckpt")
    tags = cfg.get("pretrained") not in (None, "")
    if ckpt in (None, "") and not tags:
        raise UserError(f"no checkpoint given: {CKPT_HINT}, or pretrained=msd for musicnn's tags with no training")
    inputs = _inputs(cfg.get("inputs"))
    if not inputs:
        raise UserError("no input files given: pass inputs=[song.mp3,other.wav] or a folder, inputs=[~/Music] "
                        "(any format soundfile or librosa reads)")
    outs = [results_path(v) for v in _inputs(cfg.get("out"))]
    if len({p.resolve() for p in outs}) < len(outs):
        raise UserError("out= names one file twice: give one .jsonl and/or one .csv file")
    plot = _plot_path(cfg.get("plot"))
    workers, batch = _count(cfg, "workers", 0), _count(cfg, "batch", 1)
    progress = _progress(cfg.get("progress", "auto"))
    if tags and outs:
        raise UserError("out= keeps a trained checkpoint's genre predictions; the tags of pretrained= are printed: "
                        "drop out= and use format=json > tags.json")
    found = find_audio_files(inputs)
    if found.folders:
        print(f"found {found.summary()}", file=sys.stderr)
    if tags:
        from genre_cls import tagging

        return tagging.run(cfg, [str(f) for f in found.files], fmt, _device(cfg.get("device", "cpu")), plot)
    model = load_classifier(str(ckpt), _device(cfg.get("device", "cpu")))
    files = [str(f) for f in found.files]
    if outs:
        return run_to_files(model, str(ckpt), files, outs, workers, batch, progress)
    results: list[dict[str, Any]] = [{}] * len(files)
    for i, result in predict_many(model, files, workers, batch, parts=fmt == "json" or plot is not None, progress=progress):
        results[i] = result
    classes = list(model.classes)
    return print_results(
        results, (lambda rs: format_json(rs, model, str(ckpt))) if fmt == "json" else None,
        lambda rs: format_table(rs, classes), lambda rs, path: save_timeline(rs, classes, path), plot, "classified",
    )


def run_to_files(model: GenreClassifier, ckpt: str, files: list[str], outs: list[Path], workers: int | None,
                 batch: int, progress: bool) -> int:
    """Predict ``files`` into the results files ``outs`` (:class:`~genre_cls.results_file.ResultsFile`):
    the files they already hold (same checkpoint, file unchanged) are skipped, every other file's
    record is appended as it finishes. Ctrl-C stops it with what is done kept; the same command
    goes on from there. Returns 1 when a file has an error record, else 0."""
    checkpoint = CheckpointId.of(ckpt, str(model.hparams.get("model_name") or model.hparams.get("arch")))
    states = [file_state(f) for f in files]
    with ExitStack() as stack:
        targets = [stack.enter_context(ResultsFile(path, model.classes, checkpoint)) for path in outs]
        needs = [set(out.open(files, states)) for out in targets]
        todo = sorted(set().union(*needs))
        for out, need in zip(targets, needs):
            if len(need) < len(files):
                redone = f" ({out.redone:,} changed since, predicted again)" if out.redone else ""
                print(f"out={out.path}: {len(files) - len(need):,} of {len(files):,} files already done{redone}", file=sys.stderr)
        try:
            for k, result in predict_many(model, [files[i] for i in todo], workers, batch, progress=progress):
                i = todo[k]
                for out, need in zip(targets, needs):
                    if i in need:
                        out.write(out.record(result, states[i]))
        except KeyboardInterrupt:
            done = sum(os.path.abspath(f) in targets[0].records for f in files)
            print(f"interrupted: {done:,} of {len(files):,} files have a record in {', '.join(map(str, outs))}; "
                  "run the same command again to predict the rest", file=sys.stderr)
            sys.exit(130)
    records = [targets[0].records.get(os.path.abspath(f)) for f in files]
    errors = [r for r in records if r is not None and "error" in r]
    flagged = sum(1 for r in records if r is not None and r.get("flags"))
    print(f"{len(files):,} files in {', '.join(map(str, outs))}: {len(files) - len(errors):,} predicted "
          f"({flagged:,} flagged), {len(errors):,} errors", file=sys.stderr)
    for r in errors[:ERROR_LINES]:
        print(f"error: {r['error']}", file=sys.stderr)
    if len(errors) > ERROR_LINES:
        print(f"error: ... and {len(errors) - ERROR_LINES:,} more files that could not be predicted: see their error in "
              f"{outs[0]}", file=sys.stderr)
    return 1 if errors else 0


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: exit status 0, 1 (some files failed), 2 (the command is wrong) or 130 (Ctrl-C)."""
    try:
        with user_errors():  # also: piped into `head` and the like, stop quietly as other tools do
            status = run(cfg)
    except KeyboardInterrupt:  # the worker processes are stopped on the way out
        print("interrupted: nothing more was predicted", file=sys.stderr)
        sys.exit(130)
    if status:
        sys.exit(status)


# The settings of conf/predict.yaml (ckpt, inputs, out, format, device, plot, workers, batch, progress).
KEYS = settings_of("predict")
_QUOTE_HINT = """quote values with spaces, brackets, commas or ~, e.g. 'inputs=["~/My Song (live).mp3",b.wav]'"""


def check_args(argv: Sequence[str]) -> None:
    """Reject what Hydra would answer with several lines: unknown keys, bad syntax, bare file names."""
    check_settings(argv, KEYS, bare="pass files as inputs=[{arg}]", several="write lists in brackets, {key}=[a.wav,b.wav]",
                   quote=_QUOTE_HINT)


def cli() -> None:
    run_cli(main, check_args)


if __name__ == "__main__":
    cli()
