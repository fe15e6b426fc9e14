"""Tags for anyone's audio with no training: ``python -m genre_cls.predict pretrained=msd inputs=[song.mp3]``.

A pretrained musicnn (:mod:`genre_cls.pretrained`: ``msd``, ``mtt`` and their VGG baselines
``msd_vgg``, ``mtt_vgg``) answers 50 yes/no questions about every 2.992 s patch of a file ("rock?",
"female vocalists?", "guitar?"): each tag's probability, independent of the others. A file's tags
are the mean over its patches. The file is decoded at 16 kHz directly, as musicnn's own code reads
it, and cut as musicnn cuts it (:mod:`genre_cls.pretrained.tagger`).

Outputs, as ``predict`` has them for genres: ``format=table`` (each file's top tags, then all 50
tags by name, one column per file), ``format=json`` (per file: the top tags, all 50 by name, and per
patch its span, top tags and all 50) and ``plot=FILE.png`` (the top tags over time,
:func:`genre_cls.plots.tag_timeline_figure`). ``python -m genre_cls.serve pretrained=msd`` serves
the same JSON to the page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePath
from typing import Any, Sequence

from omegaconf import DictConfig

from genre_cls.data.audio import AudioDecodeError, load_audio
from genre_cls.errors import UserError, one_line
from genre_cls.library import print_results
from genre_cls.pretrained import PRETRAINED

#: Tags named as the file's (and each patch's) top tags.
TOP = 5
#: Tags drawn in the timeline.
TIMELINE_TAGS = 10
PRETRAINED_HINT = f"pretrained= names a tagger shipped with genre_cls: {', '.join(PRETRAINED)}"


def load_tagger(name: Any, device: Any = "cpu"):
    """The :class:`~genre_cls.pretrained.tagger.Tagger` called ``name`` on ``device``; an unknown
    name or missing or damaged weights is one :class:`~genre_cls.errors.UserError`."""
    from genre_cls.pretrained.tagger import Tagger

    if str(name) not in PRETRAINED:
        raise UserError(f"unknown pretrained={name}: {PRETRAINED_HINT}")
    try:
        return Tagger(str(name), device)
    except (ValueError, RuntimeError) as exc:
        raise UserError(one_line(exc)) from None


def describe(tagger) -> str:
    """The tagger in words: ``musicnn trained on the Million Song Dataset (50 tags), no training``."""
    return f"{tagger.entry.describe()}, no training"


def tag_waveform(tagger, y, sr: int) -> dict[str, Any]:
    """The tags of a 1-D waveform at ``sr`` Hz: :meth:`TagResult.as_dict <genre_cls.pretrained.tagger.TagResult.as_dict>`
    without the model's name (the document names it once)."""
    try:
        result = tagger(y, sr)
    except ValueError as exc:  # not a waveform, or not finite
        raise UserError(f"the waveform cannot be tagged: {one_line(exc)}") from exc
    record = result.as_dict(TOP)
    record.pop("model")
    return record


def tag_file(tagger, path: str | os.PathLike) -> dict[str, Any]:
    """:func:`tag_waveform` of one audio file decoded at 16 kHz, with ``"file"`` first.

    Raises :class:`~genre_cls.errors.UserError` for a missing, unreadable or non-audio file.
    """
    from genre_cls.models.musicnn import SAMPLE_RATE

    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        raise UserError(f"{path} is a folder: pass the audio files in it, e.g. inputs=[{path}/song.wav]")
    if not p.exists():
        raise UserError(f"input file {path} does not exist: pass existing audio files, inputs=[song.mp3,...]")
    try:
        y = load_audio(p, sr=SAMPLE_RATE)
    except AudioDecodeError as exc:
        raise UserError(str(exc)) from exc
    return {"file": str(path), **tag_waveform(tagger, y, SAMPLE_RATE)}


def tag_files(tagger, paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """:func:`tag_file` for each path, in order; a file that cannot be used becomes
    ``{"file": ..., "error": ...}`` so that one bad file does not cost the others' results."""
    out = []
    for path in paths:
        try:
            out.append(tag_file(tagger, path))
        except UserError as exc:
            out.append({"file": str(path), "error": str(exc)})
    return out


def format_table(results: Sequence[dict[str, Any]], tags: Sequence[str]) -> str:
    """Each file's top tags on one line, then every tag (rows, the most probable over the files
    first) by its probability in each file (columns, named by the file's name)."""
    lines = [f"{r['file']} ({r['duration_s']:g} s): " + ", ".join(f"{t['tag']} {t['probability']:.3f}" for t in r["top"])
             for r in results]
    names = [PurePath(r["file"]).name for r in results]
    if len(set(names)) < len(names):  # two files of one name in different folders
        names = [r["file"] for r in results]
    order = sorted(tags, key=lambda t: -sum(r["tags"][t] for r in results))
    width = max(len(t) for t in ["tag", *tags])
    cols = [max(len(n), 5) for n in names]
    lines += ["", "  ".join(["tag".ljust(width), *(n.rjust(w) for n, w in zip(names, cols))])]
    lines += ["  ".join([t.ljust(width), *(f"{r['tags'][t]:.3f}".rjust(w) for r, w in zip(results, cols))]) for t in order]
    return "\n".join(lines)


def format_json(results: Sequence[dict[str, Any]], tagger) -> str:
    """One JSON document: the tagger, its tag names (in its order), the files' results and the files that failed."""
    doc = {
        "pretrained": tagger.entry.name,
        "model": describe(tagger),
        "tags": list(tagger.entry.tags),
        "results": [r for r in results if "error" not in r],
        "errors": [r for r in results if "error" in r],
    }
    return json.dumps(doc, indent=2)


def save_timeline(results: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Draw the tag timeline of ``results`` (one row per file) into the PNG ``path``."""
    from genre_cls.plots import tag_timeline_figure, write_plot

    write_plot(tag_timeline_figure(results, TIMELINE_TAGS), path)


def run(cfg: DictConfig, inputs: list[str], fmt: str, device, plot: Path | None) -> int:
    """``predict pretrained=NAME``: tag ``inputs`` (already checked by predict), print the table or
    the JSON document, errors one ``error:`` line each on stderr, draw ``plot``; the exit status."""
    if cfg.get("ckpt") not in (None, ""):
        raise UserError("give ckpt= (a trained genre model) or pretrained= (tags with no training), not both")
    tagger = load_tagger(cfg.pretrained, device)
    results = tag_files(tagger, inputs)
    return print_results(
        results, (lambda rs: format_json(rs, tagger)) if fmt == "json" else None,
        lambda rs: format_table(rs, tagger.entry.tags), save_timeline, plot, "tagged",
    )
