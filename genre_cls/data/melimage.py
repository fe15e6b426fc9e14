"""Mel-spectrogram PNGs in the style of the Kaggle GTZAN ``images_original`` set.

The Kaggle images (432x288 RGBA) were, as far as is publicly known, made with librosa and
matplotlib::

    S = librosa.feature.melspectrogram(y=y, sr=sr)        # n_fft 2048, hop 512, 128 mels
    S_dB = librosa.power_to_db(S, ref=np.max)              # 0 dB at the peak, floor -80 dB
    fig = plt.figure(figsize=(6, 4), dpi=72)               # 432x288 pixels
    librosa.display.specshow(S_dB, sr=sr)                  # colormap chosen by librosa
    plt.axis("off"); plt.savefig(path)

``librosa.display.cmap`` picks ``magma`` for that data (it is all <= 0 dB), and the
colours span ``S_dB.min()`` .. ``S_dB.max()`` (matplotlib's autoscaled ``Normalize``).

:func:`render_mel_png` computes the same ``S_dB`` with librosa but skips matplotlib: it
maps the dB values through magma's 256-entry lookup table with numpy and places them
into the default subplot area of a white 432x288 canvas (``left=0.125, right=0.9,
bottom=0.11, top=0.88``: pixel rows 35..255 and columns 54..388), taking for every pixel
the spectrogram cell under its centre, which is what matplotlib's Agg backend does when
it draws specshow's unantialiased ``QuadMesh`` (cell edges computed as matplotlib's
transform computes them; a centre exactly on an edge goes left/up, as Agg does). On real
GTZAN clips, cut to many lengths, the result is pixel-identical to the matplotlib
pipeline above (checked with librosa 0.11 / matplotlib 3.11 on the real sample), and
takes tens of milliseconds per 30 s clip (mostly librosa's STFT) instead of ~2 s. The mel
filter bank is built once per sample rate (``melspectrogram`` rebuilds it on every call,
which costs as much as the STFT); the arithmetic is librosa's own, so the values are the
same bits.

What can still differ from the Kaggle files themselves:

- The Kaggle images were made with older librosa/matplotlib releases whose exact code
  is not published; a different colormap choice, figure size, ``amplitude_to_db``
  instead of ``power_to_db``, or another resampler of the audio would change pixels.
- Kaggle's files carry matplotlib's PNG metadata (``Software`` text chunk) and its zlib
  settings; ours carry none, so the bytes differ while the decoded pixels agree.
- All pixels are opaque (alpha 255), as in a ``savefig`` with the default white face.

A PNG (a Kaggle one, or one rendered here) becomes the pixels a model reads by
:func:`decode_image`; :func:`render_image` renders and decodes in one step, from the part of a
track that becomes its image (:func:`image_window`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import IO

import librosa
import matplotlib
import numpy as np
from PIL import Image

from genre_cls.data.audio import SR, TRACK_SAMPLES, windows

# Bump when the rendering changes, so caches of rendered images are rebuilt.
MEL_IMAGE_VERSION = "1"

WIDTH, HEIGHT = 432, 288
# librosa.feature.melspectrogram's defaults.
N_FFT, HOP_LENGTH = 2048, 512
# matplotlib's default subplot parameters (figure.subplot.*), in figure fractions.
_LEFT, _RIGHT, _BOTTOM, _TOP = 0.125, 0.9, 0.11, 0.88
# librosa.display.cmap returns its sequential map for data that never exceeds 0 dB.
_CMAP = "magma"

@lru_cache(maxsize=1)
def _lut() -> np.ndarray:
    """magma's 256 RGBA colours as bytes, rounded the way Agg rounds float colours."""
    lut = np.round(matplotlib.colormaps[_CMAP](np.arange(256)) * 255).astype(np.uint8)
    lut[:, 3] = 255
    return lut


@lru_cache(maxsize=4)
def _mel_basis(sr: int) -> np.ndarray:
    """``librosa.filters.mel`` with librosa's defaults (128 mels), read-only and shared."""
    basis = librosa.filters.mel(sr=sr, n_fft=N_FFT)
    basis.setflags(write=False)
    return basis


def mel_db(y: np.ndarray, sr: int = 22050) -> np.ndarray:
    """The ``(128, frames)`` mel power spectrogram in dB relative to its peak (librosa defaults)."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected mono samples (a 1-D array), got shape {y.shape}")
    # librosa.feature.melspectrogram(y=y, sr=sr) step by step, with its mel filter bank built
    # once instead of per call (half the time of a call): the values are bit-identical.
    S = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH)) ** 2.0
    S = np.einsum("...ft,mf->...mt", S, _mel_basis(sr), optimize=True)
    return librosa.power_to_db(S, ref=np.max)


def _colour_indices(S_dB: np.ndarray) -> np.ndarray:
    """Indices into the 256-entry LUT, following matplotlib's ``Normalize`` and ``Colormap``."""
    S_dB = S_dB.astype(np.float32, copy=False)
    vmin, vmax = float(S_dB.min()), float(S_dB.max())
    if vmax == vmin:  # matplotlib maps constant data to the bottom colour
        return np.zeros(S_dB.shape, dtype=np.intp)
    x = (S_dB - np.float32(vmin)) / np.float32(vmax - vmin)
    x *= 256
    return np.clip(x.astype(np.intp), 0, 255)


def _pixel_cells(n_pixels: int, lo: float, hi: float, n_cells: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Which spectrogram cell lies under each pixel centre along one axis.

    ``lo``/``hi`` bound the axes in matplotlib display units (y measured from the bottom,
    so ``flip`` turns it into image rows). Cell edges are computed as matplotlib's affine
    transform computes them and a centre lying exactly on an edge goes to the cell on
    its left/top side, which is what Agg does; that only matters for a few clip lengths.
    Returns a mask of the pixels inside the axes and the cell index of each of them.
    """
    edges = np.arange(n_cells + 1) * ((hi - lo) * (1.0 / n_cells)) + lo
    centre = np.arange(n_pixels) + 0.5
    if flip:  # image rows run downwards: cell j spans (size - edge[j+1], size - edge[j]]
        pix_edges = n_pixels - edges[::-1]
        cell = n_cells - np.searchsorted(pix_edges, centre, side="left")
    else:
        cell = np.searchsorted(edges, centre, side="left") - 1
    inside = (cell >= 0) & (cell < n_cells)
    return inside, cell[inside]


def render_mel_png(y: np.ndarray, sr: int = 22050, path: str | os.PathLike | None = None) -> Image.Image:
    """Render ``y`` as a 432x288 RGBA mel-spectrogram image in the Kaggle GTZAN style.

    Low frequencies are at the bottom, time runs left to right, the background is white.
    When ``path`` is given the image is also written there as a PNG (parent folders are
    created). Returns the PIL image.
    """
    idx = _colour_indices(mel_db(y, sr))  # row 0 = lowest mel band
    n_mels, n_frames = idx.shape
    cols_in, cols = _pixel_cells(WIDTH, _LEFT * WIDTH, _RIGHT * WIDTH, n_frames, flip=False)
    rows_in, rows = _pixel_cells(HEIGHT, _BOTTOM * HEIGHT, _TOP * HEIGHT, n_mels, flip=True)

    canvas = np.full((HEIGHT, WIDTH, 4), 255, dtype=np.uint8)
    canvas[np.ix_(rows_in, cols_in)] = _lut()[idx[np.ix_(rows, cols)]]
    image = Image.fromarray(canvas)  # uint8 HxWx4 -> RGBA
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG", compress_level=1)  # 2x faster than zlib's default, same size here
    return image


# --------------------------------------------------------------------------- images as pixels

#: Clips within this fraction of a 30 s window (29.7 s .. 30.3 s) are rendered whole, like GTZAN's.
CLIP_TOLERANCE = 0.01


def _pixels(image: Image.Image, size: int) -> np.ndarray:
    rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def decode_image(path: str | os.PathLike | IO[bytes], size: int = 180) -> np.ndarray:
    """One PNG (a path or an open file) as ``(3, size, size)`` uint8: alpha dropped, bilinear
    resize, no other change."""
    with Image.open(path) as im:
        return _pixels(im, size)


def image_window(y: np.ndarray) -> np.ndarray:
    """The part of a track that becomes its image: the whole clip when it is within
    :data:`CLIP_TOLERANCE` of 30 s (every GTZAN clip), else its first 30 s window (zero-padded
    when shorter), as ``predict`` draws a file's first window."""
    if abs(len(y) - TRACK_SAMPLES) <= CLIP_TOLERANCE * TRACK_SAMPLES:
        return np.asarray(y, dtype=np.float32)
    return windows(y, TRACK_SAMPLES)[0]


def render_image(y: np.ndarray, size: int = 180) -> np.ndarray:
    """A 22,050 Hz waveform drawn as the Kaggle-style mel PNG, as ``(3, size, size)`` uint8
    (the pixels :func:`decode_image` gives for that PNG; PNG is lossless, so no file is needed)."""
    return _pixels(render_mel_png(y, SR), size)
