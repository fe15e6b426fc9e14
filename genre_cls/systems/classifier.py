"""``GenreClassifier``: the one LightningModule that trains Net1-Net5 (and Net6's Net5).

It owns the training concerns: loss, metrics, optimiser, logging. It takes plain
hyperparameters and builds its own network, so a checkpoint is self-contained: it loads
with ``weights_only=True`` and without Hydra, and carries what ``predict`` needs (the
architecture, the class names, the input kind and the training split's feature statistics).
"""

from __future__ import annotations

from typing import Any

import hydra.utils
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping

from genre_cls import GENRES
from genre_cls.metrics import bootstrap_ci, evaluate, interval_keys, metric_collection, vote_tracks
from genre_cls.models import ARCHITECTURES

CHECKPOINT_FORMAT = "genre_cls.classifier/1"


class GenreClassifier(L.LightningModule):
    """Classify spectrogram images or feature sequences into genres.

    Args:
        arch: ``net1``, ``net2``, ``net3`` or ``net5`` (see :data:`genre_cls.models.ARCHITECTURES`).
        arch_kwargs: extra constructor arguments of the network (defaults: the paper's sizes).
        optim: an optimiser config, e.g. ``{"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-4}``.
        classes: the class names, in label order.
        model_name: the name reported for this run (``net4`` is ``net3`` with RMSprop).
        early_stopping_patience: stop when ``val/loss`` has not improved for this many epochs.
        image_size: side of the square input images (image models).
        feature_params: the feature pipeline's parameters (segment models), kept for ``predict``.
    """

    def __init__(
        self,
        arch: str = "net3",
        arch_kwargs: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        classes: list[str] | tuple[str, ...] = GENRES,
        model_name: str | None = None,
        early_stopping_patience: int | None = None,
        image_size: int = 180,
        feature_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
        # Logged with the test metrics at the end of a run, not here.
        self.save_hyperparameters(logger=False)
        net_cls, self.input_kind = ARCHITECTURES[arch]
        kwargs = dict(arch_kwargs or {})
        if self.input_kind == "image":
            kwargs.setdefault("image_size", image_size)
        self.net = net_cls(num_classes=len(classes), **kwargs)
        self.classes = list(classes)
        n_features = kwargs.get("n_features", 33)
        # Training-split standardisation of the features, part of the model (and its checkpoint).
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.train_acc = metric_collection(len(classes))["acc"].clone()
        self.val_metrics = metric_collection(len(classes)).clone(prefix="val/")
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.test_results: dict[str, Any] = {}
        # One entry per test unit, in test order: probabilities (N, C), labels, track indices.
        self.test_predictions: dict[str, torch.Tensor] = {}
        self.log_test_metrics = True

    # -- model ---------------------------------------------------------------------------------
    def set_feature_stats(self, mean, std) -> None:
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Raw batch -> network input: uint8 images to [0, 1], features standardised."""
        if self.input_kind == "image":
            return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return (x.float() - self.feature_mean) / self.feature_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self(x)
        self.val_metrics.update(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True)

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
        if self.input_kind == "features":
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
        return hydra.utils.instantiate(optim)(params=self.parameters())

    def configure_callbacks(self):
        patience = self.hparams.early_stopping_patience
        if patience is None:
            return []
        return [EarlyStopping(monitor="val/loss", mode="min", patience=int(patience))]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["genre_cls"] = CHECKPOINT_FORMAT
