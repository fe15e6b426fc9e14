"""The contract of an input kind (:class:`InputKind`) and what kinds hand back: the datasets they
build for training (:class:`InputDatasets`) and a user's file cut into a model's units for
``predict`` (:class:`FileUnits`). See :mod:`genre_cls.data.kinds` for the kinds themselves."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from genre_cls.data.audio import SR
from genre_cls.data.context import BuildContext
from genre_cls.data.tracks import Track, TrackIndex
from genre_cls.errors import DataRootError

Unit = tuple[int, "int | None"]


@dataclass
class InputDatasets:
    """What a kind made of the indexed tracks: per part a dataset and its units (in loader order)."""

    track_ids: list[str]
    datasets: dict[str, Dataset]
    units: dict[str, list[Unit]]
    skipped: dict[str, str] = field(default_factory=dict)
    #: Model parameters taken from the training data (e.g. feature statistics), for ``input_params``.
    fitted: dict[str, Any] = field(default_factory=dict)
    #: Extra facts for ``data_summary.json``.
    summary: dict[str, Any] = field(default_factory=dict)
    #: The audio file of each track (kinds that decode audio), for Net6's CGAN.
    audio_paths: list[Any] = field(default_factory=list)


@dataclass
class FileUnits:
    """A user's waveform cut the way a kind's model was trained: the batch, each unit's span of
    the file in samples at ``sample_rate``, and which units lie wholly in padding after its end."""

    x: torch.Tensor
    spans: list[tuple[int, int]]
    padding: np.ndarray
    #: Extra fields of each unit in predict's output (``{"window": 0, "segment": 3}``).
    labels: list[dict[str, int]]
    sample_rate: int = SR

    def __len__(self) -> int:
        return len(self.x)


class InputKind:
    """What a network reads, as one object (:mod:`genre_cls.data.kinds`): how the data module's
    tracks become tensors and units, which front end a model gets by default, whether a track's
    prediction is voted over units, and how ``predict`` cuts a user's file.

    A kind never sees the data module: :meth:`build` gets the indexed tracks, the split, the labels,
    its settings (a model's ``model.input``, and the data config's ``image_size``, ``images`` and
    ``split``) and a :class:`~genre_cls.data.context.BuildContext` (cache folder, workers, progress
    bars, engine, clip). Every batch a kind serves is ``(x, label, track_index)``; units are ``(track index, unit
    index or None)`` pairs, the track index pointing into :attr:`InputDatasets.track_ids`.
    """

    name: ClassVar[str] = ""
    #: The front end a model reading this kind gets unless its config names another
    #: (:func:`genre_cls.models.frontends`).
    frontend: ClassVar[str] = ""
    #: The schema of ``model.input``, the kind's settings in a model config (``None``: it has none).
    settings: ClassVar[Optional[type]] = None
    #: Several units per track, whose probabilities are averaged into the track's.
    voted: ClassVar[bool] = False
    #: What one unit is called in predict's output and the report ("segment", "chunk", "window").
    unit: ClassVar[str] = "window"
    #: Whether ``data.split=segment`` can put one track's units on several sides.
    splits_units: ClassVar[bool] = False
    #: Whether TensorBoard shows a batch of the front end's output (spectrograms made on the device).
    shows_inputs: ClassVar[bool] = False
    #: The entry of a unit's labels that counts :meth:`window_samples` windows from the file's start.
    window_label: ClassVar[str] = "window"

    def reads_seconds(self, settings: dict[str, Any]) -> float | None:
        """The seconds of audio a model of this kind reads at once (a shorter track is zero-padded up
        to it); ``None``: it reads no audio."""
        return None

    def build(self, index: TrackIndex, splits: dict[str, list[str]], labels: Mapping[str, int],
              settings: dict[str, Any], context: BuildContext) -> InputDatasets:
        """Datasets of ``index``'s tracks for each part of ``splits`` (track ids, or segment ids when
        ``settings["split"]`` is ``segment`` and the kind :attr:`splits_units`), labelled by
        ``labels`` (track id -> class index)."""
        raise NotImplementedError

    def input_params(self, settings: dict[str, Any], built: InputDatasets) -> dict[str, Any]:
        """The plain values a checkpoint keeps so that the model reads inputs as in training."""
        return dict(built.fitted)

    def frontend_params(self, input_params: dict[str, Any], frontend: str) -> dict[str, Any]:
        """Constructor arguments of the front end called ``frontend``, from the model's ``input_params``."""
        return {}

    def net_params(self, input_params: dict[str, Any]) -> dict[str, Any]:
        """What the network must know of its input besides what its front end says (the image side)."""
        return {}

    def sample_rate(self, input_params: dict[str, Any]) -> int:
        """The rate :meth:`cut` reads a user's waveform at (``predict`` decodes files at it)."""
        return SR

    def cut(self, y: np.ndarray, input_params: dict[str, Any]) -> FileUnits:
        """A user's waveform at :meth:`sample_rate` as this kind's units, for ``predict``."""
        raise NotImplementedError

    def cut_many(self, waves: list[np.ndarray], input_params: dict[str, Any], threads: int | None = None) -> list[FileUnits]:
        """:meth:`cut` of each waveform, in one go where the kind gains from it (one batched feature
        extraction for several files); ``threads`` caps the threads it may use (``None``: its choice)."""
        return [self.cut(y, input_params) for y in waves]

    def window_samples(self, input_params: dict[str, Any]) -> int | None:
        """The period of :meth:`cut`, in samples at :meth:`sample_rate`: a kind that cuts a waveform
        window by window (the units of a window depend on its samples alone; the last window is kept
        when at least half of it is audio, :func:`~genre_cls.data.audio.windows`) returns its window,
        and a long file is then cut piece by piece (:meth:`pieces`) into the units it gets whole.
        ``None``: the kind cuts whole files only."""
        return None

    def unit_samples(self, input_params: dict[str, Any]) -> int | None:
        """One unit's length in samples at :meth:`sample_rate` (``None``: it has none)."""
        return None

    def pieces(self, blocks: Iterable[np.ndarray], input_params: dict[str, Any], piece_samples: int) -> Iterator[tuple[int, np.ndarray]]:
        """A file streamed as ``blocks`` of samples, as ``(offset, piece)`` pairs whose :meth:`cut`
        (moved to the file's time by :meth:`place`) gives the units of the whole file's :meth:`cut`.

        Pieces hold a whole number of windows (about ``piece_samples``), so memory stays bounded
        whatever the file's length. The last piece holds at least two windows (or the whole file):
        the rules a kind applies to a file's end, and to a clip of about one window, then see what
        they see in the whole file. A kind without :meth:`window_samples` gets the whole file as one piece.
        """
        window = self.window_samples(input_params)
        if window is None:
            parts = list(blocks)
            yield 0, (np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32))
            return
        step = max(1, int(piece_samples) // window) * window
        held: list[np.ndarray] = []
        size, offset = 0, 0
        for block in blocks:
            held.append(block)
            size += len(block)
            if size >= step + 2 * window:
                y = np.concatenate(held)
                while len(y) >= step + 2 * window:
                    yield offset, y[:step]
                    y, offset = y[step:], offset + step
                held, size = [y], len(y)
        yield offset, (np.concatenate(held) if held else np.zeros(0, dtype=np.float32))

    def place(self, units: FileUnits, offset: int, input_params: dict[str, Any]) -> FileUnits:
        """``units`` of a piece that starts ``offset`` samples into its file (:meth:`pieces`), in the
        file's time: their spans moved by ``offset``, :attr:`window_label` counted from the file's start."""
        if offset == 0:
            return units
        windows = offset // (self.window_samples(input_params) or offset)
        return replace(
            units,
            spans=[(start + offset, end + offset) for start, end in units.spans],
            labels=[{**label, self.window_label: label[self.window_label] + windows} if self.window_label in label else label
                    for label in units.labels],
        )

    def unit_text(self, input_params: dict[str, Any]) -> str:
        """One unit in words, for predict's output, the timeline and the page (``3 s segment``)."""
        return self.unit

    def describe(self, input_params: dict[str, Any]) -> str:
        """What the model reads, in words (the page's model line)."""
        return self.name


def class_indices(labels: Mapping[str, int], track_ids: list[str]) -> np.ndarray:
    """The class index of each of ``track_ids``."""
    return np.array([labels[t] for t in track_ids], dtype=np.int64)


def audio_tracks(index: TrackIndex, who: str) -> list[Track]:
    """The tracks of ``index`` that have audio; none is one :class:`DataRootError` naming ``who``."""
    with_audio = [t for t in index.tracks if t.audio is not None]
    if not with_audio:
        raise DataRootError(
            f"no audio files under {str(index.root)!r}: {who} need the audio; "
            "with images only (Kaggle's images_original/), use model=net1..net4"
        )
    return with_audio
