"""The features kind: a 3 s segment as (16, 33) frames of MFCC, centroid, chroma and contrast
(Net5, Net6), standardised by the model's front end with the training split's statistics; a
track's prediction is the mean of its 10 segments' probabilities."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from genre_cls.data.audio import N_SEGMENTS, SEGMENT_SAMPLES, SR, TRACK_SAMPLES, windows
from genre_cls.data.features import FeatureParams, extract_segments
from genre_cls.data.featureset import extract_dataset
from genre_cls.data.kinds.base import FileUnits, InputDatasets, InputKind, audio_tracks, class_indices
from genre_cls.data.splits import PARTS, parse_segment_id


class FeaturesKind(InputKind):
    name = "features"
    frontend = "standardize"
    voted = True
    unit = "segment"
    splits_units = True

    def reads_seconds(self, settings):
        return TRACK_SAMPLES / SR  # ten segments of one 30 s clip

    def build(self, index, splits, labels, settings, context):
        tracks = audio_tracks(index, "segment models (net5, net6)")
        fs = extract_dataset([str(t.audio) for t in tracks], context=context)
        ok = set(fs.paths)
        kept = [t for t in tracks if str(t.audio) in ok]
        track_ids = [t.track_id for t in kept]
        feats = torch.from_numpy(np.ascontiguousarray(fs.features, dtype=np.float32))  # (N, 10, 16, 33)
        y = torch.from_numpy(class_indices(labels, track_ids))
        position = {tid: i for i, tid in enumerate(track_ids)}
        datasets, units = {}, {}
        for part in PARTS:
            if settings.get("split") == "segment":  # the parts hold segment ids, not track ids
                pairs = [(position[t], s) for t, s in map(parse_segment_id, splits[part]) if t in position]
            else:
                pairs = [(position[t], s) for t in splits[part] if t in position for s in range(N_SEGMENTS)]
            units[part] = list(pairs)
            ti = torch.tensor([p[0] for p in pairs], dtype=torch.long)
            si = torch.tensor([p[1] for p in pairs], dtype=torch.long)
            datasets[part] = TensorDataset(feats[ti, si], y[ti], ti)
        train_x = datasets["train"].tensors[0].reshape(-1, feats.shape[-1]).double()
        fitted = {}
        if len(train_x):
            fitted = {"mean": train_x.mean(0).float().tolist(), "std": train_x.std(0).clamp_min(1e-8).float().tolist()}
        return InputDatasets(track_ids, datasets, units, dict(fs.skipped), fitted=fitted, audio_paths=[t.audio for t in kept])

    def input_params(self, settings, built):
        return {"feature_params": FeatureParams().as_dict(), **built.fitted}

    def frontend_params(self, input_params, frontend):
        return {k: input_params[k] for k in ("mean", "std") if k in input_params}

    def unit_text(self, input_params):
        return "3 s segment"

    def describe(self, input_params):
        return "audio features, 3 s segments"

    def window_samples(self, input_params):
        return TRACK_SAMPLES

    def unit_samples(self, input_params):
        return SEGMENT_SAMPLES

    def cut(self, y, input_params):
        return self.cut_many([y], input_params)[0]

    def cut_many(self, waves, input_params, threads=None):
        # Every segment of every waveform in one batched extraction: the per-call cost is paid once.
        segs = [windows(y, TRACK_SAMPLES).reshape(-1, SEGMENT_SAMPLES) for y in waves]
        params = FeatureParams(**(input_params.get("feature_params") or {}))
        x = torch.from_numpy(extract_segments(np.concatenate(segs), params, threads=threads))
        out, first = [], 0
        for y, s in zip(waves, segs):
            n = len(y)
            starts = np.arange(len(s)) * SEGMENT_SAMPLES
            ends = np.maximum(np.minimum(starts + SEGMENT_SAMPLES, n), starts)  # a padding segment spans nothing
            labels = [{"window": k // N_SEGMENTS, "segment": k % N_SEGMENTS} for k in range(len(s))]
            out.append(FileUnits(x[first : first + len(s)], list(zip(starts.tolist(), ends.tolist())), starts >= n, labels))
            first += len(s)
        return out


KIND = FeaturesKind()
