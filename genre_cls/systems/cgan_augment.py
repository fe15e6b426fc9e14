"""Net6: train (or reuse) a conditional GAN on the training split and add its samples to it.

``augment_with_cgan`` runs the whole scheme before Net5 is trained: the CGAN learns from
training-split samples only (waveform segments, or standardised feature sequences with
``domain="features"``), generates ``per_class`` samples per genre (default: as many as the
real training segments of that genre), turns generated waveforms into features through the
same feature pipeline, and appends them to the data module's training set. Validation and
test stay real and unchanged.

A trained generator is saved in the run directory (``cgan/generator.pt``) and in the cache,
keyed by the CGAN config, the split and the training data; a later run with the same key
loads it instead of training again.

Several processes (``trainer=ddp``): the CGAN is trained once, on one device, by local rank 0,
and its generated features are cached beside the generator. Lightning starts the other ranks
only when Net5's training starts, so they find both in the cache and load them; ranks started
together by an outside launcher (torchrun, srun) wait for rank 0's files instead. Every rank
works on its own device (``LOCAL_RANK``), never on the first GPU by default.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from genre_cls.data.cache import atomic_write, fingerprint
from genre_cls.systems.cgan import CGAN

log = logging.getLogger(__name__)

GENERATOR_FORMAT = "genre_cls.cgan_generator/1"
SAMPLES_FORMAT = "genre_cls.cgan_samples/1"
# How long ranks 1.. wait for rank 0's CGAN (started together by torchrun or srun).
RANK0_WAIT_S = 12 * 3600


def local_rank() -> int:
    """This process's rank on its machine: 0 unless a DDP launcher started several."""
    return int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0)))


def cgan_device(trainer_kwargs: dict[str, Any]) -> tuple[str, Any]:
    """The one device this rank trains and samples the CGAN on: (accelerator, devices) for its
    Trainer. With several GPUs (``devices: 4`` or ``[2, 3]``) rank k takes the k-th."""
    accelerator = trainer_kwargs.get("accelerator") or "auto"
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        devices = trainer_kwargs.get("devices")
        rank = local_rank()
        index = devices[rank] if isinstance(devices, (list, tuple)) and rank < len(devices) else rank
        return "gpu", [int(index)]
    return accelerator, 1


def _wait_for(path: Path, load, what: str):
    """``load()`` once rank 0 has written ``path`` (ranks started together by an outside launcher)."""
    deadline = time.monotonic() + RANK0_WAIT_S
    if not path.is_file():
        log.info("rank %d waits for rank 0's %s (%s)", local_rank(), what, path)
    while (payload := load()) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank {local_rank()} waited {RANK0_WAIT_S} s for rank 0's {what} at {path}")
        time.sleep(2.0)
    return payload


def _save_generator(path: Path, payload: dict) -> None:
    atomic_write(path, lambda fh: torch.save(payload, fh))


def _load_generator(path: Path, key: str) -> dict | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if not isinstance(payload, dict) or payload.get("format") != GENERATOR_FORMAT or payload.get("key") != key:
        return None
    return payload


def _training_samples(dm, domain: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Real training samples, flat: waveforms, or standardised feature sequences."""
    if domain == "waveform":
        x, y = dm.train_waveforms()
        return torch.from_numpy(x), torch.from_numpy(y)
    x, y, track = dm.datasets["train"].tensors
    real = track >= 0
    mean, std = torch.from_numpy(dm.feature_mean), torch.from_numpy(dm.feature_std)
    return ((x[real] - mean) / std).flatten(1), y[real]


def _cgan_key(cgan_cfg: dict[str, Any], dm) -> str:
    """What a trained generator depends on: the CGAN config, the split and the training files."""
    from genre_cls.data.features import FEATURE_VERSION

    train_ids = sorted({dm.track_ids[t] for t, _ in dm.train_units})
    return fingerprint(
        {
            "cgan": {k: v for k, v in cgan_cfg.items() if k not in ("per_class", "log_every_n_epochs")},
            "split": dm.effective_split,
            "seed": dm.seed,
            "train_units": [f"{dm.track_ids[t]}#{s}" for t, s in dm.train_units],
            "feature_version": FEATURE_VERSION,
        },
        [dm.audio_paths[dm.track_ids.index(t)] for t in train_ids],
    )


@dataclass
class TrainedCGAN:
    """A CGAN whose generator is trained (or loaded), with what it learned from."""

    module: CGAN
    losses: dict[str, float]
    reused: bool
    labels: torch.Tensor  # the real training samples' labels
    key: str  # what the generator was trained from (see _cgan_key)


def train_or_load_generator(
    cgan_cfg: dict[str, Any], dm, out: Path, trainer_kwargs: dict[str, Any]
) -> TrainedCGAN:
    """Train the CGAN on ``dm``'s training split, or load the generator a run with the same key
    trained before. The generator is saved in the cache and as ``<out>/cgan/generator.pt``."""
    domain = cgan_cfg["domain"]
    sizes = cgan_cfg[domain]
    real, labels = _training_samples(dm, domain)
    module = CGAN(
        sample_dim=real.shape[1],
        domain=domain,
        classes=dm.classes,
        noise_dim=cgan_cfg["noise_dim"],
        embed_dim=cgan_cfg["embed_dim"],
        generator_hidden=list(sizes["generator_hidden"]),
        discriminator_hidden=list(sizes["discriminator_hidden"]),
        lr=cgan_cfg["lr"],
        betas=list(cgan_cfg["betas"]),
        log_every_n_epochs=cgan_cfg["log_every_n_epochs"],
        frame_shape=list(dm.datasets["train"].tensors[0].shape[1:]),
    )
    fast_dev_run = bool(trainer_kwargs.get("fast_dev_run"))
    key = _cgan_key(cgan_cfg, dm)
    cached = dm.cache_dir / "cgan" / f"{key}.pt"
    if fast_dev_run:  # nothing is cached: every rank trains its own throw-away CGAN
        payload = None
    elif local_rank() > 0:
        payload = _wait_for(cached, lambda: _load_generator(cached, key), "CGAN generator")
    else:
        payload = _load_generator(cached, key)
    reused = payload is not None
    if reused:
        log.info("reusing the trained CGAN generator %s", cached)
        module.generator.load_state_dict(payload["state_dict"])
        losses = dict(payload["losses"])
    else:
        loader = DataLoader(TensorDataset(real, labels), batch_size=int(cgan_cfg["batch_size"]), shuffle=True)
        accelerator, devices = cgan_device(trainer_kwargs)
        # One device, whatever Net5's trainer uses: under DDP the generator's parameters have
        # no gradient in the discriminator's step, which plain DDP refuses.
        trainer = L.Trainer(
            max_epochs=int(cgan_cfg["epochs"]),
            logger=TensorBoardLogger(out, name="cgan", version="", default_hp_metric=False),
            enable_checkpointing=False,
            enable_model_summary=False,
            log_every_n_steps=1,
            accelerator=accelerator,
            devices=devices,
            strategy="auto",
            **{k: v for k, v in trainer_kwargs.items() if k not in ("accelerator", "devices", "strategy")},
        )
        trainer.fit(module, loader)
        losses = dict(module.last_losses)
        payload = {
            "format": GENERATOR_FORMAT,
            "key": key,
            "hparams": {k: (list(v) if isinstance(v, tuple) else v) for k, v in module.hparams.items()},
            "state_dict": module.generator.state_dict(),
            "losses": losses,
        }
        if not fast_dev_run:
            _save_generator(cached, payload)
    _save_generator(out / "cgan" / "generator.pt", payload)
    return TrainedCGAN(module, losses, reused, labels, key)


def generated_samples(module: CGAN, counts: list[int], dm, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``counts[c]`` generated training samples of each class, as (16, 33) feature sequences in
    the data module's units, with their labels.

    Seeded apart from the global RNG: the same generator gives the same samples whether it was
    just trained or loaded from the cache. Generated waveforms go through the same feature
    pipeline as real audio; generated feature sequences are un-standardised.
    """
    from genre_cls.data.features import FeatureParams, extract_segments

    module.to(device)
    generated, labels = module.generate(counts, generator=torch.Generator(module.device).manual_seed(seed))
    generated = torch.nan_to_num(generated)
    if module.hparams.domain == "waveform":
        return torch.from_numpy(extract_segments(generated.numpy(), FeatureParams())), labels
    frame_shape = list(dm.datasets["train"].tensors[0].shape[1:])
    mean, std = torch.from_numpy(dm.feature_mean), torch.from_numpy(dm.feature_std)
    return generated.reshape(-1, *frame_shape) * std + mean, labels


def _generated_once(
    trained: TrainedCGAN, counts: list[int], dm, seed: int, device: str, trainer_kwargs: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`generated_samples`, made by local rank 0 and cached beside the generator, so
    that the other DDP ranks load them instead of generating (and extracting) them again.
    A freshly trained generator always generates anew; a reused one reuses its samples."""
    # The noise differs between a CPU and a GPU generator, so the device type is in the key.
    key = fingerprint({"generator": trained.key, "counts": counts, "seed": seed, "device": device.split(":")[0]})
    path = dm.cache_dir / "cgan" / f"{key}-samples.pt"

    def load():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return None
        ok = isinstance(payload, dict) and payload.get("format") == SAMPLES_FORMAT and payload.get("key") == key
        return (payload["features"], payload["labels"]) if ok else None

    if trainer_kwargs.get("fast_dev_run"):
        return generated_samples(trained.module, counts, dm, seed, device)
    if local_rank() > 0:
        return _wait_for(path, load, "generated samples")
    if trained.reused and (hit := load()) is not None:
        return hit
    feats, labels = generated_samples(trained.module, counts, dm, seed, device)
    atomic_write(path, lambda fh: torch.save({"format": SAMPLES_FORMAT, "key": key, "features": feats, "labels": labels}, fh))
    return feats, labels


def augment_with_cgan(
    cgan_cfg: dict[str, Any],
    dm,
    out: Path,
    trainer_kwargs: dict[str, Any],
    seed: int = 0,
) -> dict[str, Any]:
    """Train or reuse the CGAN, add its generated samples to ``dm``'s training set.

    Returns the figures for ``metrics.json``: the CGAN's final losses, how many generated
    segments were added, whether the generator was reused.
    """
    trained = train_or_load_generator(cgan_cfg, dm, out, trainer_kwargs)
    accelerator, devices = cgan_device(trainer_kwargs)
    device = f"cuda:{devices[0]}" if accelerator == "gpu" and torch.cuda.is_available() else "cpu"
    per_class = cgan_cfg.get("per_class")
    counts = (
        torch.bincount(trained.labels, minlength=len(dm.classes)).tolist()
        if per_class is None
        else [int(per_class)] * len(dm.classes)
    )
    feats, labels = _generated_once(trained, counts, dm, seed, device, trainer_kwargs)
    dm.add_train_samples(feats, labels)
    domain = cgan_cfg["domain"]
    log.info("added %d generated %s segments to the training set", len(labels), domain)
    return {
        "cgan/domain": domain,
        "cgan/epochs": int(cgan_cfg["epochs"]),
        "cgan/reused": trained.reused,
        "cgan/generated_segments": int(len(labels)),
        "cgan/real_train_segments": int(len(trained.labels)),
        **{k: float(v) for k, v in trained.losses.items()},
    }


def cgan_memory(settings: Any, dm, sample: torch.Tensor) -> tuple[int, int, int]:
    """What training Net6's CGAN (:mod:`genre_cls.systems.cgan`) needs, estimated on the meta
    device: ``(bytes, parameters, training samples)``; the parameters with gradients and both Adams'
    moments, the real training samples it holds (waveform segments, or flat feature sequences) and
    a batch's activations. ``settings``: the ``cgan`` config group; ``dm``: the set-up data module
    (``genre_cls.train``'s memory check adds it to the classifier's)."""
    from genre_cls.data.audio import SEGMENT_SAMPLES
    from genre_cls.systems.cgan import CGAN

    sizes = settings[settings.domain]
    sample_dim = SEGMENT_SAMPLES if settings.domain == "waveform" else int(sample.numel())
    with torch.device("meta"):
        cgan = CGAN(sample_dim=sample_dim, domain=settings.domain, classes=dm.classes, noise_dim=settings.noise_dim,
                    embed_dim=settings.embed_dim, generator_hidden=list(sizes.generator_hidden),
                    discriminator_hidden=list(sizes.discriminator_hidden))
    params = sum(p.numel() for p in cgan.parameters())
    samples = len(dm.train_units)
    layers = sum(sizes.generator_hidden) + sum(sizes.discriminator_hidden) + 3 * sample_dim
    return 4 * (4 * params + samples * sample_dim + 2 * int(settings.batch_size) * layers), params, samples
