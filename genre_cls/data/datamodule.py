"""``GenreDataModule``: the one data module every model plugs into.

A data set's indexer (:mod:`genre_cls.data.datasets`: ``gtzan``, ``folders``, ``fma``, ``csv``) finds the
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from genre_cls import MAX_SYNTH_TRACKS_PER_GENRE
from genre_cls.data.audio import CLIPS, N_SEGMENTS
from genre_cls.data.cache import default_cache_dir
from genre_cls.data.context import BuildContext
from genre_cls.data.datasets import dataset as dataset_named
from genre_cls.data.datasets import index_dataset
from genre_cls.data.kinds import InputDatasets, kind_of
from genre_cls.data.processes import max_workers, mp_context
from genre_cls.data.shards import ENGINES, ray_builds
from genre_cls.data.splits import PARTS, SPLITS, check_folds, make_splits, track_of
from genre_cls.data.tracks import Track, TrackIndex
from genre_cls.errors import DataRootError, UserError
from genre_cls.schema import setting

log = logging.getLogger(__name__)

LOADERS = ("memory", "torch")
#: Images 5.7x the paper's side: larger ones only exhaust the memory (one 1024 px image is 3 MB).
MAX_IMAGE_SIZE = 1024
SEED = {"ge": 0, "le": 2**32 - 1}


def _datasets() -> list[str]:
    from genre_cls.data.datasets import datasets

    return list(datasets())


def _image_modes() -> tuple[str, ...]:
    from genre_cls.data.imageset import IMAGE_MODES

    return IMAGE_MODES


def _fractions_fit(v: Any) -> bool:
    import math

    return (isinstance(v, (list, tuple)) and len(v) == 3
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
            and v[0] > 0 and v[1] >= 0 and v[2] > 0 and abs(sum(v) - 1.0) <= 1e-6)


@dataclass
class SyntheticSettings:
    """``data.synthetic``: the synthetic GTZAN generated when ``data.root`` is null."""

    tracks_per_genre: int = setting(30, ge=1, le=MAX_SYNTH_TRACKS_PER_GENRE, hint=" (GTZAN has 100)")
    seed: int = setting(0, **SEED)


@dataclass
class DataSettings:
    """The ``data`` group: the arguments of :class:`GenreDataModule` (``conf/data/*.yaml``)."""

    __extra__ = "refuse"
    __owner__ = "GenreDataModule"

    root: Optional[str] = setting(None, hint=": the collection's folder (GTZAN: null for the synthetic set)")
    dataset: str = setting("gtzan", choices=_datasets)
    dataset_options: Any = setting(None)
    clip: str = setting("first", choices=CLIPS)
    clip_seconds: Optional[float] = setting(None, gt=0.0, le=3600.0, hint=" (seconds of a longer track the models see; null: as it is)")
    engine: str = setting("local", choices=ENGINES, hint=" (where extraction runs: local worker processes, or ray)")
    ray_address: Optional[str] = setting(None, hint=" (null: a local Ray; or a cluster's address, e.g. ray://head:10001)")
    split: str = setting("track", choices=SPLITS)
    # Validation picks the best checkpoint: no side may be empty.
    fractions: list[float] = setting(factory=lambda: [0.7, 0.1, 0.2], expect="three numbers (train > 0, val >= 0, test > 0) that sum to 1",
                                     ok=_fractions_fit,
                                     hint=", e.g. data.fractions=[0.7,0.1,0.2], or [0.8,0,0.2] for no validation")
    seed: int = setting(0, **SEED)
    batch_size: int = setting(32, ge=1)
    eval_batch_size: Optional[int] = setting(None, ge=1)
    num_workers: int = setting(0, ge=0, le=max_workers(), hint=" (4 per core at most)")
    pin_memory: bool = setting(False)
    image_size: int = setting(180, ge=4, le=MAX_IMAGE_SIZE, hint=" (the paper's: 180)")
    min_seconds: float = setting(10.0, ge=0.0, le=30.0, hint=" (seconds; GTZAN clips are 30 s, default 10)")
    cache_dir: Optional[str] = setting(None)
    synthetic: SyntheticSettings = setting(factory=SyntheticSettings)
    workers: Optional[int] = setting(None, ge=0, le=max_workers(), hint=" (null: one per core; 4 per core at most)")
    #: The old name of ``workers`` (it builds images and waveforms too, not only features).
    feature_workers: Optional[int] = setting(None, ge=0, le=max_workers(), hint=" (now data.workers)")
    progress: bool = setting(True)
    loader: str = setting("memory", choices=LOADERS)
    images: str = setting("auto", choices=_image_modes, hint=" (auto: Kaggle's PNG where there is one, else rendered from audio)")
    folds: Optional[int] = setting(None, ge=2, hint=" (null, or K >= 2 for a K-fold over tracks)")
    fold: int = setting(0, ge=0, hint=" (0..data.folds-1)")

    def __post_init__(self) -> None:
        check_folds(self.folds, self.fold, self.split)


def label_mapping(label_map: Mapping[str, str] | None, labels: Sequence[str], classes: Sequence[str], where: str) -> dict[str, str]:
    """A collection's labels -> a model's classes: each label that is a class as itself, and what
    ``label_map`` says (checked: every class it names is one of ``classes``, every label it names
    one of ``labels``). Labels that map to nothing are absent. A wrong map is one :class:`UserError`."""
    same = {label: label for label in labels if label in classes}
    if not label_map:
        return same
    if bad := [c for c in label_map.values() if c not in classes]:
        raise UserError(f"map sends a label to {bad[0]!r}, which is not a class of the checkpoint (its classes: "
                        f"{', '.join(classes)}): map each label to one of them")
    if bad := [label for label in label_map if label not in labels]:
        raise UserError(f"map names the label {bad[0]!r}, which {where} does not have (its labels: {', '.join(labels)}): "
                        "check its spelling")
    return {**same, **label_map}


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
        dataset: a data set's name (:func:`genre_cls.data.datasets.datasets`): ``gtzan`` (default),
            ``folders`` (``<root>/<label>/**/<audio file>``), ``fma`` or ``csv``.
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
        workers: processes that build the images, features or waveforms (``None``: one per
            core, 0: this process); ``feature_workers`` is its old name.
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
        workers: int | None = None,
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
        feature_workers: int | None = None,
    ) -> None:
        super().__init__()
        from genre_cls.data.imageset import IMAGE_MODES

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
        if feature_workers is not None:
            warnings.warn("data.feature_workers is now data.workers (it builds images and waveforms too)",
                          DeprecationWarning, stacklevel=2)
            workers = feature_workers if workers is None else workers
        self.workers = workers
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
        self.built: InputDatasets | None = None
        self.extraction_skipped: dict[str, str] = {}
        #: Classes with no training unit, and the zero padding of the training audio (:meth:`setup`).
        self.untrained: list[str] = []
        self.padding: dict[str, Any] = {}
        self.audio_paths: list[Path] = []
        #: Tracks of labels that an evaluation's map leaves out, by label (:meth:`setup_evaluation`).
        self.left_out: dict[str, int] = {}
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

    def context(self) -> BuildContext:
        """What the input kind builds with: the cache, workers, progress bars, engine and clip."""
        return BuildContext(
            cache_dir=self.cache_dir, workers=self.workers, progress=self.progress, engine=self.engine,
            ray_address=self.ray_address, clip=self.clip,
            clip_seconds=None if self.clip_seconds is None else float(self.clip_seconds),
        )

    def kind_settings(self) -> dict[str, Any]:
        """The input kind's settings: the model's (``model.input``) and the data config's image
        settings and split."""
        return {"image_size": self.image_size, "images": self.images, "split": self.effective_split, **self.input_options}

    def input_params(self) -> dict[str, Any]:
        """The plain values a checkpoint keeps so that its model reads inputs as in training."""
        return self.kind.input_params(self.kind_settings(), self.built)

    def prepare_data(self) -> None:
        """Generate the synthetic set once (atomically: built aside, then renamed into place)."""
        if self.root is not None:
            return
        if not dataset_named(self.dataset).synthetic_default:
            raise DataRootError(f"data={self.dataset} needs data.root: {dataset_named(self.dataset).holds}")
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
        self.splits = self._split(self.index.tracks)
        self._build(self.index, self.splits, self.kind_settings())
        for part in PARTS:
            if len(self.datasets[part]) == 0 and not (part == "val" and not self.splits["val"]):
                raise UserError(f"the {part} split is empty for input={self.input}: use more tracks or another data.split")
        used = set(self.track_ids)
        self.untrained = self._classes_not_trained(used)
        self.padding = self._padding(used)
        self._say_engine_unused()
        log.info(
            "data: %s (%s, %d classes), split=%s, train/val/test = %s",
            self.data_root, self.dataset, len(self.classes), self.effective_split,
            "/".join(str(len(self.datasets[p])) for p in PARTS),
        )

    @property
    def has_validation(self) -> bool:
        """Whether the split holds validation units (a validation fraction of 0 leaves none)."""
        return bool(self.datasets) and len(self.datasets["val"]) > 0

    def _split(self, tracks: Sequence[Track]) -> dict[str, list[str]]:
        """Train, val and test ids of ``tracks`` (track ids, segment ids for the segment split)."""
        return make_splits(
            [t.track_id for t in tracks], self.effective_split, self.seed, self.fractions, N_SEGMENTS, self.folds, self.fold,
            labels={t.track_id: t.label for t in tracks}, predefined={t.track_id: t.split for t in tracks if t.split is not None},
        )

    def _build(self, index: TrackIndex, splits: dict[str, list[str]], settings: dict[str, Any]) -> None:
        """The input kind's datasets of ``index``'s tracks, labelled by :attr:`label_of` in :attr:`classes`."""
        # A file that passed the index but failed to decode (or gave non-finite values) is
        # skipped there: one log line each, in the run's log like the index's own skips.
        self._ray_builds_before = ray_builds()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="skipping .*")
            labels = {tid: self.class_index[label] for tid, label in self.label_of.items()}
            self.built = self.kind.build(index, splits, labels, settings, self.context())
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
        self.splits = {part: [u for u in units if track_of(u, used) in used] for part, units in splits.items()}

    def setup_evaluation(self, classes: Sequence[str], label_map: Mapping[str, str] | None = None, part: str = "all") -> None:
        """Index the collection to score a model whose classes are ``classes`` on it: its test
        part becomes what :meth:`test_dataloader` serves, labelled by index into ``classes``.

        A track's label becomes the class ``label_map`` names for it (collection label -> class; a
        label that is one of ``classes`` is its own class unless the map says otherwise); tracks of
        other labels are left out and counted in :attr:`left_out`. ``part`` is ``all`` (every mapped track), or
        ``train``, ``val`` or ``test`` of the split the data settings make (seed, fractions, folds,
        split) over the whole collection, as a training run on it would make it.

        Raises :class:`~genre_cls.errors.UserError`: a map that names a class not in ``classes`` or
        a label the collection lacks, no track left to score, an unknown ``part``.
        """
        if part not in ("all", *PARTS):
            raise UserError(f"unknown part {part!r}: choose all (the whole collection), {', '.join(PARTS)}")
        self.prepare_data()
        self.index = index_dataset(self.dataset, self.data_root, min_seconds=self.min_seconds, **self.dataset_options)
        mapping = label_mapping(label_map, self.index.classes, classes, f"data={self.dataset} under {str(self.data_root)!r}")
        self.left_out = {}
        for t in self.index.tracks:
            if t.label not in mapping:
                self.left_out[t.label] = self.left_out.get(t.label, 0) + 1
        kept = [t for t in self.index.tracks if t.label in mapping]
        if not kept:
            raise UserError(
                f"no track of data={self.dataset} under {str(self.data_root)!r} has a label the checkpoint knows (its labels: "
                f"{', '.join(self.index.classes)}; the checkpoint's classes: {', '.join(classes)}): map them, e.g. "
                f"'map={{{self.index.classes[0]}: {classes[0]}}}'"
            )
        self.classes = list(classes)
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        self.label_of = {t.track_id: mapping[t.label] for t in kept}
        if part == "all":
            test, settings = [t.track_id for t in kept], {**self.kind_settings(), "split": "track"}
        else:
            mapped = set(self.label_of)
            test = [u for u in self._split(self.index.tracks)[part] if track_of(u, mapped) in mapped]
            settings = self.kind_settings()
        index = TrackIndex(self.index.root, self.index.layouts, kept, classes=self.classes, dataset=self.index.dataset)
        self._build(index, {"train": [], "val": [], "test": test}, settings)
        if len(self.datasets["test"]) == 0:
            raise UserError(f"the {part} part of data={self.dataset} holds no track with a mapped label: use part=all "
                            "or another data.split")
        log.info("evaluation data: %s (%s), part=%s, %d units of %d tracks; left out (labels not mapped): %s",
                 self.data_root, self.dataset, part, len(self.datasets["test"]), len({u[0] for u in self.units["test"]}),
                 ", ".join(f"{k} ({v})" for k, v in self.left_out.items()) or "none")

    def _say_engine_unused(self) -> None:
        """With ``data.engine=ray``, say when Ray was not needed: everything this run reads was in the
        cache already, so no Ray was started and ``data.ray_address`` was not contacted (a run that
        ends well would otherwise look like one that used the cluster)."""
        if self.engine != "ray":
            return
        if ray_builds() == self._ray_builds_before:
            where = f"the cluster at data.ray_address={self.ray_address}" if self.ray_address else "a local Ray"
            log.warning("data.engine=ray: everything this run reads was already in the cache (%s), so Ray was not used "
                        "and %s was not contacted", self.cache_dir, where)

    def _classes_not_trained(self, used: set[str]) -> list[str]:
        """The classes without a training unit, named in one warning: the model never learns them, and
        their test tracks can only be scored as errors (an official split whose test part holds a
        class its training part lacks; a class of one or two tracks the split put elsewhere)."""
        trained = {self.label_of[track_of(u, used)] for u in self.splits["train"]}
        missing = [c for c in self.classes if c not in trained]
        if missing:
            where = {c: sorted({p for p in PARTS for u in self.splits[p] if self.label_of[track_of(u, used)] == c}) for c in missing}
            log.warning(
                "%s %s no track in the training split (data.split=%s puts %s): the model never learns %s, and "
                "%s test tracks can only be scored as errors; data_summary.json and metrics.json list %s under "
                "classes_not_trained", ", ".join(repr(c) for c in missing), "has" if len(missing) == 1 else "have",
                self.effective_split, "; ".join(f"{c!r} in {' and '.join(where[c]) or 'no part'}" for c in missing),
                "it" if len(missing) == 1 else "them", "its" if len(missing) == 1 else "their",
                "it" if len(missing) == 1 else "them",
            )
        return missing

    def _padding(self, used: set[str]) -> dict[str, Any]:
        """How much of the training audio is zero padding: tracks shorter than what the model reads at
        once (a 3 s chunk, the 30 s clip of the study's nets) are padded up to it, and the model learns
        the silence as part of their class. Said in one warning when a training track is shorter than
        90% of it; the numbers go to ``data_summary.json`` (``padding``)."""
        reads = self.kind.reads_seconds(self.kind_settings())
        if reads is None or not self.audio_paths:
            return {}
        from concurrent.futures import ThreadPoolExecutor

        from genre_cls.data.audio import header_seconds

        path_of = dict(zip(self.track_ids, self.audio_paths))
        train = sorted({track_of(u, used) for u in self.splits["train"]} & set(path_of))
        with ThreadPoolExecutor(max_workers=8) as pool:
            seconds = [s for s in pool.map(header_seconds, [path_of[t] for t in train]) if s is not None]
        if self.clip_seconds is not None:
            seconds = [min(s, float(self.clip_seconds)) for s in seconds]
        short = [s for s in seconds if s < 0.9 * reads]
        if not short:
            return {}
        share = sum(reads - s for s in short) / (reads * len(seconds))
        log.warning(
            "%d of %d training tracks are shorter than the %g s the model reads at once (the shortest %.1f s): they are "
            "zero-padded, and %.0f%% of the training audio is silence the model learns as part of their class; use "
            "longer tracks, a higher data.min_seconds%s", len(short), len(seconds), reads, min(short), 100 * share,
            " or a shorter model.input.chunk_seconds" if self.kind.name == "waveform" else "",
        )
        return {"reads_seconds": round(reads, 3), "tracks_shorter": len(short), "of": len(seconds),
                "shortest_seconds": round(min(short), 3), "padding_share": round(share, 4)}

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
            if "tracks_per_genre" in out:  # GTZAN's summaries name the classes genres
                out["tracks_per_genre"] = per_class
        if self.untrained:
            out["classes_not_trained"] = list(self.untrained)
        if self.padding:
            out["padding"] = dict(self.padding)
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
