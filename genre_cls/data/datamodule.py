"""``GenreDataModule``: the one data module every model plugs into.

A dataset indexer (:mod:`genre_cls.data.collections`: ``gtzan``, ``folders``, ``fma``) finds the
labelled tracks and the class list; :func:`genre_cls.data.splits.make_splits` splits them; the
model's input kind (:mod:`genre_cls.data.kinds`: ``image``, ``features``, ``waveform``) builds
the tensors. Every batch is ``(x, label, track_index)``; ``track_index`` points into
:attr:`GenreDataModule.track_ids` so that unit predictions can be voted per track.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from genre_cls.data.audio import N_SEGMENTS
from genre_cls.data.cache import default_cache_dir
from genre_cls.data.index import TrackIndex
from genre_cls.data.kinds import KINDS, Built, kind_of
from genre_cls.data.splits import PARTS, check_folds, make_splits, track_of
from genre_cls.data.workers import mp_context
from genre_cls.errors import DataRootError, UserError

log = logging.getLogger(__name__)

# What the data module can serve; each network declares which one it reads (genre_cls.models.ARCHITECTURES).
INPUTS = tuple(KINDS)
ENGINES = ("local", "ray")


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


class GenreDataModule(L.LightningDataModule):
    """A labelled collection indexed, split, decoded once and served to any model.

    Args:
        root: the collection's folder; ``None`` (GTZAN only) generates the synthetic set once
            into ``cache_dir`` and uses it.
        dataset: ``gtzan`` (default), ``folders`` (``<root>/<label>/**/<audio file>``) or ``fma``.
        dataset_options: the indexer's own options (e.g. ``{"subset": "small"}`` for FMA).
        input: the model's input kind: ``image``, ``features`` or ``waveform``.
        input_options: the input kind's settings from the model's config (waveform: ``sample_rate``,
            ``chunk_seconds``, ``crops_per_track``, ``logmel``).
        split: ``track``, ``segment`` (kinds with units only; others fall back to ``track``),
            ``filtered`` (GTZAN) or ``official`` (a dataset's own split, e.g. FMA's).
        seed: decides the split (and nothing else here).
        clip, clip_seconds: the part of a longer track the models see: its ``first`` or
            ``middle`` ``clip_seconds`` (``None``: as it is; the study's nets always read 30 s).
        engine, ray_address: where extraction runs: ``local`` worker processes, or ``ray`` (a
            local Ray, or the cluster at ``ray_address``).
        synthetic: keyword arguments of :func:`genre_cls.data.synth.generate` for ``root=None``.
        cache_dir: where decoded images, features, waveforms and the synthetic set live
            (default: :func:`~genre_cls.data.cache.default_cache_dir`).
        loader: ``"memory"`` (default: whole tensors moved to the training device once,
            batches sliced there) or ``"torch"`` (a ``DataLoader`` with ``num_workers`` worker
            processes and ``pin_memory``; DDP and the waveform kind always use it).
        folds, fold: ``folds=K`` makes test fold ``fold`` (0..K-1) of a stratified K-fold over
            the split's units (:func:`genre_cls.data.splits.make_splits`); ``None``: no folds.
        images: where image models' images come from: ``"auto"`` (Kaggle's PNG where a track
            has one, else rendered from its audio), ``"kaggle"`` (PNGs only) or ``"render"``.
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
        dataset: str = "gtzan",
        dataset_options: dict | None = None,
        input_options: dict | None = None,
        clip: str = "first",
        clip_seconds: float | None = None,
        engine: str = "local",
        ray_address: str | None = None,
    ) -> None:
        super().__init__()
        from genre_cls.data.images import IMAGE_MODES

        if images not in IMAGE_MODES:
            raise UserError(f"unknown data.images {images!r}: choose one of {', '.join(IMAGE_MODES)}")
        if loader not in ("memory", "torch"):
            raise UserError(f"unknown data.loader {loader!r}: choose memory or torch")
        if engine not in ENGINES:
            raise UserError(f"unknown data.engine {engine!r}: choose one of {', '.join(ENGINES)}")
        self.kind = kind_of(input)
        self.images = images
        self.folds = folds
        self.fold = fold
        self.loader = loader
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
        self.dataset = dataset
        self.dataset_options = dict(dataset_options or {})
        self.input_options = dict(input_options or {})
        self.clip = clip
        self.clip_seconds = clip_seconds
        self.engine = engine
        self.ray_address = ray_address
        self.classes: list[str] = []
        self.class_index: dict[str, int] = {}
        self.label_of: dict[str, str] = {}
        self.index: TrackIndex | None = None
        self.splits: dict[str, list[str]] = {}
        self.track_ids: list[str] = []
        self.datasets: dict[str, Dataset] = {}
        self.built: Built | None = None
        self.extraction_skipped: dict[str, str] = {}
        self.audio_paths: list[Path] = []
        # The (track index, unit index or None for a whole track) of each sample, per part,
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
        # Kinds without units inside a track: a segment split of them is the track split.
        return "track" if self.split == "segment" and not self.kind.splits_units else self.split

    @property
    def feature_mean(self) -> np.ndarray | None:
        fitted = self.built.fitted if self.built is not None else {}
        return np.asarray(fitted["mean"], dtype=np.float32) if "mean" in fitted else None

    @property
    def feature_std(self) -> np.ndarray | None:
        fitted = self.built.fitted if self.built is not None else {}
        return np.asarray(fitted["std"], dtype=np.float32) if "std" in fitted else None

    @property
    def train_units(self) -> list[tuple[int, int | None]]:
        """The training split's units (``(track index, segment)`` for segment models)."""
        return self.units.get("train", [])

    def engine_options(self) -> dict[str, Any]:
        """Where extraction runs (passed on only when it is not the local pool)."""
        return {} if self.engine == "local" else {"engine": self.engine, "ray_address": self.ray_address}

    def clip_options(self) -> dict[str, Any]:
        """Which part of a longer track the models see (passed on only when set)."""
        return {} if self.clip_seconds is None else {"clip": self.clip, "clip_seconds": float(self.clip_seconds)}

    def input_params(self) -> dict[str, Any]:
        """The plain values a checkpoint keeps so that its model reads inputs as in training."""
        return self.kind.input_params(self, self.built)

    def prepare_data(self) -> None:
        """Generate the synthetic set once (atomically: built aside, then renamed into place)."""
        if self.root is not None:
            return
        if self.dataset != "gtzan":
            raise DataRootError(f"data={self.dataset} needs data.root: the folder that holds the collection")
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

    # -- indexing, splitting, decoding ---------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        from genre_cls.data.collections import index_dataset

        # Checked here, not in __init__: Hydra's instantiate would wrap the one-line error in its own report.
        check_folds(self.folds, self.fold, self.effective_split)
        self.prepare_data()
        self.index = index_dataset(self.dataset, self.data_root, min_seconds=self.min_seconds, **self.dataset_options)
        self.classes = list(self.index.classes)
        if len(self.classes) < 2:
            found = f"only the class {self.classes[0]!r}" if self.classes else "no class"
            raise DataRootError(
                f"data={self.dataset} found {found} under {str(self.data_root)!r}: a classifier needs at least two "
                "(for data=folders, one sub-folder per label: <root>/<label>/**/<audio file>)"
            )
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.label_of = {t.track_id: t.label for t in self.index.tracks}
        tracks = self.index.tracks
        self.splits = make_splits(
            [t.track_id for t in tracks], self.effective_split, self.seed, self.fractions, N_SEGMENTS, self.folds, self.fold,
            labels=self.label_of, predefined={t.track_id: t.split for t in tracks if t.split is not None},
        )
        # A file that passed the index but failed to decode (or gave non-finite values) is
        # skipped there: one log line each, in the run's log like the index's own skips.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="skipping .*")
            self.built = self.kind.build(self, tracks, self.splits)
        self.track_ids = self.built.track_ids
        self.datasets = self.built.datasets
        self.units = self.built.units
        self.audio_paths = self.built.audio_paths
        self.extraction_skipped = dict(self.built.skipped)
        for path, why in self.extraction_skipped.items():
            log.warning("skipping %s: %s", path, why)
        # The split holds the tracks this input really uses: splits.json never lists a track
        # that was skipped after indexing (which tracks each side holds is still decided over
        # every indexed track, so other models keep the same test tracks).
        used = set(self.track_ids)
        self.splits = {part: [u for u in units if track_of(u, used) in used] for part, units in self.splits.items()}
        for part in PARTS:
            if len(self.datasets[part]) == 0 and not (part == "val" and not self.splits["val"]):
                raise UserError(f"the {part} split is empty for input={self.input}: use more tracks or another data.split")
        log.info(
            "data: %s (%s, %d classes), split=%s, train/val/test = %s",
            self.data_root, self.dataset, len(self.classes), self.effective_split,
            "/".join(str(len(self.datasets[p])) for p in PARTS),
        )

    @property
    def has_validation(self) -> bool:
        """Whether the split holds validation units (a validation fraction of 0 leaves none)."""
        return bool(self.datasets) and len(self.datasets["val"]) > 0

    def image_tracks(self, tracks: list) -> list:
        """The tracks that get an image under ``self.images``; a mode the data cannot serve is
        one :class:`UserError` that says what to do."""
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

    def label_index(self, track_id: str) -> int:
        return self.class_index[self.label_of[track_id]]

    def train_waveforms(self) -> tuple[np.ndarray, np.ndarray]:
        """The real training-split segments as waveforms: ``(N, 66000)`` float32 and labels.

        The same (track, segment) units as the training features, decoded again (segment
        models only); Net6's waveform CGAN learns from these and nothing else.
        """
        from tqdm.auto import tqdm

        from genre_cls.data.audio import clip_audio, load_audio, segments, SR

        by_track: dict[int, list[int]] = {}
        for track, seg in self.units["train"]:
            by_track.setdefault(track, []).append(seg)
        xs, ys = [], []
        for track, segs in tqdm(sorted(by_track.items()), desc="decoding training audio", disable=not self.progress):
            y = load_audio(self.audio_paths[track])
            if self.clip_seconds is not None:
                y = clip_audio(y, SR, self.clip_seconds, self.clip)
            xs.append(segments(y)[segs])
            ys += [self.label_index(self.track_ids[track])] * len(segs)
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
            per_class = {c: 0 for c in self.classes}
            for t in self.track_ids:
                per_class[self.label_of[t]] += 1
            out["tracks_per_class"] = per_class
            if self.dataset == "gtzan":
                out["tracks_per_genre"] = per_class
        out.update(
            dataset=self.dataset,
            classes=list(self.classes),
            input=self.input,
            split=self.effective_split,
            synthetic=self.root is None,
            samples={p: len(d) for p, d in self.datasets.items()},
        )
        if self.built is not None:
            out.update(self.built.summary)
        return out

    # -- loaders -----------------------------------------------------------------------------
    def _loader(self, part: str, shuffle: bool, batch_size: int):
        trainer = getattr(self, "trainer", None)
        data = self.datasets[part]
        # Several processes (DDP) need the DataLoader, whose distributed sampler shards the data;
        # datasets that are not whole tensors (waveform crops) are read item by item.
        if self.loader == "memory" and isinstance(data, TensorDataset) and (trainer is None or trainer.world_size == 1):
            device = trainer.strategy.root_device if trainer is not None else None
            return InMemoryLoader(data.tensors, batch_size, shuffle, device)
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            multiprocessing_context=mp_context() if self.num_workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader | list:
        # No validation units (a validation fraction of 0): no loader, so Lightning skips validation.
        return self._loader("val", False, self.eval_batch_size) if self.has_validation else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)


#: The name the study's code and notebooks know it by.
GTZANDataModule = GenreDataModule
