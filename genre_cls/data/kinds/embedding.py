"""The embedding kind: what a frozen pretrained musicnn makes of each 2.976 s chunk of a track
(:mod:`genre_cls.data.embeddingset`: its mid end pooled by mean and max, 1,506 values), computed
once into the cache; the model is a small head on them (``model=musicnn_head``), its front end
the standardisation with the training split's statistics. Training sees every chunk of every
training track; a track's prediction is the mean of its chunks' probabilities.

A model of this kind references its backbone rather than carrying it: its checkpoint records the
backbone's name and the sha256 of the weight file the embeddings came from (the one shipped in
``genre_cls/pretrained/weights/``), and ``predict`` computes a user's file's embeddings with that
backbone (:meth:`EmbeddingKind.cut`), refusing an install whose weights differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
import torch
from torch.utils.data import TensorDataset

from genre_cls.data.embeddingset import BACKBONES, backbone, build_embeddings, embed_waveform, weights_sha256
from genre_cls.data.kinds.base import FileUnits, InputDatasets, InputKind, audio_tracks, class_indices
from genre_cls.data.splits import PARTS
from genre_cls.errors import UserError
from genre_cls.models.musicnn import EMBEDDING_SIZE, PATCH_SAMPLES, SAMPLE_RATE
from genre_cls.schema import setting


#: An embedding value whose standard deviation over the training split is below this is constant.
CONSTANT_STD = 1e-5


@dataclass
class EmbeddingSettings:
    """``model.input`` of a model that reads transfer embeddings."""

    #: What ``bench gpu-check --quick`` and the tests' quick runs shrink it to.
    tiny: ClassVar[dict] = {"max_chunks": 2}

    __extra__ = "ignore"
    #: The pretrained musicnn whose embeddings the model reads (:mod:`genre_cls.pretrained`).
    backbone: str = setting("msd", choices=BACKBONES)
    #: Seconds between the starts of consecutive chunks (null: one chunk after the other, no overlap).
    hop_seconds: Optional[float] = setting(None, ge=0.1, le=60.0, hint=" (null: no overlap; e.g. 1.5 for half a chunk)")
    #: Training and evaluation read at most this many chunks of a track, evenly spread over it
    #: (null: every chunk); whole songs then cost a bounded extraction. ``predict`` reads every chunk.
    max_chunks: Optional[int] = setting(None, ge=1, le=100000)


def hop_samples(settings: dict) -> int:
    """The hop in samples at 16 kHz: ``hop_seconds``, or one chunk (no overlap)."""
    hop = settings.get("hop_seconds")
    return PATCH_SAMPLES if hop is None else max(1, int(round(float(hop) * SAMPLE_RATE)))


class EmbeddingKind(InputKind):
    name = "embedding"
    frontend = "standardize"
    settings = EmbeddingSettings
    voted = True
    unit = "chunk"

    def build(self, index, splits, labels, settings, context):
        name, hop = str(settings.get("backbone", "msd")), hop_samples(settings)
        tracks = audio_tracks(index, "transfer models")
        most = settings.get("max_chunks")
        es = build_embeddings([str(t.audio) for t in tracks], name, hop, None if most is None else int(most), context)
        row_of_path = {p: i for i, p in enumerate(es.paths)}
        kept = [t for t in tracks if str(t.audio) in row_of_path]
        track_ids = [t.track_id for t in kept]
        rows = np.array([row_of_path[str(t.audio)] for t in kept], dtype=np.int64)
        offsets, counts = es.offsets[rows], es.counts[rows]
        emb = torch.from_numpy(es.embeddings)
        y = torch.from_numpy(class_indices(labels, track_ids))
        position = {tid: i for i, tid in enumerate(track_ids)}
        datasets, units = {}, {}
        for part in PARTS:
            idx = [position[t] for t in splits[part] if t in position]
            units[part] = [(i, c) for i in idx for c in range(int(counts[i]))]
            ti = torch.tensor([i for i, _ in units[part]], dtype=torch.long)
            at = torch.tensor([int(offsets[i]) + c for i, c in units[part]], dtype=torch.long)
            datasets[part] = TensorDataset(emb[at], y[ti], ti)
        train_x = datasets["train"].tensors[0].double()
        fitted = {}
        if len(train_x):
            std = train_x.std(0)
            # Most of the mid end's channels are dead on music (constant up to float rounding: two
            # thirds of the 1,506 on the real excerpts, std < 1e-6; the live ones' std is 7e-4 and
            # up): they are left unscaled, so that a rounding difference or a channel that wakes on
            # a user's file is not multiplied a million times.
            std = torch.where(std < CONSTANT_STD, torch.ones_like(std), std)
            fitted = {"mean": train_x.mean(0).float().tolist(), "std": std.float().tolist()}
        return InputDatasets(
            track_ids, datasets, units, dict(es.skipped), fitted=fitted, audio_paths=[t.audio for t in kept],
            summary={"embeddings": {"backbone": name, "chunks": int(counts.sum()), "hop_samples": hop}},
        )

    def input_params(self, settings, built):
        name = str(settings.get("backbone", "msd"))
        return {
            "backbone": name, "backbone_sha256": weights_sha256(name), "sample_rate": SAMPLE_RATE,
            "chunk_samples": PATCH_SAMPLES, "hop_samples": hop_samples(settings), "max_chunks": settings.get("max_chunks"),
            "n_features": EMBEDDING_SIZE, **built.fitted,
        }

    def frontend_params(self, input_params, frontend):
        return {"n_features": int(input_params.get("n_features", EMBEDDING_SIZE)),
                **{k: input_params[k] for k in ("mean", "std") if k in input_params}}

    def net_params(self, input_params):
        return {"n_features": int(input_params.get("n_features", EMBEDDING_SIZE))}

    def sample_rate(self, input_params):
        return SAMPLE_RATE

    def unit_text(self, input_params):
        return f"{PATCH_SAMPLES / SAMPLE_RATE:g} s chunk"

    def describe(self, input_params):
        return f"musicnn ({input_params.get('backbone', 'msd')}) embeddings of {self.unit_text(input_params)}s"

    def cut(self, y, input_params):
        name, hop = str(input_params.get("backbone", "msd")), int(input_params.get("hop_samples", PATCH_SAMPLES))
        trained_with = input_params.get("backbone_sha256")
        if trained_with and trained_with != weights_sha256(name):
            raise UserError(
                f"this model was trained on embeddings of musicnn {name!r} with weights sha256 {trained_with[:12]}..., but this "
                f"install ships {weights_sha256(name)[:12]}...: use it with the genre_cls version that trained it, or train it again"
            )
        emb, starts = embed_waveform(backbone(name), y, hop)
        ends = np.minimum(starts + PATCH_SAMPLES, len(y))
        return FileUnits(torch.from_numpy(emb), list(zip(starts.tolist(), ends.tolist())), np.zeros(len(emb), dtype=bool),
                         [{"chunk": i} for i in range(len(emb))], sample_rate=SAMPLE_RATE)


KIND = EmbeddingKind()
