"""musicnn and its VGG baseline (Pons & Serra 2019, "musicnn: pre-trained convolutional neural
networks for music audio tagging"), written here from the published architecture so that the
weights of the ``musicnn`` package (0.1.0) load into them (:mod:`genre_cls.pretrained`).

Both read 16 kHz audio through :class:`MusicnnLogMel` and tag 187-frame (3 s) patches with 50
sigmoid tags. :class:`Musicnn`:

    front end, on the log-mel (time x 96 mels) after a BatchNorm of the whole input:
        timbral: 204 filters 7 x 38 and 204 filters 7 x 67 (time x frequency), time padded 3|3
        temporal: 51 filters each 128 x 1, 64 x 1, 32 x 1 ('same' in time)
        each conv -> ReLU -> BatchNorm -> max over frequency; concatenated: 561 channels a frame
    mid end: three 1-D convs over time (64 filters, width 7, padded 3|3) -> ReLU -> BatchNorm,
        the second and third added to their input (residual); the front end's 561 channels and
        the three outputs concatenated: 753 channels a frame ("dense" connections)
    back end: max and mean over time (753 each, interleaved: max, mean of channel 0, then of
        channel 1, ...), BatchNorm, dropout 0.5, dense 200 + ReLU,
        BatchNorm (the 200-d "penultimate" layer), dropout 0.5, dense 50 (the tags' logits)

:class:`MusicnnVGG`: input BatchNorm, five 3x3 convs of 128 filters ('same') -> ReLU ->
BatchNorm -> max-pool (4x1 stride 2, then 2x2, 2x2, 2x2, 4x4) -> dropout 0.25, flattened
(2 x 1 x 128 for a 187-frame patch), dropout 0.5, dense 50. It reads exactly 187 frames.

TensorFlow details the port keeps, so that converted weights give the original outputs:
BatchNorm epsilon 1e-3 (TF's default, torch's is 1e-5) and BatchNorm *after* the ReLU; TF's
'same' padding puts the odd pixel after (a 128-tap kernel pads 63 before and 64 after);
the layout stays TF's (time, frequency), so kernels copy over with their axes permuted
only; VGG flattens in TF's (time, frequency, channel) order. Dropout is off in ``eval()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from genre_cls.errors import UserError
from genre_cls.models.logmel import LogMel, full_precision
from genre_cls.schema import setting

__all__ = [
    "SAMPLE_RATE", "N_FFT", "HOP_LENGTH", "N_MELS", "PATCH_FRAMES", "PATCH_SAMPLES", "EMBEDDING_SIZE",
    "MusicnnLogMel", "Musicnn", "MusicnnVGG", "ARCHITECTURES", "MusicnnClassifier", "MusicnnSettings",
    "pooled_midend",
]

#: musicnn's input: 16 kHz audio, 512-point FFT, hop 256, 96 mel bands, 187-frame patches.
SAMPLE_RATE, N_FFT, HOP_LENGTH, N_MELS, PATCH_FRAMES = 16000, 512, 256, 96, 187
#: The fewest samples that make exactly :data:`PATCH_FRAMES` centred frames (2.976 s).
PATCH_SAMPLES = (PATCH_FRAMES - 1) * HOP_LENGTH
#: TensorFlow's BatchNorm epsilon (``tf.compat.v1.layers.batch_normalization``).
TF_BN_EPS = 1e-3
#: The transfer embedding of one patch (:func:`pooled_midend`): the mid end's 753 channels a
#: frame, pooled over the patch by mean and by max.
EMBEDDING_SIZE = 2 * 753


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=TF_BN_EPS)


def _bn1d(channels: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(channels, eps=TF_BN_EPS)


class MusicnnLogMel(nn.Module):
    """(B, samples) 16 kHz waveforms -> (B, frames, 96) float32 ``log10(1 + 10000 * mel)``.

    Equals musicnn 0.1.0's ``batch_data`` preprocessing computed in float32 (its own code casts
    the mel power to float16 first, which overflows to inf on loud music):
    ``np.log10(10000 * librosa.feature.melspectrogram(y=y, sr=16000, hop_length=256, n_fft=512,
    n_mels=96).T + 1)`` (librosa 0.11: centred frames, zero padding, Slaney mel filters), within
    5e-5 on real and synthetic audio (measured 1.7e-5; tests/test_musicnn.py). The STFT and the
    filter bank are :class:`~genre_cls.models.logmel.LogMel`'s; ``frames`` is
    1 + samples // 256. (musicnn was trained with an older librosa that padded by reflection when
    centring: only the frames at the two ends of a file see the difference.)
    """

    #: Nothing to set: musicnn's weights were trained on exactly this preprocessing.
    settings = None

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        if int(sample_rate) != SAMPLE_RATE:
            raise UserError(f"musicnn reads {SAMPLE_RATE} Hz audio, not {sample_rate}: set model.input.sample_rate={SAMPLE_RATE}")
        self.mel = LogMel(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS, top_db=None)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        power = self.mel.mel_power(waveform)
        with full_precision(waveform.device.type):
            return torch.log10(10000.0 * power + 1.0).transpose(1, 2)


class _FrontEndConv(nn.Module):
    """Conv over (time, frequency) -> ReLU -> BatchNorm -> max over frequency: (B, C, T)."""

    def __init__(self, filters: int, kernel: tuple[int, int], pad_time: tuple[int, int]) -> None:
        super().__init__()
        self.pad_time = pad_time
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, *self.pad_time))
        return self.bn(torch.relu(self.conv(x))).amax(dim=3)


def _same(kernel: int) -> tuple[int, int]:
    """TF's 'same' padding of a stride-1 kernel: the odd pixel goes after."""
    return (kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2


class Musicnn(nn.Module):
    """16 kHz waveforms (B, samples) -> (B, num_classes) tag logits; see the module docstring.

    Any length of at least one frame works (the back end pools over time); the pretrained
    weights were trained on :data:`PATCH_FRAMES`-frame patches (:data:`PATCH_SAMPLES` samples).
    ``forward(x, return_embeddings=True)`` also returns every intermediate layer
    (:meth:`embeddings`), for transfer learning.

    Args:
        num_classes: tags (50 for both published models).
        midend_filters: filters of each mid-end conv (64; musicnn's "big" MSD model has 512).
        backend_units: the penultimate dense layer (200; "big": 500).
    """

    #: The names :meth:`embeddings` returns: per frame (B, C, frames) or per patch (B, C).
    PER_FRAME = ("timbral", "temporal", "frontend", "cnn1", "cnn2", "cnn3", "midend")
    PER_PATCH = ("max_pool", "mean_pool", "penultimate", "logits")

    def __init__(self, num_classes: int = 50, midend_filters: int = 64, backend_units: int = 200) -> None:
        super().__init__()
        self.frontend = MusicnnLogMel()
        self.input_bn = _bn2d(1)
        timbral_filters, temporal_filters = int(1.6 * 128), int(1.6 * 32)
        self.timbral = nn.ModuleList(
            _FrontEndConv(timbral_filters, (7, int(share * N_MELS)), (3, 3)) for share in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(
            _FrontEndConv(temporal_filters, (length, 1), _same(length)) for length in (128, 64, 32)
        )
        frontend_channels = 2 * timbral_filters + 3 * temporal_filters
        self.midend = nn.ModuleList(
            nn.Conv1d(c_in, midend_filters, 7, padding=3) for c_in in (frontend_channels, midend_filters, midend_filters)
        )
        self.midend_bn = nn.ModuleList(_bn1d(midend_filters) for _ in range(3))
        pooled = frontend_channels + 3 * midend_filters
        self.pool_bn = _bn1d(2 * pooled)
        self.dense = nn.Linear(2 * pooled, backend_units)
        self.dense_bn = _bn1d(backend_units)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(backend_units, num_classes)

    def embeddings(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, frames, 96) log-mel (:class:`MusicnnLogMel`) -> every layer by name.

        Per frame, channels first (B, C, frames): ``timbral`` (408), ``temporal`` (153),
        ``frontend`` (their concatenation, 561), ``cnn1``/``cnn2``/``cnn3`` (the mid end's
        outputs after the residual sums, 64 each), ``midend`` (frontend + cnn1-3, 753).
        Per patch (B, C): ``max_pool`` and ``mean_pool`` (of ``midend`` over time, 753 each),
        ``penultimate`` (200, after its BatchNorm), ``logits`` (50). The names and contents
        are those of musicnn's ``extractor(..., extract_features=True)``.
        """
        if logmel.ndim != 3 or logmel.shape[2] != N_MELS:
            raise ValueError(f"musicnn expects (batch, frames, {N_MELS} mels) log-mel input, got {tuple(logmel.shape)}")
        x = self.input_bn(logmel.unsqueeze(1))  # (B, 1, T, F): TF's layout
        timbral = torch.cat([block(x) for block in self.timbral], dim=1)
        temporal = torch.cat([block(x) for block in self.temporal], dim=1)
        frontend = torch.cat([timbral, temporal], dim=1)
        cnn1 = self.midend_bn[0](torch.relu(self.midend[0](frontend)))
        cnn2 = self.midend_bn[1](torch.relu(self.midend[1](cnn1))) + cnn1
        cnn3 = self.midend_bn[2](torch.relu(self.midend[2](cnn2))) + cnn2
        midend = torch.cat([frontend, cnn1, cnn2, cnn3], dim=1)
        max_pool, mean_pool = midend.amax(dim=2), midend.mean(dim=2)
        # TF concatenated (B, 753, 1) max and mean on their last axis and flattened: interleaved.
        pooled = self.dropout(self.pool_bn(torch.stack([max_pool, mean_pool], dim=2).flatten(1)))
        penultimate = self.dense_bn(torch.relu(self.dense(pooled)))
        logits = self.classifier(self.dropout(penultimate))
        return {
            "timbral": timbral, "temporal": temporal, "frontend": frontend, "cnn1": cnn1, "cnn2": cnn2, "cnn3": cnn3,
            "midend": midend, "max_pool": max_pool, "mean_pool": mean_pool, "penultimate": penultimate, "logits": logits,
        }

    def forward(self, waveform: torch.Tensor, return_embeddings: bool = False):
        """(B, samples) -> logits (B, num_classes); with ``return_embeddings`` -> (logits, layers)."""
        layers = self.embeddings(self.frontend(waveform))
        return (layers["logits"], layers) if return_embeddings else layers["logits"]


class MusicnnVGG(nn.Module):
    """16 kHz waveforms of one 187-frame patch (B, :data:`PATCH_SAMPLES`) -> (B, num_classes)
    tag logits; musicnn's VGG-like baseline (see the module docstring). ``embeddings`` gives
    ``pool1``..``pool5`` (B, 128, time, frequency) and ``logits``."""

    PER_PATCH = ("pool1", "pool2", "pool3", "pool4", "pool5", "logits")
    POOLS = ((4, 1, 2, 2), (2, 2, 2, 2), (2, 2, 2, 2), (2, 2, 2, 2), (4, 4, 4, 4))  # kernel (t, f), stride (t, f)

    def __init__(self, num_classes: int = 50, filters: int = 128) -> None:
        super().__init__()
        self.frontend = MusicnnLogMel()
        self.input_bn = _bn2d(1)
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(5))
        self.bns = nn.ModuleList(_bn2d(filters) for _ in range(5))
        self.pools = nn.ModuleList(nn.MaxPool2d((kt, kf), (st, sf)) for kt, kf, st, sf in self.POOLS)
        self.conv_dropout = nn.Dropout(0.25)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(filters * 2 * 1, num_classes)

    def embeddings(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 187, 96) log-mel -> ``pool1``..``pool5`` (B, 128, time, frequency) and ``logits``."""
        if logmel.ndim != 3 or logmel.shape[1:] != (PATCH_FRAMES, N_MELS):
            raise ValueError(f"musicnn's VGG expects (batch, {PATCH_FRAMES} frames, {N_MELS} mels), got {tuple(logmel.shape)}")
        x = self.input_bn(logmel.unsqueeze(1))
        out = {}
        for i, (conv, bn, pool) in enumerate(zip(self.convs, self.bns, self.pools), start=1):
            x = pool(bn(torch.relu(conv(x))))
            out[f"pool{i}"] = x
            if i < 5:
                x = self.conv_dropout(x)
        flat = x.permute(0, 2, 3, 1).flatten(1)  # TF flattens (time, frequency, channel)
        out["logits"] = self.classifier(self.dropout(flat))
        return out

    def forward(self, waveform: torch.Tensor, return_embeddings: bool = False):
        """(B, samples) -> logits (B, num_classes); with ``return_embeddings`` -> (logits, layers)."""
        layers = self.embeddings(self.frontend(waveform))
        return (layers["logits"], layers) if return_embeddings else layers["logits"]


#: Architecture name -> class, as the pretrained registry names them.
ARCHITECTURES = {"musicnn": Musicnn, "vgg": MusicnnVGG}


@torch.no_grad()
def pooled_midend(model: Musicnn, waveforms: torch.Tensor) -> torch.Tensor:
    """(B, samples) 16 kHz chunks -> (B, :data:`EMBEDDING_SIZE`) float32 transfer embeddings of a
    musicnn in eval mode: its mid end (753 channels a frame: the front end's 561 and the three
    mid-end convs' 64 each) averaged over the chunk's frames, then its maximum over them
    (musicnn's own ``mean_pool`` and ``max_pool``). The layer and the pooling won the transfer
    study of issue 27 on the real GTZAN excerpts (README, "Transfer from musicnn")."""
    layers = model.embeddings(model.frontend(waveforms))
    return torch.cat([layers["mean_pool"], layers["max_pool"]], dim=1).float()


@dataclass
class MusicnnSettings:
    """``model.arch_kwargs`` of ``arch: musicnn`` (:class:`MusicnnClassifier`)."""

    #: What ``bench gpu-check --quick`` and the tests' quick runs shrink it to (the sizes are the
    #: pretrained ones: the backward pass stops at the mid end instead).
    tiny: ClassVar[dict] = {"train_frontend": False}

    __owner__ = "MusicnnClassifier"
    #: The weights it starts from (:mod:`genre_cls.pretrained`); null: random, musicnn from scratch.
    pretrained: Optional[str] = setting("msd", choices=("msd", "mtt"))
    #: The backbone's learning rate as a share of ``lr`` (the new output layer's is ``lr``).
    backbone_lr_scale: float = setting(0.1, gt=0.0, le=1.0)
    #: Train the front end's convolutions too (True), or keep them as pretrained (False: about
    #: 3x less work a step on the CPU, the backward pass stops at the mid end).
    train_frontend: bool = setting(True)
    dropout: float = setting(0.5, ge=0.0, lt=1.0)


class MusicnnClassifier(nn.Module):
    """(B, frames, 96) musicnn log-mel (:class:`MusicnnLogMel`, the model's front end) ->
    (B, num_classes) logits: musicnn's front end, mid end and back end up to its 200-unit
    penultimate layer, then dropout and a new linear layer for the classes; musicnn's own
    50-tag layer is left out. Trained whole ("fine-tuned"), the backbone at ``backbone_lr_scale``
    times the learning rate (:meth:`param_groups`).

    ``pretrained`` names the weights training starts from: the classifier that trains it loads
    them (:meth:`load_pretrained`, from :func:`genre_cls.pretrained.load`) before the first step,
    and its checkpoints then carry every weight. BatchNorm runs on batch statistics while it
    trains, as in musicnn's own training.
    """

    settings = MusicnnSettings

    def __init__(self, num_classes: int = 10, pretrained: str | None = "msd", backbone_lr_scale: float = 0.1,
                 train_frontend: bool = True, dropout: float = 0.5) -> None:
        super().__init__()
        self.pretrained, self.backbone_lr_scale = pretrained, float(backbone_lr_scale)
        self.backbone = Musicnn()
        del self.backbone.frontend  # the classifier's front end computes the log-mel
        self.backbone.classifier = nn.Identity()  # the 50 tags: replaced by ``head``
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.backbone.dense.out_features, num_classes)
        self.frozen = [] if train_frontend else [self.backbone.input_bn, self.backbone.timbral, self.backbone.temporal]
        for part in self.frozen:
            part.requires_grad_(False)

    def train(self, mode: bool = True) -> "MusicnnClassifier":
        # A frozen front end keeps its BatchNorm on the pretrained running statistics.
        super().train(mode)
        for part in self.frozen:
            part.eval()
        return self

    def load_pretrained(self, tagger: Musicnn) -> None:
        """Start from a pretrained musicnn's weights (all but its tag layer and its front end's filter bank)."""
        state = {k: v for k, v in tagger.state_dict().items() if not k.startswith(("classifier.", "frontend."))}
        self.backbone.load_state_dict(state)

    def param_groups(self) -> list[dict]:
        """The parameters to train and their learning rates as shares of ``lr``: the backbone at
        ``backbone_lr_scale``, the new layer at 1."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        return [{"params": backbone, "lr_scale": self.backbone_lr_scale}, {"params": list(self.head.parameters()), "lr_scale": 1.0}]

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.backbone.embeddings(logmel)["penultimate"]))


NETWORKS = {"musicnn": MusicnnClassifier}
FRONTENDS = {"musicnn_logmel": MusicnnLogMel}
