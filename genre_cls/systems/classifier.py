"""``GenreClassifier``: the one LightningModule that trains every classifier (Net1-Net5, Net6's
Net5 and the log-mel ResNet).

It owns the training concerns: loss, metrics, optimiser and schedule, training-only
augmentation, logging. It takes plain hyperparameters and builds its own network and front end
(the input kind's, :mod:`genre_cls.data.kinds`), so a checkpoint is self-contained: it loads
with ``weights_only=True`` and without Hydra, and carries what ``predict`` needs (the
architecture, the class names, the input kind and its parameters, e.g. the training split's
feature statistics or the log-mel settings).
"""

from __future__ import annotations

import math
from typing import Any

import hydra.utils
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn

from genre_cls import GENRES
from genre_cls.data.kinds import kind_of
from genre_cls.metrics import bootstrap_ci, evaluate, interval_keys, metric_collection, vote_tracks
from genre_cls.models import ARCHITECTURES
from genre_cls.models.frontends import FRONTENDS

CHECKPOINT_FORMAT = "genre_cls.classifier/2"

#: Training-only augmentation, all off unless a model's config turns it on (``model.train_augment``).
NO_AUGMENT = {"gain_db": 0.0, "freq_masks": 0, "freq_width": 0, "time_masks": 0, "time_width": 0, "mixup_alpha": 0.0}


class GenreClassifier(L.LightningModule):
    """Classify spectrogram images, feature sequences or waveforms into genres.

    Args:
        arch: a name of :data:`genre_cls.models.ARCHITECTURES` (``net1``, ``net2``, ``net3``,
            ``net5``, ``mel_resnet``); it says which input kind the network reads.
        arch_kwargs: extra constructor arguments of the network (defaults: the paper's sizes).
        optim: an optimiser config, e.g. ``{"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-4}``.
        classes: the class names, in label order (from the data).
        model_name: the name reported for this run (``net4`` is ``net3`` with RMSprop).
        early_stopping_patience: stop when ``val/loss`` has not improved for this many epochs.
        input_params: the input kind's parameters (image side, feature statistics, sample rate,
            chunk length and log-mel settings), from the data module.
        train_augment: training-only augmentation on the device: ``gain_db`` (random gain on
            waveforms), SpecAugment masks on the front end's output (``freq_masks``,
            ``freq_width``, ``time_masks``, ``time_width``) and ``mixup_alpha``.
        schedule: ``{"warmup_epochs": W, "cosine": true, "min_lr_ratio": r}``: a linear warm-up
            over W epochs, then a cosine decay to ``r`` times the learning rate, stepped per
            batch; ``None``: a constant learning rate (the study's nets).
        label_smoothing: of the cross-entropy loss.
    """

    def __init__(
        self,
        arch: str = "net3",
        arch_kwargs: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        classes: list[str] | tuple[str, ...] = GENRES,
        model_name: str | None = None,
        early_stopping_patience: int | None = None,
        input_params: dict[str, Any] | None = None,
        train_augment: dict[str, Any] | None = None,
        schedule: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
        # Logged with the test metrics at the end of a run, not here.
        self.save_hyperparameters(logger=False)
        net_cls, self.input_kind = ARCHITECTURES[arch]
        self.kind = kind_of(self.input_kind)
        params = dict(input_params or {})
        self.input_params = params
        self.frontend = FRONTENDS[self.kind.frontend](**self.kind.frontend_params(params))
        self.net = net_cls(num_classes=len(classes), **{**self.kind.net_params(params), **dict(arch_kwargs or {})})
        self.classes = list(classes)
        aug = {**NO_AUGMENT, **dict(train_augment or {})}
        self.augment = aug
        self.wave_augment, self.spec_augment = self._augmenters(aug)
        self.train_acc = metric_collection(len(classes))["acc"].clone()
        self.val_metrics = metric_collection(len(classes)).clone(prefix="val/")
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.test_results: dict[str, Any] = {}
        # One entry per test unit, in test order: probabilities (N, C), labels, track indices.
        self.test_predictions: dict[str, torch.Tensor] = {}
        self.log_test_metrics = True

    @staticmethod
    def _augmenters(aug: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
        """The waveform and spectrogram augmenters (identity when switched off); both act in
        training mode only."""
        wave: nn.Module = nn.Identity()
        spec: nn.Module = nn.Identity()
        if float(aug["gain_db"]) > 0:
            from genre_cls.models.augment import RandomGain

            wave = RandomGain(float(aug["gain_db"]))
        if int(aug["freq_masks"]) > 0 or int(aug["time_masks"]) > 0:
            from genre_cls.models.augment import SpecAugment

            spec = SpecAugment(
                freq_masks=int(aug["freq_masks"]), freq_width=int(aug["freq_width"]),
                time_masks=int(aug["time_masks"]), time_width=int(aug["time_width"]),
            )
        return wave, spec

    # -- model ---------------------------------------------------------------------------------
    def set_feature_stats(self, mean, std) -> None:
        """Set the feature standardisation (segment models) from the training split's statistics."""
        self.frontend.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.frontend.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Raw batch -> network input: the front end, with the training-only augmentation."""
        return self.spec_augment(self.frontend(self.wave_augment(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        alpha = float(self.augment["mixup_alpha"])
        if alpha > 0:
            from genre_cls.models.augment import mixup, soft_cross_entropy

            # Mixed on the front end's output; the loss uses the mixed targets, accuracy the hard labels.
            z, soft = mixup(self.preprocess(x), y, alpha, len(self.classes))
            smooth = float(self.hparams.label_smoothing)
            logits = self.net(z)
            loss = soft_cross_entropy(logits, soft * (1 - smooth) + smooth / len(self.classes))
        else:
            logits = self(x)
            loss = F.cross_entropy(logits, y, label_smoothing=float(self.hparams.label_smoothing))
        self.train_acc(logits, y)
        if batch_idx == 0 and self.current_epoch % 10 == 0:
            self._log_inputs(x)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    @torch.no_grad()
    def _log_inputs(self, x: torch.Tensor) -> None:
        """A few training inputs as the network sees them (e.g. augmented log-mel spectrograms),
        as TensorBoard images, every tenth epoch."""
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers or not self.kind.shows_inputs:
            return
        z = self.preprocess(x[:4]).float()
        lo = z.amin(dim=(1, 2, 3), keepdim=True)
        hi = z.amax(dim=(1, 2, 3), keepdim=True)
        images = ((z - lo) / (hi - lo).clamp_min(1e-6)).flip(2)  # low frequencies at the bottom
        for lg in loggers:
            lg.experiment.add_images("train/mel_inputs", images.cpu(), self.global_step)

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self(x)
        self.val_metrics.update(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log("val/acc", values["val/acc"], prog_bar=True)
        self.log_dict({k: values[k] for k in ("val/f1_macro", "val/f1_weighted")})

    def test_step(self, batch, batch_idx):
        x, y, track = batch
        probs = self(x).float().softmax(-1)  # logits leave bf16 autocast: vote in float32, as predict does
        self._test_outputs.append((probs.detach().cpu(), y.cpu(), track.cpu()))

    def on_test_epoch_start(self) -> None:
        self._test_outputs.clear()

    def on_test_epoch_end(self) -> None:
        probs, target, track = (torch.cat(t) for t in zip(*self._test_outputs))
        probs = probs.float()  # under mixed precision they may be half floats, which numpy cannot hold
        self._test_outputs.clear()
        self.test_predictions = {"probs": probs, "target": target, "track": track}
        n = len(self.classes)
        results = evaluate(probs, target, self.classes, "test")
        # Intervals over test tracks: a track's units are resampled together.
        results.update(interval_keys("test", bootstrap_ci(probs.argmax(1).numpy(), target.numpy(), track.numpy(), n)))
        if self.kind.voted:
            track_probs, track_target = vote_tracks(probs, target, track)
            results.update(evaluate(track_probs, track_target, self.classes, "test_track"))
            voted = track_probs.argmax(1).numpy()
            results.update(interval_keys("test_track", bootstrap_ci(voted, track_target.numpy(), np.arange(len(voted)), n)))
        self.test_results = results
        if self.log_test_metrics:
            self.log_dict({k: v for k, v in results.items() if isinstance(v, float)})

    def predict_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(-1)

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        optim = dict(self.hparams.optim or {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-4})
        optim["_partial_"] = True
        optimizer = hydra.utils.instantiate(optim)(params=self.parameters())
        schedule = self.hparams.schedule
        if not schedule:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = total / max(1, int(self.trainer.max_epochs or 1))
        warmup = int(round(float(schedule.get("warmup_epochs", 0)) * per_epoch))
        floor = float(schedule.get("min_lr_ratio", 0.0))
        cosine = bool(schedule.get("cosine", True))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not cosine:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self):
        patience = self.hparams.early_stopping_patience
        if patience is None:
            return []
        return [EarlyStopping(monitor="val/loss", mode="min", patience=int(patience))]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["genre_cls"] = CHECKPOINT_FORMAT
