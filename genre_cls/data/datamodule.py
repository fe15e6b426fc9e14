"""``GTZANDataModule``: the one data module every model plugs into.

``input="image"`` serves ``(3, 180, 180)`` uint8 spectrogram images (Net1-Net4);
``input="features"`` serves ``(16, 33)`` float32 feature sequences, one per 3 s segment
(Net5, Net6). Every batch is ``(x, label, track_index)``; ``track_index`` points into
:attr:`GTZANDataModule.track_ids` so that segment predictions can be voted per track.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from genre_cls import GENRES
from genre_cls.data.audio import N_SEGMENTS
from genre_cls.data.cache import default_cache_dir
from genre_cls.data.index import GTZANIndex, index_gtzan
from genre_cls.data.splits import PARTS, check_folds, genre_of, make_splits, parse_segment_id, track_of
from genre_cls.data.workers import mp_context
from genre_cls.errors import DataRootError, UserError

log = logging.getLogger(__name__)

# What the data module serves; each network declares which one it reads (genre_cls.models.ARCHITECTURES).
INPUTS = ("image", "features")


class InMemoryLoader:
    """Batches sliced from whole tensors that already sit on the training device.

    GTZAN fits in memory many times over (999 images are 97 MB as uint8), so the data are
    moved to the device once and each batch is one indexing operation: no per-item collate,
    no host-to-device copy per step. The shuffle order comes from torch's global RNG, which
    ``seed_everything`` seeds.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, shuffle: bool, device=None) -> None:
        self.tensors = [t.to(device) if device is not None else t for t in tensors]
        self.batch_size = batch_size
        self.shuffle = shuffle

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self):
        n = len(self.tensors[0])
        order = torch.randperm(n).to(self.tensors[0].device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                yield tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                idx = order[start : start + self.batch_size]
                yield tuple(t[idx] for t in self.tensors)


class GTZANDataModule(L.LightningDataModule):
    """GTZAN (or the synthetic stand-in) indexed, split, decoded once and served from memory.

    Args:
        root: a GTZAN folder (Kaggle, marsyas and/or flat layout); ``None`` generates the
            synthetic set once into ``cache_dir`` and uses it.
        input: ``"image"`` or ``"features"``.
        split: ``"track"``, ``"segment"`` (features only; image models fall back to ``track``)
            or ``"filtered"``.
        seed: decides the split (and nothing else here).
        synthetic: keyword arguments of :func:`genre_cls.data.synth.generate` for ``root=None``.
        cache_dir: where decoded images, features and the synthetic set live
            (default: :func:`~genre_cls.data.cache.default_cache_dir`).
        loader: ``"memory"`` (default: whole tensors moved to the training device once,
            batches sliced there) or ``"torch"`` (a ``DataLoader`` with ``num_workers``
            worker processes and ``pin_memory``; use it with DDP, whose sampler it needs).
        folds, fold: ``folds=K`` makes test fold ``fold`` (0..K-1) of a stratified K-fold over
            the split's units (:func:`genre_cls.data.splits.make_splits`); ``None``: no folds.
        images: where image models' images come from: ``"auto"`` (Kaggle's PNG where a track
            has one, else rendered from its audio), ``"kaggle"`` (PNGs only) or ``"render"``
            (every image rendered from audio, as ``predict`` does).
    """

    def __init__(
        self,
        root: str | None = None,
        input: str = "image",
        split: str = "track",
        seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        fractions: Sequence[float] = (0.7, 0.1, 0.2),
        image_size: int = 180,
        min_seconds: float = 10.0,
        cache_dir: str | None = None,
        synthetic: dict | None = None,
        feature_workers: int | None = None,
        progress: bool = True,
        loader: str = "memory",
        folds: int | None = None,
        fold: int = 0,
        images: str = "auto",
    ) -> None:
        super().__init__()
        from genre_cls.data.images import IMAGE_MODES

        if images not in IMAGE_MODES:
            raise UserError(f"unknown data.images {images!r}: choose one of {', '.join(IMAGE_MODES)}")
        self.images = images
        self.image_counts: dict[str, int] = {}
        self.folds = folds
        self.fold = fold
        if loader not in ("memory", "torch"):
            raise UserError(f"unknown data.loader {loader!r}: choose memory or torch")
        self.loader = loader
        if input not in INPUTS:
            raise UserError(f"unknown data input {input!r}: choose one of {', '.join(INPUTS)}")
        self.root = root
        self.input = input
        self.split = split
        self.seed = seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.fractions = tuple(fractions)
        self.image_size = image_size
        self.min_seconds = min_seconds
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.synthetic = dict(synthetic or {})
        self.feature_workers = feature_workers
        self.progress = progress
        self.classes = list(GENRES)
        self.index: GTZANIndex | None = None
        self.splits: dict[str, list[str]] = {}
        self.track_ids: list[str] = []
        self.datasets: dict[str, TensorDataset] = {}
        self.feature_mean: np.ndarray | None = None
        self.feature_std: np.ndarray | None = None
        self.extraction_skipped: dict[str, str] = {}
        self.audio_paths: list[Path] = []
        self.train_units: list[tuple[int, int]] = []
        # The (track index, segment index or None for a whole track) of each sample, per part,
        # in the order the loaders serve them (predictions.csv names its test units from these).
        self.units: dict[str, list[tuple[int, int | None]]] = {}

    # -- where the data lives -------------------------------------------------------------
    @property
    def data_root(self) -> Path:
        if self.root is not None:
            return Path(self.root).expanduser()
        tpg = self.synthetic.get("tracks_per_genre", 30)
        seed = self.synthetic.get("seed", 0)
        return self.cache_dir / "synthetic" / f"gtzan-synth-n{tpg}-s{seed}"

    @property
    def effective_split(self) -> str:
        # Images have no segments: a segment split of images is the track split.
        return "track" if self.input == "image" and self.split == "segment" else self.split

    def prepare_data(self) -> None:
        """Generate the synthetic set once (atomically: built aside, then renamed into place)."""
        if self.root is not None:
            return
        from genre_cls.data import synth

        target = self.data_root
        if synth.is_complete(target, **self.synthetic):
            return
        synth.remove_stale_builds(target)  # left by runs killed while they generated it
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        log.info("generating the synthetic GTZAN set into %s (once)", target)
        synth.generate(tmp, progress=self.progress, **self.synthetic)
        if target.exists() and not synth.is_complete(target, **self.synthetic):
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another process published it first
            shutil.rmtree(tmp, ignore_errors=True)

    # -- decoding, splitting ----------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        # Checked here, not in __init__: Hydra's instantiate would wrap the one-line error in its own report.
        check_folds(self.folds, self.fold, self.effective_split)
        self.prepare_data()
        self.index = index_gtzan(self.data_root, min_seconds=self.min_seconds)
        all_ids = [t.track_id for t in self.index.tracks]
        self.splits = make_splits(
            all_ids, self.effective_split, self.seed, self.fractions, N_SEGMENTS, self.folds, self.fold
        )
        # A file that passed the index but failed to decode (or gave non-finite features) is
        # skipped there: one log line each, in the run's log like the index's own skips.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="skipping .*")
            if self.input == "image":
                self._setup_images()
            else:
                self._setup_features()
        for path, why in self.extraction_skipped.items():
            log.warning("skipping %s: %s", path, why)
        # The split holds the tracks this input really uses: splits.json never lists a track
        # that was skipped after indexing (which tracks each side holds is still decided over
        # every indexed track, so other models keep the same test tracks).
        used = set(self.track_ids)
        self.splits = {part: [u for u in units if track_of(u) in used] for part, units in self.splits.items()}
        for part in PARTS:
            if len(self.datasets[part]) == 0:
                raise UserError(f"the {part} split is empty for input={self.input}: use more tracks or another data.split")
        log.info(
            "data: %s, split=%s, train/val/test = %s",
            self.data_root, self.effective_split, "/".join(str(len(self.datasets[p])) for p in PARTS),
        )

    def _labels(self, track_ids: Sequence[str]) -> np.ndarray:
        return np.array([self.classes.index(genre_of(t)) for t in track_ids], dtype=np.int64)

    def _setup_images(self) -> None:
        from genre_cls.data.images import build_images

        tracks = self._image_tracks()
        made = build_images(
            [("png", t.image) if t.image is not None and self.images != "render" else ("render", t.audio) for t in tracks],
            self.image_size, self.cache_dir, workers=self.feature_workers, progress=self.progress,
        )
        self.extraction_skipped.update(made.skipped)
        self.image_counts = made.counts()
        self.track_ids = [tracks[i].track_id for i in made.ok]
        x = torch.from_numpy(made.images)
        y = torch.from_numpy(self._labels(self.track_ids))
        position = {tid: i for i, tid in enumerate(self.track_ids)}
        for part in PARTS:
            idx = torch.tensor([position[t] for t in self.splits[part] if t in position], dtype=torch.long)
            self.units[part] = [(int(i), None) for i in idx]
            self.datasets[part] = TensorDataset(x[idx], y[idx], idx)

    def _image_tracks(self) -> list:
        """The tracks that get an image under ``self.images``; a mode the data cannot serve is
        one :class:`UserError` that says what to do."""
        tracks = self.index.tracks
        root = str(self.data_root)
        if self.images == "kaggle":
            lacking = [t for t in tracks if t.image is None]
            if lacking:
                raise DataRootError(
                    f"data.images=kaggle but {len(lacking)} of {len(tracks)} tracks under {root!r} have no Kaggle PNG "
                    "(images_original/<genre>/<genre>000NN.png): use data.images=auto to render the missing ones "
                    "from their audio, or data.images=render for all"
                )
            return tracks
        usable = [t for t in tracks if t.audio is not None or (self.images == "auto" and t.image is not None)]
        if not usable:
            raise DataRootError(
                f"data.images=render needs audio files, and {root!r} holds only images: use data.images=auto or kaggle"
            )
        if len(usable) < len(tracks):
            log.warning("data.images=render: %d tracks have an image but no audio and are left out", len(tracks) - len(usable))
        return usable

    def _setup_features(self) -> None:
        from genre_cls.data.featureset import extract_dataset

        tracks = self.index.with_audio()
        if not tracks:
            raise DataRootError(
                f"no audio (genres_original/, genres/ or flat <genre>/ folders) under {str(self.data_root)!r}: "
                "segment models (net5, net6) need the audio files; with images only, use model=net1..net4"
            )
        fs = extract_dataset(
            [str(t.audio) for t in tracks],
            cache_dir=self.cache_dir,
            workers=self.feature_workers,
            progress=self.progress,
        )
        self.extraction_skipped = dict(fs.skipped)
        ok = set(fs.paths)
        kept = [t for t in tracks if str(t.audio) in ok]
        self.track_ids = [t.track_id for t in kept]
        self.audio_paths = [t.audio for t in kept]
        feats = torch.from_numpy(np.ascontiguousarray(fs.features, dtype=np.float32))  # (N, 10, 16, 33)
        labels = torch.from_numpy(self._labels(self.track_ids))
        position = {tid: i for i, tid in enumerate(self.track_ids)}
        for part in PARTS:
            if self.effective_split == "segment":
                pairs = [
                    (position[track], seg)
                    for track, seg in map(parse_segment_id, self.splits[part])
                    if track in position
                ]
            else:
                pairs = [(position[t], s) for t in self.splits[part] if t in position for s in range(N_SEGMENTS)]
            if part == "train":
                self.train_units = pairs
            self.units[part] = list(pairs)
            ti = torch.tensor([p[0] for p in pairs], dtype=torch.long)
            si = torch.tensor([p[1] for p in pairs], dtype=torch.long)
            self.datasets[part] = TensorDataset(feats[ti, si], labels[ti], ti)
        train_x = self.datasets["train"].tensors[0].reshape(-1, feats.shape[-1]).double()
        self.feature_mean = train_x.mean(0).float().numpy()
        self.feature_std = train_x.std(0).clamp_min(1e-8).float().numpy()

    def train_waveforms(self) -> tuple[np.ndarray, np.ndarray]:
        """The real training-split segments as waveforms: ``(N, 66000)`` float32 and labels.

        The same (track, segment) units as the training features, decoded again (segment
        models only); Net6's waveform CGAN learns from these and nothing else.
        """
        from tqdm.auto import tqdm

        from genre_cls.data.audio import load_audio, segments

        by_track: dict[int, list[int]] = {}
        for track, seg in self.train_units:
            by_track.setdefault(track, []).append(seg)
        xs, ys = [], []
        for track, segs in tqdm(sorted(by_track.items()), desc="decoding training audio", disable=not self.progress):
            xs.append(segments(load_audio(self.audio_paths[track]))[segs])
            ys += [self.classes.index(genre_of(self.track_ids[track]))] * len(segs)
        return np.concatenate(xs).astype(np.float32), np.array(ys, dtype=np.int64)

    def add_train_samples(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Append extra (e.g. generated) training samples; validation and test never change.

        Their track index is -1: they belong to no real track.
        """
        xs, ys, ts = self.datasets["train"].tensors
        extra_t = torch.full((len(y),), -1, dtype=torch.long)
        self.datasets["train"] = TensorDataset(
            torch.cat([xs, x.to(xs.dtype)]), torch.cat([ys, y.to(ys.dtype)]), torch.cat([ts, extra_t])
        )

    def summary(self) -> dict:
        """The data summary written next to each run: index counts, skipped files, split sizes."""
        out = self.index.summary() if self.index is not None else {}
        out["skipped"] = {**out.get("skipped", {}), **self.extraction_skipped}
        if self.index is not None and self.track_ids:
            # What was used, after the files skipped while decoding; the index's counts stay as tracks_indexed.
            out["tracks_indexed"] = out.get("tracks")
            out["tracks"] = len(self.track_ids)
            out["tracks_per_genre"] = {g: sum(genre_of(t) == g for t in self.track_ids) for g in self.classes}
        out.update(
            input=self.input,
            split=self.effective_split,
            synthetic=self.root is None,
            samples={p: len(d) for p, d in self.datasets.items()},
        )
        if self.input == "image":
            out["images"] = {"mode": self.images, **self.image_counts}
        return out

    # -- loaders -----------------------------------------------------------------------------
    def _loader(self, part: str, shuffle: bool, batch_size: int):
        trainer = getattr(self, "trainer", None)
        # Several processes (DDP) need the DataLoader, whose distributed sampler shards the data.
        if self.loader == "memory" and (trainer is None or trainer.world_size == 1):
            device = trainer.strategy.root_device if trainer is not None else None
            return InMemoryLoader(self.datasets[part].tensors, batch_size, shuffle, device)
        return DataLoader(
            self.datasets[part],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            multiprocessing_context=mp_context() if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)
