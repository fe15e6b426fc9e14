"""The waveform kind: decoded audio, cached once as int16 (:mod:`genre_cls.data.waveformset`) at the
model's sample rate; the model's front end (log-mel by default) turns it into what the network
reads, per batch on the device. Training sees random crops, evaluation every chunk; a track's
prediction is the arithmetic mean of its chunks' probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from genre_cls.data.audio import SR, windows
from genre_cls.data.kinds.base import FileUnits, InputDatasets, InputKind, Unit, audio_tracks, class_indices
from genre_cls.data.splits import PARTS
from genre_cls.data.waveformset import PCM_SCALE, build_waveforms
from genre_cls.schema import setting


@dataclass
class WaveformSettings:
    """``model.input`` of a model that reads waveforms; its front end's settings sit beside these,
    under the front end's name (``model.input.logmel``)."""

    #: What ``bench gpu-check --quick`` and the tests' quick runs shrink it to.
    tiny: ClassVar[dict] = {"crops_per_track": 1}

    __extra__ = "ignore"
    sample_rate: int = setting(22050, ge=4000, le=192000)
    chunk_seconds: float = setting(3.0, ge=0.5, le=60.0, hint=" (seconds of audio per chunk, e.g. 3)")
    #: A chunk of exactly this many samples instead (a network that reads a fixed number of frames).
    chunk_samples: Optional[int] = setting(None, ge=64)
    crops_per_track: int = setting(8, ge=1, le=1000)


def chunk_length(input_params: dict) -> int:
    """A chunk in samples: ``chunk_samples``, else ``chunk_seconds`` at ``sample_rate``."""
    if input_params.get("chunk_samples"):
        return int(input_params["chunk_samples"])
    return int(round(float(input_params.get("chunk_seconds", 3.0)) * int(input_params.get("sample_rate", SR))))


def chunk_count(n_samples: int, chunk: int) -> int:
    """How many chunks evaluation cuts a track of ``n_samples`` into: every full chunk, plus the
    tail zero-padded when it is at least half a chunk (as :func:`~genre_cls.data.audio.windows`
    cuts a user's file); a track shorter than one chunk is one padded chunk."""
    full, rest = divmod(int(n_samples), int(chunk))
    return max(1, full + (1 if 2 * rest >= chunk else 0))


class _WaveformData:
    """The shared part of the waveform datasets: int16 tracks in one (memory-mapped) array."""

    def __init__(self, ws, rows: np.ndarray, labels: np.ndarray, chunk: int) -> None:
        self.ws = ws
        self.rows = np.asarray(rows, dtype=np.int64)  # dataset track index -> row of ``ws``
        self.labels = np.asarray(labels, dtype=np.int64)
        self.chunk = int(chunk)

    def _slice(self, row: int, start: int) -> torch.Tensor:
        off, length = int(self.ws.offsets[row]), int(self.ws.lengths[row])
        stop = min(length, start + self.chunk)
        out = np.zeros(self.chunk, dtype=np.float32)
        if stop > start:
            out[: stop - start] = np.asarray(self.ws.audio[off + start : off + stop], dtype=np.float32) / PCM_SCALE
        return torch.from_numpy(out)


class RandomCrops(_WaveformData, Dataset):
    """Training: ``crops_per_track`` chunks of every track per epoch, each at a random offset
    anywhere in the track (drawn from torch's RNG, which ``seed_everything`` seeds)."""

    def __init__(self, ws, rows, labels, tracks, chunk: int, crops_per_track: int) -> None:
        super().__init__(ws, rows, labels, chunk)
        self.tracks = np.asarray(tracks, dtype=np.int64)
        self.crops = int(crops_per_track)

    def __len__(self) -> int:
        return len(self.rows) * self.crops

    def __getitem__(self, i: int):
        k = i % len(self.rows)
        room = int(self.ws.lengths[self.rows[k]]) - self.chunk
        start = int(torch.randint(0, room + 1, ())) if room > 0 else 0
        return self._slice(int(self.rows[k]), start), int(self.labels[k]), int(self.tracks[k])


class EveryChunk(_WaveformData, Dataset):
    """Validation and test: every chunk of every track (:func:`chunk_count`), in order."""

    def __init__(self, ws, units: list[Unit], rows_of_track: dict[int, int], labels_of_track: np.ndarray, chunk: int) -> None:
        super().__init__(ws, np.array([rows_of_track[t] for t, _ in units], dtype=np.int64), labels_of_track[[t for t, _ in units]] if units else np.zeros(0, dtype=np.int64), chunk)
        self.units = units

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int):
        track, c = self.units[i]
        return self._slice(int(self.rows[i]), int(c) * self.chunk), int(self.labels[i]), int(track)


class WaveformKind(InputKind):
    name = "waveform"
    frontend = "logmel"
    settings = WaveformSettings
    voted = True
    unit = "chunk"
    shows_inputs = True
    window_label = "chunk"

    def reads_seconds(self, settings):
        return chunk_length(settings) / int(settings.get("sample_rate", SR))

    def build(self, index, splits, labels, settings, context):
        sr = int(settings.get("sample_rate", SR))
        chunk = chunk_length(settings)
        tracks = audio_tracks(index, "waveform models")
        ws = build_waveforms([str(t.audio) for t in tracks], sample_rate=sr, context=context)
        row_of_path = {p: i for i, p in enumerate(ws.paths)}
        kept = [t for t in tracks if str(t.audio) in row_of_path]
        track_ids = [t.track_id for t in kept]
        rows = np.array([row_of_path[str(t.audio)] for t in kept], dtype=np.int64)
        y = class_indices(labels, track_ids)
        position = {tid: i for i, tid in enumerate(track_ids)}
        rows_of_track = {i: int(r) for i, r in enumerate(rows)}
        datasets, units = {}, {}
        for part in PARTS:
            idx = [position[t] for t in splits[part] if t in position]
            if part == "train":
                datasets[part] = RandomCrops(ws, rows[idx], y[idx], idx, chunk, int(settings.get("crops_per_track", 8)))
                # The whole tracks this part holds (training draws crops of them, not fixed units).
                units[part] = [(i, None) for i in idx]
            else:
                units[part] = [(i, c) for i in idx for c in range(chunk_count(int(ws.lengths[rows[i]]), chunk))]
                datasets[part] = EveryChunk(ws, units[part], rows_of_track, y, chunk)
        hours = float(np.sum(ws.lengths[rows])) / sr / 3600 if len(rows) else 0.0
        return InputDatasets(
            track_ids, datasets, units, dict(ws.skipped), audio_paths=[t.audio for t in kept],
            summary={"waveforms": {"sample_rate": sr, "chunk_samples": chunk, "hours": round(hours, 3)}},
        )

    def input_params(self, settings, built):
        # The front end's settings (model.input.<frontend>, a group) travel with the sample rate and chunk.
        return {
            "sample_rate": int(settings.get("sample_rate", SR)),
            "chunk_seconds": float(settings.get("chunk_seconds", 3.0)),
            **({"chunk_samples": int(settings["chunk_samples"])} if settings.get("chunk_samples") else {}),
            **{k: dict(v) for k, v in settings.items() if isinstance(v, dict)},
        }

    def frontend_params(self, input_params, frontend):
        return {"sample_rate": int(input_params.get("sample_rate", SR)), **(input_params.get(frontend) or {})}

    def sample_rate(self, input_params):
        return int(input_params.get("sample_rate", SR))

    def unit_text(self, input_params):
        return f"{chunk_length(input_params) / self.sample_rate(input_params):g} s chunk"

    def describe(self, input_params):
        return f"log-mel spectrograms of {self.unit_text(input_params)}s"

    def window_samples(self, input_params):
        return chunk_length(input_params)

    def unit_samples(self, input_params):
        return chunk_length(input_params)

    def cut(self, y, input_params):
        chunk = chunk_length(input_params)
        n = len(y)
        # The same cut as a user's file into 30 s windows (a tail of at least half a chunk is kept).
        x = windows(y, chunk)
        spans = [(i * chunk, min(n, (i + 1) * chunk)) for i in range(len(x))]
        return FileUnits(torch.from_numpy(x), spans, np.zeros(len(x), dtype=bool), [{"chunk": i} for i in range(len(x))],
                         sample_rate=self.sample_rate(input_params))


KIND = WaveformKind()
