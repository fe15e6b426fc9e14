"""Measured speed against plain baselines: ``python -m genre_cls.bench [features|loading|steps|all]``.

Each measurement runs ours and a plain baseline in this one process, on the same inputs,
and prints ``NAME: ours X s, baseline Y s, ratio Z`` (ratio = baseline / ours, so > 1 means
we are faster):

* ``features``: whole-data-set feature extraction (worker processes, cold cache) vs the plain
  per-segment librosa loop of the public GTZAN tutorials; ``features_warm``: loading the
  warm cache vs the same baseline.
* ``loading``: one epoch of image batches from ``GTZANDataModule`` vs a plain PyTorch
  ``Dataset`` that decodes and resizes each PNG every epoch (the public notebooks' way).
* ``steps``: N training steps of Net3 and Net5 through Lightning vs a hand-written PyTorch
  loop on the same tensors (our overhead).

The data are the synthetic set (``--tracks`` of them) unless ``--root`` names a GTZAN folder.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from genre_cls.errors import ArgumentParser, UserError, user_errors

MODES = ("features", "loading", "steps")


def line(name: str, ours: float, baseline: float) -> str:
    return f"{name}: ours {ours:.3f} s, baseline {baseline:.3f} s, ratio {baseline / max(ours, 1e-9):.2f}"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def data_root(args) -> Path:
    """``--root``, or the synthetic set with at least ``--tracks`` tracks (generated once, cached)."""
    if args.root:
        return Path(args.root).expanduser()
    from genre_cls.data import GTZANDataModule

    dm = GTZANDataModule(root=None, synthetic={"tracks_per_genre": max(3, math.ceil(args.tracks / 10)), "seed": 0}, progress=False)
    dm.prepare_data()
    return dm.data_root


def bench_features(args, root: Path) -> list[str]:
    from genre_cls.data.audio import segments
    from genre_cls.data.features import reference_segment_features
    from genre_cls.data.featureset import extract_dataset
    from genre_cls.data.index import index_gtzan

    paths = [str(t.audio) for t in index_gtzan(root).with_audio()][: args.tracks]

    def baseline():
        import librosa

        out = []
        for path in paths:
            y, _ = librosa.load(path, sr=22050)
            out.append([reference_segment_features(seg) for seg in segments(y)])
        return np.asarray(out, dtype=np.float32)

    with tempfile.TemporaryDirectory() as cache:
        t_ours, fs = timed(lambda: extract_dataset(paths, cache_dir=cache, workers=args.workers, progress=False))
        t_warm, _ = timed(lambda: extract_dataset(paths, cache_dir=cache, workers=args.workers, progress=False))
    t_base, ref = timed(baseline)
    if not np.allclose(fs.features, ref, rtol=1e-4, atol=1e-3):
        raise SystemExit("error: the fast features differ from the librosa reference")
    workers = "one per core" if args.workers is None else args.workers
    return [
        f"# features: {len(paths)} tracks, cold cache, workers={workers}; warm cache vs the same baseline",
        line("features", t_ours, t_base),
        line("features_warm_cache", t_warm, t_base),
    ]


def bench_loading(args, root: Path) -> list[str]:
    from PIL import Image

    from genre_cls.data import GTZANDataModule

    with tempfile.TemporaryDirectory() as cache:
        dm = GTZANDataModule(root=str(root), input="image", batch_size=32, cache_dir=cache, progress=False)
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


def bench_steps(args, root: Path) -> list[str]:
    import lightning as L

    from genre_cls.systems import GenreClassifier

    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    out = []
    for arch, shape, dtype in (("net3", (3, 180, 180), torch.uint8), ("net5", (16, 33), torch.float32)):
        g = torch.Generator().manual_seed(0)
        n = args.steps * args.batch_size
        x = (torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8) if dtype == torch.uint8
             else torch.randn(n, *shape, generator=g))
        y = torch.randint(0, 10, (n,), generator=g)
        track = torch.arange(n)
        optim = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-4, "fused": True}

        def ours():
            torch.manual_seed(0)
            system = GenreClassifier(arch=arch, optim=optim)
            loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, track), batch_size=args.batch_size)
            trainer = L.Trainer(max_steps=args.steps, accelerator="gpu" if device == "cuda" else "cpu", devices=1,
                                logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
            trainer.fit(system, train_dataloaders=loader)

        def baseline():
            torch.manual_seed(0)
            system = GenreClassifier(arch=arch, optim=optim).to(device)
            opt = torch.optim.Adam(system.parameters(), lr=1e-4, fused=True)
            system.train()
            for xb, yb, _ in torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, track), batch_size=args.batch_size):
                xb, yb = xb.to(device), yb.to(device)
                loss = torch.nn.functional.cross_entropy(system(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if device == "cuda":
                torch.cuda.synchronize()

        t_base, _ = timed(baseline)
        t_ours, _ = timed(ours)
        out += [f"# steps_{arch}: {args.steps} steps, batch {args.batch_size}, {device}", line(f"steps_{arch}", t_ours, t_base)]
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m genre_cls.bench``: one line per measurement; a bad argument is one ``error:`` line."""
    with user_errors():
        _main(argv)


def _main(argv: list[str] | None) -> None:
    parser = ArgumentParser(prog="python -m genre_cls.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="all", choices=(*MODES, "all"))
    parser.add_argument("--tracks", type=int, default=100, help="tracks for features/loading (default 100)")
    parser.add_argument("--root", default=None, help="a GTZAN folder (default: the synthetic set)")
    parser.add_argument("--workers", type=int, default=None, help="feature-extraction processes (default: one per core)")
    parser.add_argument("--steps", type=int, default=20, help="training steps for 'steps' (default 20)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(argv)
    if args.tracks < 1 or args.steps < 1:
        parser.error("--tracks and --steps must be >= 1")
    if args.root and not Path(args.root).expanduser().is_dir():
        raise UserError(f"--root {args.root!r} does not exist: give a GTZAN folder or leave it out")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    modes = MODES if args.mode == "all" else (args.mode,)
    root = data_root(args) if {"features", "loading"} & set(modes) else None
    print(f"# {torch.get_num_threads()} torch threads, cuda={'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    for mode in modes:
        for text in globals()[f"bench_{mode}"](args, root):
            print(text, flush=True)


if __name__ == "__main__":
    main()
