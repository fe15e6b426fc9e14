"""``CGAN``: the conditional GAN of Net6, trained with manual optimisation.

One Adam per network, binary cross-entropy on logits, one discriminator step and one
generator step per batch (no balancing, as in the paper). Samples are flat vectors: a
66,000-sample waveform segment (``domain="waveform"``) or a standardised (16, 33) feature
sequence (``domain="features"``). Every ``log_every_n_epochs`` epochs it logs one generated
sample per genre to TensorBoard: audio and a mel spectrogram for waveforms, an image of the
sequence for features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Optional

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from genre_cls import GENRES
from genre_cls.models import Discriminator, Generator
from genre_cls.schema import setting

DOMAINS = ("waveform", "features")


@dataclass
class CganSizes:
    """``cgan.waveform`` and ``cgan.features``: the layer widths of each domain's networks."""

    generator_hidden: list[int] = setting(factory=lambda: [512, 1024, 2048], item={"ge": 1})
    discriminator_hidden: list[int] = setting(factory=lambda: [1024, 512], item={"ge": 1})


@dataclass
class CganSettings:
    """The ``cgan`` group (``conf/cgan/default.yaml``): Net6's CGAN and how it is trained
    (:func:`genre_cls.systems.cgan_augment.augment_with_cgan`)."""

    __extra__ = "ignore"
    domain: str = setting("waveform", choices=DOMAINS)
    epochs: int = setting(100, ge=1)
    batch_size: int = setting(64, ge=1)
    lr: float = setting(2e-4, gt=0.0)
    betas: list[float] = setting(factory=lambda: [0.5, 0.999], length=2, item={"ge": 0.0, "lt": 1.0},
                                 hint=", e.g. cgan.betas=[0.5,0.999]")
    noise_dim: int = setting(100, ge=1)
    embed_dim: int = setting(10, ge=1)
    per_class: Optional[int] = setting(None, ge=1, hint=" (null: as many as the real training segments)")
    log_every_n_epochs: int = setting(10, ge=1)
    waveform: CganSizes = field(default_factory=CganSizes)
    features: CganSizes = field(default_factory=lambda: CganSizes([256, 512, 1024], [512, 256]))


class CGAN(L.LightningModule):
    """Generator and discriminator conditioned on the genre label.

    Args:
        sample_dim: length of one flat sample (66,000 for waveforms, 528 for features).
        generator_hidden / discriminator_hidden: layer widths (defaults: the paper's).
        lr, betas: Adam settings of both networks.
        sample_rate: for logging waveform samples as audio.
    """

    def __init__(
        self,
        sample_dim: int = 66_000,
        domain: str = "waveform",
        classes: Sequence[str] = GENRES,
        noise_dim: int = 100,
        embed_dim: int = 10,
        generator_hidden: Sequence[int] = (512, 1024, 2048),
        discriminator_hidden: Sequence[int] = (1024, 512),
        lr: float = 2e-4,
        betas: Sequence[float] = (0.5, 0.999),
        log_every_n_epochs: int = 10,
        sample_rate: int = 22050,
        frame_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if domain not in DOMAINS:
            raise ValueError(f"unknown cgan.domain {domain!r}: choose one of {', '.join(DOMAINS)}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.classes = list(classes)
        self.generator = Generator(len(classes), noise_dim, embed_dim, tuple(generator_hidden), sample_dim)
        self.discriminator = Discriminator(len(classes), sample_dim, embed_dim, tuple(discriminator_hidden))
        self.last_losses: dict[str, float] = {}

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.generator(noise, labels)

    def training_step(self, batch, batch_idx):
        real, labels = batch[0].flatten(1).float(), batch[1]
        opt_g, opt_d = self.optimizers()
        noise = torch.randn(len(labels), self.hparams.noise_dim, device=self.device)
        fake = self.generator(noise, labels)

        d_real = self.discriminator(real, labels)
        d_fake = self.discriminator(fake.detach(), labels)
        loss_d = 0.5 * (
            F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))
        )
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        d_gen = self.discriminator(fake, labels)
        loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()

        self.log_dict(
            {
                "cgan/g_loss": loss_g.detach(),
                "cgan/d_loss": loss_d.detach(),
                "cgan/d_acc_real": (d_real.detach() > 0).float().mean(),
                "cgan/d_acc_fake": (d_fake.detach() < 0).float().mean(),
            },
            on_step=False,
            on_epoch=True,
            prog_bar=True,
        )

    def on_train_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        self.last_losses = {k: float(v) for k, v in metrics.items() if k.startswith("cgan/")}
        epoch = self.current_epoch + 1
        every = max(1, int(self.hparams.log_every_n_epochs))
        if epoch % every == 0 or epoch == self.trainer.max_epochs:
            self.log_samples(epoch)

    def configure_optimizers(self):
        kw = {"lr": self.hparams.lr, "betas": tuple(self.hparams.betas)}
        return torch.optim.Adam(self.generator.parameters(), **kw), torch.optim.Adam(self.discriminator.parameters(), **kw)

    @torch.no_grad()
    def generate(
        self, counts: Sequence[int], batch_size: int = 256, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``counts[c]`` samples of each class ``c``: (samples (N, sample_dim) float32 on CPU, labels).

        ``generator`` (on this module's device) makes the noise, and so the samples, reproducible.
        """
        labels = torch.cat([torch.full((int(n),), c, dtype=torch.long) for c, n in enumerate(counts)])
        was_training = self.generator.training
        self.generator.eval()
        out = []
        for chunk in labels.split(batch_size):
            chunk = chunk.to(self.device)
            noise = torch.randn(len(chunk), self.hparams.noise_dim, device=self.device, generator=generator)
            out.append(self.generator(noise, chunk).float().cpu())
        self.generator.train(was_training)
        samples = torch.cat(out) if out else torch.empty(0, self.hparams.sample_dim)
        return samples, labels

    def log_samples(self, epoch: int) -> None:
        """One generated sample per genre to TensorBoard (audio + spectrogram, or a feature image)."""
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers = [lg for lg in self.trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        samples, _ = self.generate([1] * len(self.classes))
        writer = loggers[0].experiment
        for genre, x in zip(self.classes, samples.numpy()):
            if self.hparams.domain == "waveform":
                from genre_cls.data.melimage import mel_db

                wav = np.clip(x, -1.0, 1.0)
                writer.add_audio(f"cgan_audio/{genre}", torch.from_numpy(wav)[None], epoch, sample_rate=self.hparams.sample_rate)
                img = mel_db(wav, self.hparams.sample_rate)[::-1]
            else:
                img = x.reshape(tuple(self.hparams.frame_shape)).T[::-1]
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-8)
            writer.add_image(f"cgan_spectrogram/{genre}", torch.from_numpy(img.copy())[None], epoch)
