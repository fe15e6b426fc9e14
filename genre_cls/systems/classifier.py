"""``GenreClassifier``: the one LightningModule that trains every classifier (Net1-Net5, Net6's
Net5 and the log-mel ResNet).

It owns the training concerns: loss, metrics, optimiser and schedule, training-only
augmentation, logging. It takes plain hyperparameters and builds its own network and front end
(:mod:`genre_cls.models`) for the input kind the model reads (:mod:`genre_cls.data.kinds`), so a
checkpoint is self-contained: it loads with ``weights_only=True`` and without Hydra, and carries
what ``predict`` needs (the network, the class names, the input kind, the front end and their
parameters, e.g. the training split's feature statistics or the log-mel settings).

A model config (``conf/model/*.yaml``, checked against :class:`ModelSettings`) goes to it whole:
:meth:`GenreClassifier.from_config`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Any, Optional

import hydra.utils
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn

from genre_cls import GENRES
from genre_cls.conf import optimisers
from genre_cls.data.kinds import KINDS, kind_of
from genre_cls.errors import UserError
from genre_cls.metrics import bootstrap_ci, evaluate, interval_keys, metric_collection, vote_tracks
from genre_cls import models
from genre_cls.models.batch_augment import BatchAugmentSettings, RandomGain, SpecAugment, mixup, soft_cross_entropy
from genre_cls.schema import setting

#: What this version writes into a checkpoint (``checkpoint["genre_cls"]``) and what it reads:
#: format 2 named no input kind or front end (each network then read one kind: :data:`READ_BEFORE_3`).
CHECKPOINT_FORMAT = "genre_cls.classifier/3"
READABLE_FORMATS = ("genre_cls.classifier/2", CHECKPOINT_FORMAT)
READ_BEFORE_3 = {"net1": "image", "net2": "image", "net3": "image", "net5": "features", "mel_resnet": "waveform"}

#: Training-only augmentation, all off unless a model's config turns it on (``model.train_augment``).
NO_AUGMENT = dataclasses.asdict(BatchAugmentSettings())
#: What GenreClassifier logs per epoch: what a checkpoint callback can monitor.
#: Which epoch a run keeps and tests (``model.keep_epoch``): the best by validation accuracy, or
#: the last (what a run without validation keeps).
KEEP_EPOCHS = ("best", "last")
LOGGED_METRICS = ("val/acc", "val/loss", "val/f1_macro", "val/f1_weighted", "train/loss", "train/acc")


@dataclass
class ScheduleSettings:
    """``model.schedule``: a linear warm-up, then a cosine decay (or a constant rate)."""

    __owner__ = "model.schedule"
    warmup_epochs: float = setting(0.0, ge=0.0)
    cosine: bool = setting(True)
    min_lr_ratio: float = setting(0.0, ge=0.0, le=1.0)


@dataclass
class ModelSettings:
    """The ``model`` group (``conf/model/*.yaml``): what :meth:`GenreClassifier.from_config` takes.
    Its network's settings (``arch_kwargs``), its input kind's (``input``) and its front end's
    (``input.<frontend>``) are checked against their own schemas (``settings`` of each)."""

    __extra__ = "ignore"
    name: str = setting("net3")
    arch: str = setting("net3", choices=lambda: list(models.networks()))
    arch_kwargs: Any = setting(None)
    input_kind: Optional[str] = setting(None, choices=lambda: list(KINDS))
    frontend: Optional[str] = setting(None, choices=lambda: list(models.frontends()))
    input: Any = setting(None)
    early_stopping_patience: Optional[int] = setting(None, ge=0)
    #: The epoch the run keeps and tests: the best by val/acc, or the last (what a run without validation keeps).
    keep_epoch: str = setting("best", choices=KEEP_EPOCHS)
    optim: Optional[str] = setting(None, choices=lambda: list(optimisers()))
    augment: Optional[str] = setting(None, choices=("cgan",))
    train_augment: Optional[BatchAugmentSettings] = setting(None)
    schedule: Optional[ScheduleSettings] = setting(None)
    label_smoothing: float = setting(0.0, ge=0.0, lt=1.0)


@dataclass
class OptimSettings:
    """The ``optim`` group (``conf/optim/*.yaml``): a ``torch.optim`` class and its arguments,
    built by :meth:`GenreClassifier.configure_optimizers`."""

    __extra__ = "ignore"
    lr: float = setting(1e-4, gt=0.0)
    fused: Optional[bool] = setting(None)
    foreach: Optional[bool] = setting(None)
    weight_decay: float = setting(0.0, ge=0.0)
    momentum: float = setting(0.0, ge=0.0)


def model_schemas(model: Any, prefix: str = "model") -> dict[str, type]:
    """The schemas of a model config's parts that depend on its values: its network's settings
    (``arch_kwargs``), its input kind's (``input``) and its front end's (``input.<frontend>``)."""
    arch, kind_name = model.get("arch"), model.get("input_kind") or READ_BEFORE_3.get(str(model.get("arch")))
    found: dict[str, type] = {}
    net = models.networks().get(str(arch))
    if net is not None and getattr(net, "settings", None) is not None:
        found[f"{prefix}.arch_kwargs"] = net.settings
    kind = KINDS.get(str(kind_name))
    if kind is not None and kind.settings is not None:
        found[f"{prefix}.input"] = kind.settings
        front = models.frontends().get(str(model.get("frontend") or kind.frontend))
        if front is not None and getattr(front, "settings", None) is not None:
            found[f"{prefix}.input.{model.get('frontend') or kind.frontend}"] = front.settings
    return found


class GenreClassifier(L.LightningModule):
    """Classify spectrogram images, feature sequences or waveforms into genres.

    Args:
        arch: a network's name (:func:`genre_cls.models.networks`: ``net1``, ``net2``, ``net3``,
            ``net5``, ``mel_resnet``).
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
        input_kind: what the network reads (:data:`genre_cls.data.kinds.KINDS`); ``None``: the
            kind its ``arch`` read before checkpoints named it (:data:`READ_BEFORE_3`).
        frontend: the front end's name (:func:`genre_cls.models.frontends`); ``None``: the input
            kind's own.
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
        input_kind: str | None = None,
        frontend: str | None = None,
    ) -> None:
        super().__init__()
        net_cls = models.network(arch)
        if input_kind is None and arch not in READ_BEFORE_3:
            raise ValueError(f"the network {arch!r} needs an input_kind (one of {', '.join(KINDS)})")
        # Logged with the test metrics at the end of a run, not here.
        self.save_hyperparameters(logger=False)
        self.input_kind = input_kind or READ_BEFORE_3[arch]
        self.kind = kind_of(self.input_kind)
        self.frontend_name = frontend or self.kind.frontend
        params = dict(input_params or {})
        self.input_params = params
        self.frontend = models.frontend(self.frontend_name)(**self.kind.frontend_params(params, self.frontend_name))
        shapes = {**self.kind.net_params(params), **(self.frontend.net_params() if hasattr(self.frontend, "net_params") else {})}
        taken = inspect.signature(net_cls).parameters
        shapes = {k: v for k, v in shapes.items() if k in taken}
        self.net = net_cls(num_classes=len(classes), **{**shapes, **dict(arch_kwargs or {})})
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

    @classmethod
    def from_config(cls, model: dict[str, Any], optim: dict[str, Any] | None, classes, input_params: dict[str, Any]) -> "GenreClassifier":
        """The classifier a model config describes (``conf/model/*.yaml`` as composed, plain
        values), trained with ``optim`` on ``classes``; ``input_params`` are its input kind's
        (:meth:`genre_cls.data.kinds.base.InputKind.input_params`: the settings it was trained with
        and what it learnt from the training split)."""
        system = cls(
            arch=model["arch"],
            arch_kwargs=model.get("arch_kwargs"),
            optim=optim,
            classes=classes,
            model_name=model.get("name"),
            early_stopping_patience=model.get("early_stopping_patience"),
            input_params=input_params,
            train_augment=model.get("train_augment"),
            schedule=model.get("schedule"),
            label_smoothing=float(model.get("label_smoothing") or 0.0),
            input_kind=model.get("input_kind"),
            frontend=model.get("frontend"),
        )
        system.load_pretrained()
        return system

    def load_pretrained(self) -> None:
        """Start the network (and the front end) from the pretrained weights it names: a module with a
        ``pretrained`` registry name (:mod:`genre_cls.pretrained`) gets that model through its
        ``load_pretrained(model)``. Training calls it once, before the first step (:meth:`from_config`);
        a checkpoint then carries every weight, so loading one never reads the registry."""
        from genre_cls.pretrained import load

        if any(p.is_meta for p in self.parameters()):  # traced for its shapes only (memory check, resume check)
            return
        for module in (self.frontend, self.net):
            name = getattr(module, "pretrained", None)
            if name:
                try:
                    model = load(name)
                except (ValueError, RuntimeError) as exc:  # an unknown name, missing or damaged weights
                    raise UserError(str(exc)) from None
                module.load_pretrained(model)

    @staticmethod
    def _augmenters(aug: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
        """The waveform and spectrogram augmenters (identity when switched off); both act in
        training mode only."""
        wave: nn.Module = nn.Identity()
        spec: nn.Module = nn.Identity()
        if float(aug["gain_db"]) > 0:
            wave = RandomGain(float(aug["gain_db"]))
        if int(aug["freq_masks"]) > 0 or int(aug["time_masks"]) > 0:
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
        if z.ndim == 3:  # (B, frames, mel bins): musicnn's time-major log-mel, shown like the others
            z = z.transpose(1, 2).unsqueeze(1)
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
        optimizer = hydra.utils.instantiate(optim)(params=self.param_groups(float(optim.get("lr", 1e-4))))
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

    def param_groups(self, lr: float) -> list[dict]:
        """The parameters to train (those that require gradients) in optimiser groups: a network
        with ``param_groups()`` (e.g. a pretrained backbone at a share of ``lr``) gives its own,
        each with an ``lr_scale``; the rest train at ``lr``."""
        groups = self.net.param_groups() if hasattr(self.net, "param_groups") else [{"params": list(self.net.parameters())}]
        grouped = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in self.parameters() if id(p) not in grouped]
        out = []
        for group in [*groups, {"params": rest}]:
            params = [p for p in group["params"] if p.requires_grad]
            if params:
                scale = float(group.get("lr_scale", 1.0))
                out.append({"params": params, **({"lr": lr * scale} if scale != 1.0 else {})})
        return out

    def configure_callbacks(self):
        patience = self.hparams.early_stopping_patience
        if patience is None:
            return []
        return [EarlyStopping(monitor="val/loss", mode="min", patience=int(patience))]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["genre_cls"] = CHECKPOINT_FORMAT
