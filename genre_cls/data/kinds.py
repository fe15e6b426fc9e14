"""Input kinds: what a network reads, one object per kind.

Each kind says, in one place, how the data module builds its tensors and test units from the
indexed tracks, which front end the model needs by default (:func:`genre_cls.models.frontends`), whether a
track's prediction is voted over several units, and how ``predict`` cuts a user's file:

========== ============================== ============ ======================================
kind       unit (one sample)               front end    track prediction
========== ============================== ============ ======================================
image      a 30 s clip as a 3x180x180 PNG  scale        the clip's own (one unit per track)
features   a 3 s segment, (16, 33) frames  standardize  mean of its 10 segments' probabilities
waveform   a chunk of decoded audio        logmel       mean of its chunks' probabilities
========== ============================== ============ ======================================

Units are ``(track index, unit index or None)`` pairs; the track index points into the data
module's ``track_ids``. Every batch a kind serves is ``(x, label, track_index)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from genre_cls.data.audio import N_SEGMENTS, SEGMENT_SAMPLES, SR, TRACK_SAMPLES, windows
from genre_cls.data.splits import PARTS, parse_segment_id
from genre_cls.data.waveforms import PCM_SCALE
from genre_cls.errors import DataRootError
from genre_cls.schema import setting

log = logging.getLogger(__name__)

Unit = tuple[int, "int | None"]


@dataclass
class Built:
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
class Cut:
    """A user's waveform cut the way a kind's model was trained: the batch, each unit's span of
    the file in samples, and which units lie wholly in padding after the file's end."""

    x: torch.Tensor
    spans: list[tuple[int, int]]
    padding: np.ndarray
    #: Extra fields of each unit in predict's output (``{"window": 0, "segment": 3}``).
    labels: list[dict[str, int]]


class InputKind:
    """The contract of one input kind (see the module's table)."""

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

    def build(self, dm, tracks: list, splits: dict[str, list[str]]) -> Built:
        """Datasets of ``tracks`` for each part of ``splits`` (track ids, or segment ids)."""
        raise NotImplementedError

    def frontend_params(self, input_params: dict[str, Any], frontend: str) -> dict[str, Any]:
        """Constructor arguments of the front end called ``frontend``, from the model's ``input_params``."""
        return {}

    def net_params(self, input_params: dict[str, Any]) -> dict[str, Any]:
        """What the network must know of its input besides what its front end says (the image side)."""
        return {}

    def input_params(self, dm, built: Built) -> dict[str, Any]:
        """The plain values a checkpoint keeps so that the model reads inputs as in training."""
        return dict(built.fitted)

    def cut(self, y: np.ndarray, input_params: dict[str, Any]) -> Cut:
        """A user's 22,050 Hz waveform as this kind's units, for ``predict``."""
        raise NotImplementedError

    def unit_text(self, input_params: dict[str, Any]) -> str:
        """One unit in words, for predict's output, the timeline and the page (``3 s segment``)."""
        return self.unit

    def describe(self, input_params: dict[str, Any]) -> str:
        """What the model reads, in words (the page's model line)."""
        return self.name


def _labels(dm, track_ids: list[str]) -> np.ndarray:
    return np.array([dm.class_index[dm.label_of[t]] for t in track_ids], dtype=np.int64)


def _audio_tracks(dm, tracks: list, who: str) -> list:
    with_audio = [t for t in tracks if t.audio is not None]
    if not with_audio:
        raise DataRootError(
            f"no audio files under {str(dm.data_root)!r}: {who} need the audio; "
            "with images only (Kaggle's images_original/), use model=net1..net4"
        )
    return with_audio


class ImageKind(InputKind):
    name = "image"
    frontend = "scale"
    voted = False
    unit = "window"

    def build(self, dm, tracks, splits):
        from genre_cls.data.images import build_images

        tracks = dm.image_tracks(tracks)
        made = build_images(
            [("png", t.image) if t.image is not None and dm.images != "render" else ("render", t.audio) for t in tracks],
            dm.image_size, dm.cache_dir, workers=dm.workers, progress=dm.progress,
            **dm.engine_options(), **dm.clip_options(),
        )
        track_ids = [tracks[i].track_id for i in made.ok]
        x = torch.from_numpy(made.images)
        y = torch.from_numpy(_labels(dm, track_ids))
        position = {tid: i for i, tid in enumerate(track_ids)}
        datasets, units = {}, {}
        for part in PARTS:
            idx = torch.tensor([position[t] for t in splits[part] if t in position], dtype=torch.long)
            units[part] = [(int(i), None) for i in idx]
            datasets[part] = TensorDataset(x[idx], y[idx], idx)
        return Built(
            track_ids, datasets, units, dict(made.skipped),
            summary={"images": {"mode": dm.images, **made.counts()}},
            audio_paths=[tracks[i].audio for i in made.ok],
        )

    def input_params(self, dm, built):
        return {"image_size": int(dm.image_size)}

    def unit_text(self, input_params):
        return "30 s window"

    def describe(self, input_params):
        return "mel-spectrogram images, 30 s windows"

    def net_params(self, input_params):
        return {"image_size": int(input_params.get("image_size", 180))}

    def cut(self, y, input_params):
        from genre_cls.data.images import decode_image
        from genre_cls.data.melimage import render_mel_png
        import io

        n = len(y)
        # A clip within 1% of 30 s (every GTZAN clip) is rendered whole, as Kaggle's images were.
        if abs(n - TRACK_SAMPLES) <= 0.01 * TRACK_SAMPLES:
            waves, spans = [y], [(0, n)]
        else:
            wins = windows(y, TRACK_SAMPLES)
            waves = list(wins)
            spans = [(i * TRACK_SAMPLES, min(n, (i + 1) * TRACK_SAMPLES)) for i in range(len(wins))]
        size = int(input_params.get("image_size", 180))
        out = np.empty((len(waves), 3, size, size), dtype=np.uint8)
        for i, w in enumerate(waves):
            buf = io.BytesIO()
            render_mel_png(w, SR).save(buf, format="PNG", compress_level=1)
            buf.seek(0)
            out[i] = decode_image(buf, size)
        return Cut(torch.from_numpy(out), spans, np.zeros(len(waves), dtype=bool), [{"window": i} for i in range(len(waves))])


class FeaturesKind(InputKind):
    name = "features"
    frontend = "standardize"
    voted = True
    unit = "segment"
    splits_units = True

    def build(self, dm, tracks, splits):
        from genre_cls.data.featureset import extract_dataset

        tracks = _audio_tracks(dm, tracks, "segment models (net5, net6)")
        fs = extract_dataset(
            [str(t.audio) for t in tracks], cache_dir=dm.cache_dir, workers=dm.workers,
            progress=dm.progress, **dm.engine_options(), **dm.clip_options(),
        )
        ok = set(fs.paths)
        kept = [t for t in tracks if str(t.audio) in ok]
        track_ids = [t.track_id for t in kept]
        feats = torch.from_numpy(np.ascontiguousarray(fs.features, dtype=np.float32))  # (N, 10, 16, 33)
        labels = torch.from_numpy(_labels(dm, track_ids))
        position = {tid: i for i, tid in enumerate(track_ids)}
        datasets, units = {}, {}
        for part in PARTS:
            if dm.effective_split == "segment":
                pairs = [(position[t], s) for t, s in map(parse_segment_id, splits[part]) if t in position]
            else:
                pairs = [(position[t], s) for t in splits[part] if t in position for s in range(N_SEGMENTS)]
            units[part] = list(pairs)
            ti = torch.tensor([p[0] for p in pairs], dtype=torch.long)
            si = torch.tensor([p[1] for p in pairs], dtype=torch.long)
            datasets[part] = TensorDataset(feats[ti, si], labels[ti], ti)
        train_x = datasets["train"].tensors[0].reshape(-1, feats.shape[-1]).double()
        fitted = {}
        if len(train_x):
            fitted = {"mean": train_x.mean(0).float().tolist(), "std": train_x.std(0).clamp_min(1e-8).float().tolist()}
        return Built(track_ids, datasets, units, dict(fs.skipped), fitted=fitted, audio_paths=[t.audio for t in kept])

    def input_params(self, dm, built):
        from genre_cls.data.features import FeatureParams

        return {"feature_params": FeatureParams().as_dict(), **built.fitted}

    def frontend_params(self, input_params, frontend):
        return {k: input_params[k] for k in ("mean", "std") if k in input_params}

    def unit_text(self, input_params):
        return "3 s segment"

    def describe(self, input_params):
        return "audio features, 3 s segments"

    def cut(self, y, input_params):
        from genre_cls.data.features import FeatureParams, extract_segments

        n = len(y)
        segs = windows(y, TRACK_SAMPLES).reshape(-1, SEGMENT_SAMPLES)
        x = torch.from_numpy(extract_segments(segs, FeatureParams(**(input_params.get("feature_params") or {}))))
        starts = np.arange(len(segs)) * SEGMENT_SAMPLES
        ends = np.maximum(np.minimum(starts + SEGMENT_SAMPLES, n), starts)  # a padding segment spans nothing
        labels = [{"window": k // N_SEGMENTS, "segment": k % N_SEGMENTS} for k in range(len(segs))]
        return Cut(x, list(zip(starts.tolist(), ends.tolist())), starts >= n, labels)


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


@dataclass
class WaveformSettings:
    """``model.input`` of a model that reads waveforms; its front end's settings sit beside these,
    under the front end's name (``model.input.logmel``)."""

    __extra__ = "ignore"
    sample_rate: int = setting(22050, ge=4000, le=192000)
    chunk_seconds: float = setting(3.0, ge=0.5, le=60.0, hint=" (seconds of audio per chunk, e.g. 3)")
    crops_per_track: int = setting(8, ge=1, le=1000)


#: Settings of ``model.input`` that shape training only, not what a trained model reads.
TRAINING_ONLY = ("crops_per_track",)


class WaveformKind(InputKind):
    """Decoded audio, cached once as int16 (:mod:`genre_cls.data.waveforms`); the model's front end
    (log-mel by default) turns it into what the network reads, per batch on the device. Training
    sees random crops, evaluation every chunk; a track's prediction is the arithmetic mean of its
    chunks' probabilities."""

    name = "waveform"
    frontend = "logmel"
    settings = WaveformSettings
    voted = True
    unit = "chunk"
    shows_inputs = True

    def build(self, dm, tracks, splits):
        from genre_cls.data.waveforms import build_waveforms

        opts = dm.input_options
        sr = int(opts.get("sample_rate", SR))
        chunk = int(round(float(opts.get("chunk_seconds", 3.0)) * sr))
        tracks = _audio_tracks(dm, tracks, "waveform models")
        clip = dm.clip_options()
        ws = build_waveforms(
            [str(t.audio) for t in tracks], sample_rate=sr, seconds=clip.get("clip_seconds"), clip=clip.get("clip", "first"),
            cache_dir=dm.cache_dir, workers=dm.workers, progress=dm.progress, **dm.engine_options(),
        )
        row_of_path = {p: i for i, p in enumerate(ws.paths)}
        kept = [t for t in tracks if str(t.audio) in row_of_path]
        track_ids = [t.track_id for t in kept]
        rows = np.array([row_of_path[str(t.audio)] for t in kept], dtype=np.int64)
        labels = _labels(dm, track_ids)
        position = {tid: i for i, tid in enumerate(track_ids)}
        rows_of_track = {i: int(r) for i, r in enumerate(rows)}
        datasets, units = {}, {}
        for part in PARTS:
            idx = [position[t] for t in splits[part] if t in position]
            if part == "train":
                datasets[part] = RandomCrops(ws, rows[idx], labels[idx], idx, chunk, int(opts.get("crops_per_track", 8)))
                # The whole tracks this part holds (training draws crops of them, not fixed units).
                units[part] = [(i, None) for i in idx]
            else:
                units[part] = [(i, c) for i in idx for c in range(chunk_count(int(ws.lengths[rows[i]]), chunk))]
                datasets[part] = EveryChunk(ws, units[part], rows_of_track, labels, chunk)
        hours = float(np.sum(ws.lengths[rows])) / sr / 3600 if len(rows) else 0.0
        return Built(
            track_ids, datasets, units, dict(ws.skipped), audio_paths=[t.audio for t in kept],
            summary={"waveforms": {"sample_rate": sr, "chunk_samples": chunk, "hours": round(hours, 3)}},
        )

    def input_params(self, dm, built):
        # The front end's settings (model.input.<frontend>) travel with the sample rate and chunk.
        opts = dm.input_options
        return {
            "sample_rate": int(opts.get("sample_rate", SR)),
            "chunk_seconds": float(opts.get("chunk_seconds", 3.0)),
            **{k: dict(v or {}) for k, v in opts.items() if k not in ("sample_rate", "chunk_seconds", *TRAINING_ONLY)},
        }

    def frontend_params(self, input_params, frontend):
        return {"sample_rate": int(input_params.get("sample_rate", SR)), **(input_params.get(frontend) or {})}

    def unit_text(self, input_params):
        return f"{float(input_params.get('chunk_seconds', 3.0)):g} s chunk"

    def describe(self, input_params):
        return f"log-mel spectrograms of {self.unit_text(input_params)}s"

    def cut(self, y, input_params):
        sr = int(input_params.get("sample_rate", SR))
        if sr != SR:
            import librosa

            y = np.ascontiguousarray(librosa.resample(y, orig_sr=SR, target_sr=sr), dtype=np.float32)
        chunk = int(round(float(input_params.get("chunk_seconds", 3.0)) * sr))
        n = len(y)
        # The same cut as a user's file into 30 s windows (a tail of at least half a chunk is kept).
        x = windows(y, chunk)
        k = len(x)
        # Spans in 22,050 Hz samples, like every kind's.
        scale = SR / sr
        spans = [(int(i * chunk * scale), int(min(n, (i + 1) * chunk) * scale)) for i in range(k)]
        return Cut(torch.from_numpy(x), spans, np.zeros(k, dtype=bool), [{"chunk": i} for i in range(k)])


KINDS: dict[str, InputKind] = {kind.name: kind for kind in (ImageKind(), FeaturesKind(), WaveformKind())}


def kind_of(name: str) -> InputKind:
    """The input kind called ``name`` (``image``, ``features`` or ``waveform``)."""
    try:
        return KINDS[name]
    except KeyError:
        from genre_cls.errors import UserError

        raise UserError(f"unknown input kind {name!r}: choose one of {', '.join(KINDS)}") from None


__all__ = ["Built", "Cut", "InputKind", "KINDS", "kind_of", "chunk_count", "RandomCrops", "EveryChunk"]
