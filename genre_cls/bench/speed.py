"""Measured speed against plain baselines: ``python -m genre_cls.bench [features|loading|steps|frontend|steps-resnet|all]``.

Each measurement runs ours and a plain baseline in this one process, on the same inputs,
and prints ``NAME: ours X s, baseline Y s, ratio Z`` (ratio = baseline / ours, so > 1 means
we are faster):

* ``features``: whole-data-set feature extraction (worker processes, cold cache) vs the plain
  per-segment librosa loop of the public GTZAN tutorials; ``features_warm``: loading the
  warm cache vs the same baseline.
* ``loading``: one epoch of image batches from ``GenreDataModule`` vs a plain PyTorch
  ``Dataset`` that decodes and resizes each PNG every epoch (the public notebooks' way).
* ``steps``: N training steps of Net3 and Net5 through Lightning vs a hand-written PyTorch
  loop on the same tensors (our overhead). Both are warmed up first (``--warmup`` steps, not
  timed), the device is synchronised around the timed steps, and only the steps are timed:
  not Lightning's set-up or teardown.
* ``frontend``: the log-mel front end (:class:`genre_cls.models.logmel.LogMel`) on the CPU
  over 64 chunks of 3 s in one batch vs librosa ``melspectrogram`` + ``power_to_db`` per
  chunk; the outputs are checked to agree first.
* ``steps-resnet``: N training steps of the log-mel front end + ``ShortChunkResNet`` on
  batches of 3 s waveforms through Lightning vs the same hand-written loop as ``steps``.
* ``extract``: whole-data-set feature extraction (cold cache) on the local worker pool
  (``extract_local``) and on a local Ray with as many CPUs (``extract_ray``), each against one
  process on one core (the baseline), with the tracks per second per core of each and what
  they mean for fma_large on a cluster. Ray's start and its workers' first imports are timed
  apart (paid once per run, not per track). Not part of ``all``.
* ``embeddings``: the transfer embeddings of a whole data set (``model=musicnn_head``: the frozen
  MSD musicnn on every 2.976 s chunk, worker processes of one torch thread each, cold cache) vs a
  plain loop of the same network (one process with torch's own threads: ``librosa.load`` at 16 kHz,
  the file's chunks in one forward pass), with the tracks per second of each; the embeddings are
  checked to agree first. Not part of ``all`` (about a second a 30 s track and core).
* ``head``: training the head of ``model=musicnn_head`` on cached embeddings for its 30 epochs
  (the training chunks of ``--tracks`` x 0.7 tracks of 30 s, 10 each: a fold of a 5-fold over
  ``--tracks`` with validation; batch 32) through Lightning with the data module's in-memory
  loader vs a plain PyTorch loop over the same tensors.
* ``library``: prediction of a whole music library (``predict inputs=[FOLDER] out=...``: worker
  processes, batches of several files' units) vs a plain loop of ``predict_file`` over the same
  files, with decode-only and model-only times, memory on a long file and the kill-and-resume
  check of the results file (:mod:`genre_cls.bench.library`). Not part of ``all``.
* ``render``: drawing every track's audio as its Kaggle-style image (``data.images=render``:
  worker processes, cold cache) vs the plain librosa ``melspectrogram`` + matplotlib
  ``specshow`` + ``savefig`` pipeline of the public tutorials, one track after another; the
  pixels are checked to agree. Not part of ``all`` (its baseline takes about 1 s a track).

``gpu-check`` is not a measurement: it proves the GPU path on a card (:mod:`genre_cls.bench.gpu_check`).
The data are a synthetic set (``--tracks`` of them, in ``--dataset``'s layout) unless ``--root`` names one.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from genre_cls import MAX_SYNTH_TRACKS_PER_GENRE
from genre_cls.bench.library import bench_library  # noqa: F401  (a mode, called by its name)
from genre_cls.data.processes import available_memory, max_workers
from genre_cls.errors import ArgumentParser, UserError, user_errors
from genre_cls.data.context import BuildContext

MODES = ("features", "loading", "steps", "frontend", "steps-resnet", "head")
EXTRA_MODES = ("extract", "render", "embeddings", "library", "gpu-check")
FMA_LARGE_TRACKS = 106_574


def line(name: str, ours: float, baseline: float) -> str:
    return f"{name}: ours {ours:.3f} s, baseline {baseline:.3f} s, ratio {baseline / max(ours, 1e-9):.2f}"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def data_root(args) -> Path:
    """``--root``, or a synthetic set with at least ``--tracks`` tracks: GTZAN's generated once and
    cached, another data set's written into a temporary folder in its layout."""
    if args.root:
        return Path(args.root).expanduser()
    if args.dataset != "gtzan":
        from genre_cls.data.datasets import dataset

        labels = 8 if args.dataset == "fma" else 3  # fma_small's genres; the other trees' labels
        out = Path(tempfile.mkdtemp(prefix=f"genre_cls_bench_{args.dataset}_"))
        return dataset(args.dataset).write_synthetic(out / args.dataset, tracks_per_label=max(3, math.ceil(args.tracks / labels)))
    from genre_cls.data import GenreDataModule

    dm = GenreDataModule(root=None, synthetic={"tracks_per_genre": max(3, math.ceil(args.tracks / 10)), "seed": 0}, progress=False)
    dm.prepare_data()
    return dm.data_root


def audio_paths(root: Path, tracks: int, mode: str, dataset: str = "gtzan") -> list[str]:
    """The first ``tracks`` audio files of ``dataset`` under ``root``; none is one ``UserError``."""
    from genre_cls.data.datasets import index_dataset

    paths = [str(t.audio) for t in index_dataset(dataset, root).with_audio()][:tracks]
    if not paths:
        raise UserError(f"--root {str(root)!r} holds no usable audio files, which '{mode}' measures: give a GTZAN folder with audio")
    return paths


def bench_features(args, root: Path) -> list[str]:
    from genre_cls.data.audio import segments
    from genre_cls.data.features import reference_segment_features
    from genre_cls.data.featureset import extract_dataset

    paths = audio_paths(root, args.tracks, "features", args.dataset)

    def baseline():
        import librosa

        out = []
        for path in paths:
            y, _ = librosa.load(path, sr=22050)
            out.append([reference_segment_features(seg) for seg in segments(y)])
        return np.asarray(out, dtype=np.float32)

    with tempfile.TemporaryDirectory() as cache:
        t_ours, fs = timed(lambda: extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=args.workers, progress=False)))
        t_warm, _ = timed(lambda: extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=args.workers, progress=False)))
    t_base, ref = timed(baseline)
    if not np.allclose(fs.features, ref, rtol=1e-4, atol=1e-3):
        raise SystemExit("error: the fast features differ from the librosa reference")
    workers = "one per core" if args.workers is None else args.workers
    return [
        f"# features: {len(paths)} tracks, cold cache, workers={workers}; warm cache vs the same baseline",
        line("features", t_ours, t_base),
        line("features_warm_cache", t_warm, t_base),
    ]


def bench_extract(args, root: Path) -> list[str]:
    import os

    from threadpoolctl import threadpool_limits

    from genre_cls.data.shards import RAY_MISSING, start_ray
    from genre_cls.data.features import FeatureParams, warm
    from genre_cls.data.featureset import _chunks, _extract_chunk, extract_dataset

    paths = audio_paths(root, args.tracks, "extract", args.dataset)
    workers = args.workers or min(os.cpu_count() or 1, 8)
    params = FeatureParams()
    warm(params)

    def baseline():  # one process, one core: the unit of "per core"
        with threadpool_limits(1):
            return [r for chunk in _chunks(paths, 16) for r in _extract_chunk(chunk, params, threads=1)]

    def cold(engine: str):
        with tempfile.TemporaryDirectory() as cache:
            return extract_dataset(paths, context=BuildContext(cache_dir=cache, workers=workers, progress=False, engine=engine))

    t_base, _ = timed(baseline)
    t_local, local = timed(lambda: cold("local"))
    n = len(paths)
    per_core = {"one process": n / t_base, "local pool": n / t_local / workers}
    out = [line("extract_local", t_local, t_base)]
    if args.engine in ("both", "ray"):
        try:
            t_start, _ = timed(lambda: start_ray(None, workers))
        except UserError:
            out.append(f"# extract_ray: skipped: {RAY_MISSING}")
        else:
            # The first task on each Ray worker imports librosa and builds the filter banks.
            t_warm, _ = timed(lambda: extract_dataset(paths[: 2 * workers], context=BuildContext(workers=workers, progress=False, engine="ray")))
            t_ray, on_ray = timed(lambda: cold("ray"))
            if on_ray.paths != local.paths or not np.array_equal(on_ray.features, local.features):
                raise SystemExit("error: the features extracted on Ray differ from the local pool's")
            per_core["ray"] = n / t_ray / workers
            out.append(line("extract_ray", t_ray, t_base))
            out.insert(0, f"# ray: started in {t_start:.1f} s, workers warmed up in {t_warm:.1f} s (once per run, not timed)")
    one = per_core.pop("one process")
    rates = "; ".join(f"{k} {v:.2f} ({v / one:.0%} of it)" for k, v in per_core.items())
    # Shards are independent, so a cluster scales with its cores while the disks keep up.
    hours = {cores: FMA_LARGE_TRACKS / (one * cores) / 3600 for cores in (16, 64, 256)}
    return [
        f"# extract: {n} tracks ({args.dataset}), cold cache, workers={workers}; baseline: one process on one core",
        *out,
        f"# tracks per second per core: one process {one:.2f}; {rates}",
        f"# fma_large ({FMA_LARGE_TRACKS:,} tracks) at {one:.2f} tracks/s per core: "
        + ", ".join(f"{h:.2f} h on {c} cores" for c, h in hours.items()),
    ]


def bench_loading(args, root: Path) -> list[str]:
    from PIL import Image

    from genre_cls.data import GenreDataModule

    with tempfile.TemporaryDirectory() as cache:
        dm = GenreDataModule(root=str(root), input="image", batch_size=32, cache_dir=cache, progress=False)
        dm.setup()  # decodes once and caches: the one-time cost, not per epoch
        train_ids = set(dm.datasets["train"].tensors[2].tolist())
        paths = [t.image for i, t in enumerate(dm.index.with_images()) if i in train_ids]

        def ours():
            n = 0
            for x, _, _ in dm.train_dataloader():
                n += x.float().div_(255).shape[0]
            return n

        class PlainPNGDataset(torch.utils.data.Dataset):
            def __len__(self):
                return len(paths)

            def __getitem__(self, i):
                with Image.open(paths[i]) as im:
                    arr = np.asarray(im.convert("RGB").resize((180, 180)), dtype=np.float32) / 255.0
                return torch.from_numpy(arr).permute(2, 0, 1), 0

        def baseline():
            return sum(x.shape[0] for x, _ in torch.utils.data.DataLoader(PlainPNGDataset(), batch_size=32, shuffle=True))

        t_ours, n_ours = timed(ours)
        t_base, n_base = timed(baseline)
    assert n_ours == n_base
    return [f"# loading: one epoch of {n_ours} training images, batch 32", line("loading", t_ours, t_base)]


def step_device(args) -> str:
    """Where ``steps`` and ``steps-resnet`` train: ``--device``, where auto means cuda when visible."""
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is visible: use --device cpu")
    return device


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def lightning_steps(system, loader, warmup: int, steps: int, device: str) -> float:
    """Seconds of training steps ``warmup`` .. ``warmup + steps - 1`` of ``system`` through a
    Lightning ``Trainer``, the device synchronised at both ends: not its set-up or teardown."""
    import lightning as L

    class StepClock(L.Callback):
        start = end = 0.0

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == warmup:
                sync(device)
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx == warmup + steps - 1:
                sync(device)
                self.end = time.perf_counter()

    clock = StepClock()
    trainer = L.Trainer(max_steps=warmup + steps, accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[clock],
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(system, train_dataloaders=loader)
    return clock.end - clock.start


def plain_steps(model: torch.nn.Module, make_optimizer, loader, warmup: int, device: str) -> float:
    """Seconds of the same steps in a hand-written PyTorch loop (cross-entropy, ``make_optimizer(params)``)."""
    model = model.to(device)
    opt = make_optimizer(model.parameters())
    model.train()
    start = 0.0
    for i, (xb, yb, *_) in enumerate(loader):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        xb, yb = xb.to(device), yb.to(device)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


def bench_steps(args, root: Path) -> list[str]:
    from genre_cls.systems import GenreClassifier

    device = step_device(args)
    warmup, steps = args.warmup, args.steps
    out = []
    for arch, shape, dtype in (("net3", (3, 180, 180), torch.uint8), ("net5", (16, 33), torch.float32)):
        g = torch.Generator().manual_seed(0)
        n = (warmup + steps) * args.batch_size
        x = (torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8) if dtype == torch.uint8
             else torch.randn(n, *shape, generator=g))
        y = torch.randint(0, 10, (n,), generator=g)
        track = torch.arange(n)
        optim = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-4, "fused": True}

        def loader():
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, track), batch_size=args.batch_size)

        torch.manual_seed(0)
        t_ours = lightning_steps(GenreClassifier(arch=arch, optim=optim), loader(), warmup, steps, device)
        torch.manual_seed(0)
        t_base = plain_steps(GenreClassifier(arch=arch, optim=optim), lambda p: torch.optim.Adam(p, lr=1e-4, fused=True),
                             loader(), warmup, device)
        out += [f"# steps_{arch}: {steps} steps after {warmup} warm-up steps, batch {args.batch_size}, {device}",
                line(f"steps_{arch}", t_ours, t_base)]
    return out


#: ``frontend`` and ``steps-resnet`` work on 3 s chunks at 22,050 Hz.
CHUNK_SAMPLES = 66_150


def sample_chunks(n: int, seed: int = 0) -> np.ndarray:
    """``n`` chunks of 3 s: noise, tones and a silent stretch, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(CHUNK_SAMPLES) / 22050
    out = 0.1 * rng.standard_normal((n, CHUNK_SAMPLES))
    out += 0.5 * np.sin(2 * np.pi * rng.uniform(50, 5000, (n, 1)) * t)
    out[:, CHUNK_SAMPLES // 2 : CHUNK_SAMPLES // 2 + 5000] = 0.0
    return out.astype(np.float32)


def bench_frontend(args, root: Path) -> list[str]:
    import librosa

    from genre_cls.models.logmel import LogMel

    chunks = sample_chunks(64)
    params = dict(n_fft=1024, hop_length=512, n_mels=128)
    front = LogMel(sample_rate=22050, **params)
    batch = torch.from_numpy(chunks)

    def ours() -> np.ndarray:
        with torch.no_grad():
            return front(batch).numpy()[:, 0]

    def baseline() -> np.ndarray:
        return np.stack([
            librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050, **params), ref=1.0, amin=1e-10, top_db=80.0)
            for y in chunks
        ])

    ours(), baseline()  # warm-up: first-call allocations and imports are not the steady state
    t_ours, mel = timed(ours)
    t_base, ref = timed(baseline)
    worst = float(np.abs(mel - ref).max())
    if worst > 5e-3:
        raise SystemExit(f"error: the log-mel front end differs from librosa by {worst:.3g} dB")
    return [
        f"# frontend: {len(chunks)} chunks of 3 s, 128 mels, one batch on the CPU ({torch.get_num_threads()} threads) "
        f"vs librosa one chunk at a time; largest difference {worst:.1e} dB",
        line("frontend", t_ours, t_base),
    ]


#: The CPU default of conf/model/mel_resnet.yaml (its network; augmentation is timed apart from it).
RESNET = {"width": 16, "depth": 5, "stem_pool": 2, "dropout": 0.3}


class _WaveformClassifier(torch.nn.Module):
    """LogMel + ShortChunkResNet: the network of the waveform input kind, as a plain module."""

    def __init__(self):
        super().__init__()
        from genre_cls.models.logmel import LogMel
        from genre_cls.models.resnet import ShortChunkResNet

        self.front, self.net = LogMel(), ShortChunkResNet(**RESNET)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.net(self.front(waveform))


def bench_steps_resnet(args, root: Path) -> list[str]:
    from genre_cls.systems import GenreClassifier

    device = step_device(args)
    warmup, steps = args.warmup, args.steps
    n = (warmup + steps) * args.batch_size
    g = torch.Generator().manual_seed(0)
    pool = torch.from_numpy(sample_chunks(min(n, 64)))  # reused round-robin: the step, not the memory, is measured
    x = pool[torch.arange(n) % len(pool)]
    y = torch.randint(0, 10, (n,), generator=g)
    track = torch.arange(n)

    def loader():
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, track), batch_size=args.batch_size)

    optim = {"_target_": "torch.optim.AdamW", "lr": 1e-3, "fused": True}
    torch.manual_seed(0)
    # Ours: the LightningModule every model trains with, on mel_resnet's network, front end inside.
    system = GenreClassifier(arch="mel_resnet", arch_kwargs=RESNET, optim=optim, input_params={"sample_rate": 22050, "chunk_seconds": 3.0})
    t_ours = lightning_steps(system, loader(), warmup, steps, device)
    torch.manual_seed(0)
    t_base = plain_steps(_WaveformClassifier(), lambda p: torch.optim.AdamW(p, lr=1e-3, fused=True), loader(), warmup, device)
    return [
        f"# steps_resnet: GenreClassifier(mel_resnet) vs a plain loop over LogMel + ShortChunkResNet "
        f"({RESNET}), {steps} steps after {warmup} warm-up steps, batch {args.batch_size} x 3 s, {device}",
        line("steps_resnet", t_ours, t_base),
    ]


def bench_embeddings(args, root: Path) -> list[str]:
    import librosa

    from genre_cls.data.embeddingset import backbone, build_embeddings, chunks_of
    from genre_cls.models.musicnn import PATCH_SAMPLES, pooled_midend

    paths = audio_paths(root, args.tracks, "embeddings", args.dataset)
    model = backbone("msd")

    def baseline() -> list[np.ndarray]:
        out = []
        for path in paths:
            y, _ = librosa.load(path, sr=16000)
            with torch.inference_mode():
                out.append(pooled_midend(model, torch.from_numpy(chunks_of(y, PATCH_SAMPLES)[0])).numpy())
        return out

    with tempfile.TemporaryDirectory() as cache:
        context = BuildContext(cache_dir=cache, workers=args.workers, progress=False)
        t_ours, made = timed(lambda: build_embeddings(paths, "msd", context=context))
    t_base, plain = timed(baseline)
    if made.paths != paths:
        raise UserError(f"{len(paths) - len(made.paths)} of the tracks could not be decoded: see the warnings above")
    worst = float(np.abs(made.embeddings - np.concatenate(plain)).max() / max(1e-9, np.abs(made.embeddings).max()))
    if worst > 1e-3:
        raise SystemExit(f"error: the cached embeddings differ from the plain loop's by {worst:.3g} of their largest value")
    chunks = int(made.counts.sum())
    workers = BuildContext(workers=args.workers).worker_count()
    return [
        f"# embeddings: {len(paths)} tracks ({chunks} chunks of 2.976 s), MSD musicnn, cold cache, workers={workers} "
        f"of one torch thread; baseline one process, {torch.get_num_threads()} torch threads; largest difference {worst:.1e} "
        f"(relative); tracks/s: ours {len(paths) / t_ours:.2f}, baseline {len(paths) / t_base:.2f}",
        line("embeddings", t_ours, t_base),
    ]


def bench_head(args, root: Path) -> list[str]:
    import lightning as L

    from genre_cls.data.datamodule import InMemoryLoader
    from genre_cls.models.head import EmbeddingHead
    from genre_cls.models.musicnn import EMBEDDING_SIZE
    from genre_cls.systems import GenreClassifier

    epochs, batch = 30, 32
    n = 10 * max(1, round(0.7 * args.tracks))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, EMBEDDING_SIZE, generator=g).abs()
    y = torch.randint(0, 10, (n,), generator=g)
    track = torch.arange(n) // 10
    mean, std = x.mean(0), x.std(0)
    optim = {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 0.01, "fused": True}

    def ours() -> None:
        system = GenreClassifier(arch="embedding_head", input_kind="embedding", optim=optim,
                                 input_params={"mean": mean.tolist(), "std": std.tolist(), "n_features": EMBEDDING_SIZE})
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(system, train_dataloaders=InMemoryLoader((x, y, track), batch, shuffle=True))

    def baseline() -> None:
        model = EmbeddingHead()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=True)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n)
            for i in range(0, n, batch):
                take = order[i : i + batch]
                loss = torch.nn.functional.cross_entropy(model((x[take] - mean) / std), y[take])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    torch.manual_seed(0)
    t_ours, _ = timed(ours)
    torch.manual_seed(0)
    t_base, _ = timed(baseline)
    return [
        f"# head: musicnn_head's MLP ({EMBEDDING_SIZE}-256-10) trained {epochs} epochs on {n} cached embeddings "
        f"(batch {batch}, {-(-n // batch) * epochs} steps, cpu, {torch.get_num_threads()} torch threads): Lightning with "
        "the in-memory loader vs a plain loop",
        line("head", t_ours, t_base),
    ]


def bench_render(args, root: Path) -> list[str]:
    import io

    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genre_cls.data.imageset import build_images
    from genre_cls.data.melimage import decode_image

    paths = audio_paths(root, args.tracks, "render", args.dataset)

    def baseline() -> list[bytes]:
        pngs = []
        for path in paths:
            y, sr = librosa.load(path, sr=22050)
            S_dB = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr), ref=np.max)
            fig = plt.figure(figsize=(6, 4), dpi=72)
            librosa.display.specshow(S_dB, sr=sr)
            plt.axis("off")
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            plt.close(fig)
            pngs.append(buf.getvalue())
        return pngs

    with tempfile.TemporaryDirectory() as cache:
        t_ours, made = timed(lambda: build_images([("render", p) for p in paths], 180, context=BuildContext(cache_dir=cache, workers=args.workers, progress=False)))
    t_base, pngs = timed(baseline)
    reference = np.stack([decode_image(io.BytesIO(b), 180) for b in pngs])
    if made.ok != list(range(len(paths))):
        raise UserError(f"{len(paths) - len(made.ok)} of the tracks could not be rendered: see the warnings above")
    differing = float((np.abs(made.images.astype(int) - reference).max(axis=1) > 1).mean())
    if differing > 0.01:
        raise SystemExit(f"error: the rendered images differ from matplotlib's in {differing:.2%} of their pixels")
    workers = "one per core" if args.workers is None else args.workers
    return [
        f"# render: {len(paths)} tracks drawn as 180x180 images, cold cache, workers={workers}; baseline one process; "
        f"{differing:.3%} of pixels differ; at this rate 999 tracks take {t_ours / len(paths) * 999:.0f} s",
        line("render", t_ours, t_base),
    ]


def main(argv: list[str] | None = None) -> None:
    """``python -m genre_cls.bench``: one line per measurement; a bad argument is one ``error:`` line."""
    with user_errors():
        _main(argv)


def _main(argv: list[str] | None) -> None:
    from genre_cls.data.datasets import datasets

    parser = ArgumentParser(prog="python -m genre_cls.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="all", choices=(*MODES, *EXTRA_MODES, "all"))
    parser.add_argument("--tracks", type=int, default=100, help="tracks for features/loading/render (default 100)")
    parser.add_argument("--root", default=None, help="a GTZAN folder (default: the synthetic set)")
    parser.add_argument("--dataset", default="gtzan", choices=list(datasets()),
                        help="features, extract, render: how --root is laid out (default gtzan; without --root, "
                             "a synthetic set in that layout)")
    parser.add_argument("--engine", default="both", choices=("local", "ray", "both"),
                        help="extract: the engines measured (default both)")
    parser.add_argument("--workers", type=int, default=None, help="feature-extraction and rendering processes (default: one per core)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps for 'steps' and 'steps-resnet' (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps before them (default 3)")
    parser.add_argument("--quick", action="store_true", help="gpu-check: tiny sizes (seconds; the same code path)")
    parser.add_argument("--out", default=None, help="gpu-check: folder for its runs and logs (default: a new temporary folder)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ckpt", default=None, help="library: the checkpoint to predict with (default: an untrained --model)")
    parser.add_argument("--model", default="net5", help="library: the conf/model/ model, untrained, when no --ckpt (default net5)")
    parser.add_argument("--repeat", type=int, default=1, help="library: the best of this many runs of each (default 1)")
    parser.add_argument("--long-minutes", type=float, default=20.0, help="library: the long file's minutes for the memory measure")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="steps: where to train (auto: cuda when visible); gpu-check: auto means cuda")
    args = parser.parse_args(argv)
    if args.tracks < 1 or args.steps < 1 or args.batch_size < 1 or args.warmup < 0 or args.repeat < 1:
        raise UserError("--tracks, --steps, --batch-size and --repeat must be >= 1 and --warmup >= 0")
    if args.mode == "library" and args.tracks < 7:
        raise UserError("library: --tracks must be at least 7 (the synthetic library holds 6 broken and questionable files)")
    if not 0 < args.long_minutes <= 600:
        raise UserError(f"--long-minutes must be more than 0 and at most 600, got {args.long_minutes:g}")
    if args.ckpt and not Path(args.ckpt).expanduser().exists():
        raise UserError(f"--ckpt {args.ckpt!r} does not exist: give a run's checkpoints/best.ckpt, or leave it out")
    if args.workers is not None and not 0 <= args.workers <= max_workers():
        raise UserError(f"--workers must be between 0 (in this process) and {max_workers()} (4 per core), got {args.workers}")
    if not args.root and args.tracks > 10 * MAX_SYNTH_TRACKS_PER_GENRE:
        raise UserError(f"--tracks {args.tracks} is more than the synthetic set holds ({10 * MAX_SYNTH_TRACKS_PER_GENRE} "
                        "at most): use fewer, or --root with a larger set")
    # 'steps' draws all its batches up front: (warm-up + steps) x batch of 3x180x180 bytes and (16, 33) floats
    need = (args.warmup + args.steps) * args.batch_size * (3 * 180 * 180 + 16 * 33 * 4)
    free = available_memory()
    if args.mode in ("steps", "all") and free is not None and need > free:
        raise UserError(f"--steps {args.steps} x --batch-size {args.batch_size} need {need / 1e9:.1f} GB of data in memory "
                        f"but {free / 1e9:.1f} GB are free: use fewer steps or a smaller batch")
    if args.root and not Path(args.root).expanduser().is_dir():
        raise UserError(f"--root {args.root!r} does not exist: give a GTZAN folder or leave it out")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.mode == "gpu-check":
        from genre_cls.bench.gpu_check import gpu_check

        sys.exit(gpu_check(device=args.device, quick=args.quick, root=args.root, out=args.out))
    modes = MODES if args.mode == "all" else (args.mode,)
    root = data_root(args) if {"features", "loading", "render", "extract", "embeddings"} & set(modes) else None
    print(f"# {torch.get_num_threads()} torch threads, cuda={'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    for mode in modes:
        for text in globals()[f"bench_{mode.replace('-', '_')}"](args, root):
            print(text, flush=True)


if __name__ == "__main__":
    main()
