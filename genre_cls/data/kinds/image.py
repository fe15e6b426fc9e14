"""The image kind: a 30 s clip as a 3x180x180 mel-spectrogram image (Net1-Net4), Kaggle's PNG
where a track has one (``data.images=auto``), else rendered from its audio as ``predict`` does."""

from __future__ import annotations

import io
import logging

import numpy as np
import torch
from torch.utils.data import TensorDataset

from genre_cls.data.audio import SR, TRACK_SAMPLES, windows
from genre_cls.data.imageset import build_images
from genre_cls.data.kinds.base import FileUnits, InputDatasets, InputKind, class_indices
from genre_cls.data.melimage import decode_image, render_mel_png
from genre_cls.data.splits import PARTS
from genre_cls.errors import DataRootError

log = logging.getLogger(__name__)


def image_tracks(tracks: list, images: str, root: str) -> list:
    """The tracks that get an image under ``data.images=images``; a mode the data cannot serve is
    one :class:`DataRootError` that says what to do."""
    if images == "kaggle":
        lacking = [t for t in tracks if t.image is None]
        if lacking:
            raise DataRootError(
                f"data.images=kaggle but {len(lacking)} of {len(tracks)} tracks under {root!r} have no Kaggle PNG "
                "(images_original/<genre>/<genre>000NN.png): use data.images=auto to render the missing ones "
                "from their audio, or data.images=render for all"
            )
        return tracks
    usable = [t for t in tracks if t.audio is not None or (images == "auto" and t.image is not None)]
    if not usable:
        raise DataRootError(
            f"data.images=render needs audio files, and {root!r} holds only images: use data.images=auto or kaggle"
        )
    if len(usable) < len(tracks):
        log.warning("data.images=render: %d tracks have an image but no audio and are left out", len(tracks) - len(usable))
    return usable


class ImageKind(InputKind):
    name = "image"
    frontend = "scale"
    voted = False
    unit = "window"

    def build(self, index, splits, labels, settings, context):
        images, size = settings.get("images", "auto"), int(settings.get("image_size", 180))
        tracks = image_tracks(index.tracks, images, str(index.root))
        made = build_images(
            [("png", t.image) if t.image is not None and images != "render" else ("render", t.audio) for t in tracks],
            size, context,
        )
        track_ids = [tracks[i].track_id for i in made.ok]
        x = torch.from_numpy(made.images)
        y = torch.from_numpy(class_indices(labels, track_ids))
        position = {tid: i for i, tid in enumerate(track_ids)}
        datasets, units = {}, {}
        for part in PARTS:
            idx = torch.tensor([position[t] for t in splits[part] if t in position], dtype=torch.long)
            units[part] = [(int(i), None) for i in idx]
            datasets[part] = TensorDataset(x[idx], y[idx], idx)
        return InputDatasets(
            track_ids, datasets, units, dict(made.skipped),
            summary={"images": {"mode": images, **made.counts()}},
            audio_paths=[tracks[i].audio for i in made.ok],
        )

    def input_params(self, settings, built):
        return {"image_size": int(settings.get("image_size", 180))}

    def unit_text(self, input_params):
        return "30 s window"

    def describe(self, input_params):
        return "mel-spectrogram images, 30 s windows"

    def net_params(self, input_params):
        return {"image_size": int(input_params.get("image_size", 180))}

    def window_samples(self, input_params):
        return TRACK_SAMPLES

    def unit_samples(self, input_params):
        return TRACK_SAMPLES

    def cut(self, y, input_params):
        n = len(y)
        # A clip within 1% of 30 s (every GTZAN clip) is rendered whole, as Kaggle's images were.
        if abs(n - TRACK_SAMPLES) <= 0.01 * TRACK_SAMPLES:
            waves, spans = [y], [(0, n)]
        else:
            wins = windows(y, TRACK_SAMPLES)
            waves = list(wins)
            spans = [(i * TRACK_SAMPLES, min(n, (i + 1) * TRACK_SAMPLES)) for i in range(len(wins))]
        size = int(input_params.get("image_size", 180))
        out = np.empty((len(waves), 3, size, size), dtype=np.uint8)
        for i, w in enumerate(waves):
            buf = io.BytesIO()
            render_mel_png(w, SR).save(buf, format="PNG", compress_level=1)
            buf.seek(0)
            out[i] = decode_image(buf, size)
        return FileUnits(torch.from_numpy(out), spans, np.zeros(len(waves), dtype=bool), [{"window": i} for i in range(len(waves))])


KIND = ImageKind()
