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

Python API::

    model = load_classifier("outputs/runs/<day>/<time>_net5/checkpoints/best.ckpt")
    results = predict_files(model, ["song.mp3"])  # [{"file", "genre", "probability", ...}]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig

from genre_cls.checkpoints import CKPT_HINT, load_classifier
from genre_cls.cmdline import check_settings
from genre_cls.conf import settings_of
from genre_cls.data.audio import SR, AudioDecodeError, load_audio, sample_problem
from genre_cls.errors import UserError, one_line, printable, run_cli, user_errors
from genre_cls.systems.classifier import GenreClassifier

FORMATS = ("table", "json")
# The key of a result's parts, by the unit of the model's input kind.
PARTS_KEY = {"window": "windows", "segment": "segments", "chunk": "chunks"}
BATCH = 64
#: The shortest audio classified: shorter is nearly all padding, and a genre for it would mean nothing.
MIN_SECONDS = 1.0


# --------------------------------------------------------------------------- inputs


@torch.inference_mode()
def _probabilities(model: GenreClassifier, x: torch.Tensor) -> np.ndarray:
    """Softmax of the model's logits, in batches on the model's device: (N, classes) float64."""
    chunks = [model(x[i : i + BATCH].to(model.device)).softmax(-1).double().cpu() for i in range(0, len(x), BATCH)]
    return torch.cat(chunks).numpy()


def _named(probs: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    return {c: round(float(p), 6) for c, p in zip(classes, probs)}


def _span(start: int, end: int, sr: int) -> dict[str, float]:
    return {"start_s": round(int(start) / sr, 3), "end_s": round(int(end) / sr, 3)}


def predict_waveform(model: GenreClassifier, y: np.ndarray, sr: int = SR) -> dict[str, Any]:
    """Genre probabilities of a 1-D waveform at ``sr`` Hz (resampled to the rate the model's input
    kind reads, :meth:`~genre_cls.data.kinds.base.InputKind.sample_rate`, when it differs).

    Returns ``{"duration_s", "genre", "probability", "probabilities", "windows" | "segments" | "chunks"}``:
    the track's top genre, its probability and every genre's probability, plus the same per
    window (image models) or per 3 s segment (segment models) with their time spans.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {y.shape}")
    if len(y) < MIN_SECONDS * sr:
        raise UserError(f"it is {len(y) / sr:.2f} s of audio, too short to classify (at least {MIN_SECONDS:g} s): a "
                        "damaged file, or one whose header says more than it holds")
    if (why := sample_problem(y)) is not None:
        raise UserError(f"the waveform is not audio: {why.replace('the file holds', 'it holds')}")
    rate = model.kind.sample_rate(model.input_params)
    if sr != rate:
        import librosa

        y = np.ascontiguousarray(librosa.resample(y, orig_sr=sr, target_sr=rate), dtype=np.float32)
    classes = list(model.classes)
    n = len(y)
    # The model's input kind cuts the file the way the model was trained (genre_cls.data.kinds).
    cut = model.kind.cut(y, model.input_params)
    probs = _probabilities(model, cut.x)
    track = probs[~cut.padding].mean(0)
    parts = [
        {**label, **_span(start, end, cut.sample_rate), **({"padding": bool(pad)} if model.kind.voted else {})}
        for label, (start, end), pad in zip(cut.labels, cut.spans, cut.padding)
    ]
    if not (np.isfinite(probs).all() and np.isfinite(track).all()):
        # NaN is not JSON, and a genre picked from NaN means nothing: the file becomes an error entry.
        raise UserError(
            "the model gives non-finite probabilities (NaN) for this audio: its weights are not finite "
            "(a run that diverged?); predict with the best.ckpt of a run that trained normally"
        )
    for part, p in zip(parts, probs):
        part.update(genre=classes[int(p.argmax())], probabilities=_named(p, classes))
    top = int(track.argmax())
    return {
        "duration_s": round(n / rate, 3),
        "genre": classes[top],
        "probability": round(float(track[top]), 6),
        "probabilities": _named(track, classes),
        "unit": model.kind.unit_text(model.input_params),
        PARTS_KEY[model.kind.unit]: parts,
    }


def predict_file(model: GenreClassifier, path: str | os.PathLike) -> dict[str, Any]:
    """:func:`predict_waveform` of one audio file, with ``"file"`` first.

    Raises :class:`~genre_cls.errors.UserError` for a missing, unreadable or non-audio file.
    """
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        raise UserError(f"{path} is a folder: pass the audio files in it, e.g. inputs=[{path}/song.wav]")
    if not p.exists():
        raise UserError(f"input file {path} does not exist: pass existing audio files, inputs=[song.mp3,...]")
    rate = model.kind.sample_rate(model.input_params)  # decoded as the model was trained
    try:
        y = load_audio(p, sr=rate)
    except AudioDecodeError as exc:
        raise UserError(str(exc)) from exc
    try:
        return {"file": str(path), **predict_waveform(model, y, rate)}
    except UserError as exc:
        raise UserError(f"cannot score {path}: {exc}") from exc


def predict_files(
    model: GenreClassifier, paths: Sequence[str | os.PathLike], skip_errors: bool = False
) -> list[dict[str, Any]]:
    """:func:`predict_file` for each path, in order.

    With ``skip_errors`` a file that cannot be used becomes ``{"file": ..., "error": ...}``
    instead of raising, so that one bad file does not cost the others' results.
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
    """One row per file: the top genre, its probability and all genre probabilities."""
    head = ["file", "genre", "prob", *map(printable, classes)]  # a label or file name with a newline stays one cell
    rows = [[printable(r["file"]), printable(r["genre"]), f"{r['probability']:.3f}",
             *(f"{r['probabilities'][c]:.3f}" for c in classes)] for r in results]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = []
    for row in [head, *rows]:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])] + [v.rjust(w) for v, w in zip(row[2:], widths[2:])]
        lines.append("  ".join(cells))
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
    try:  # by trying: permissions do not tell for root, /proc or a read-only mount
        tempfile.TemporaryFile(dir=existing).close()
    except OSError:
        raise UserError(f"cannot write plot={value}: {existing} is not writable, choose another place") from None
    return path


def save_timeline(results: Sequence[dict[str, Any]], classes: Sequence[str], path: str | os.PathLike) -> None:
    """Draw the genre timeline of ``results`` (one row per file) into the PNG ``path``."""
    from genre_cls.plots import save_figure, timeline_figure

    fig = timeline_figure(results, classes)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, path)
    except OSError as exc:
        raise UserError(f"cannot write plot={path} ({one_line(exc)}): choose a writable place") from exc


def run(cfg: DictConfig) -> int:
    """Predict ``cfg.inputs`` with ``cfg.ckpt``; print to stdout, errors to stderr; return the exit status.

    Raises :class:`~genre_cls.errors.UserError` for a problem with the command itself (no
    checkpoint, no inputs, a bad ``format``, ``device`` or ``plot``, an unusable checkpoint).
    Files that fail are reported one ``error:`` line each after the others' results; the status
    is then 1. With ``plot=FILE.png`` the timeline of the files that worked is drawn there.
    """
    fmt = str(cfg.get("format"))
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    ckpt = cfg.get("ckpt")
    if ckpt in (None, ""):
        raise UserError(f"no checkpoint given: {CKPT_HINT}")
    inputs = _inputs(cfg.get("inputs"))
    if not inputs:
        raise UserError("no input files given: pass inputs=[song.mp3,other.wav] (any format soundfile or librosa reads)")
    plot = _plot_path(cfg.get("plot"))
    model = load_classifier(str(ckpt), _device(cfg.get("device", "cpu")))
    results = predict_files(model, inputs, skip_errors=True)
    good = [r for r in results if "error" not in r]
    if fmt == "json":
        print(format_json(results, model, str(ckpt)))
    elif good:
        print(format_table(good, list(model.classes)))
    sys.stdout.flush()
    for r in results:
        if "error" in r:
            print(f"error: {r['error']}", file=sys.stderr)
    if plot is not None:
        if good:
            save_timeline(good, list(model.classes), plot)
        else:
            print(f"error: no timeline written to {plot}: no input could be classified", file=sys.stderr)
    return 0 if len(good) == len(results) else 1


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: exit status 0, 1 (some files failed) or 2 (the command is wrong)."""
    with user_errors():  # also: piped into `head` and the like, stop quietly as other tools do
        status = run(cfg)
    if status:
        sys.exit(status)


# The settings of conf/predict.yaml (ckpt, inputs, format, device, plot).
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
