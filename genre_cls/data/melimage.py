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
it draws specshow's unantialiased ``QuadMesh``. On real GTZAN clips the result is
pixel-identical to the matplotlib pipeline above (checked on the ten clips of the real
sample), about fifty times faster (a 30 s clip takes ~25 ms here, ~2 s with matplotlib).

What can still differ from the Kaggle files themselves:

- The Kaggle images were made with older librosa/matplotlib releases whose exact code
  is not published; a different colormap choice, figure size, ``amplitude_to_db``
  instead of ``power_to_db``, or another resampler of the audio would change pixels.
- Kaggle's files carry matplotlib's PNG metadata (``Software`` text chunk) and its zlib
  settings; ours carry none, so the bytes differ while the decoded pixels agree.
- All pixels are opaque (alpha 255), as in a ``savefig`` with the default white face.
"""

from __future__ import annotations

import os
from pathlib import Path

import librosa
import matplotlib
import numpy as np
from PIL import Image

# Bump when the rendering changes, so caches of rendered images are rebuilt.
MEL_IMAGE_VERSION = "1"

WIDTH, HEIGHT = 432, 288
# matplotlib's default subplot parameters (figure.subplot.*), in figure fractions.
_LEFT, _RIGHT, _BOTTOM, _TOP = 0.125, 0.9, 0.11, 0.88
# librosa.display.cmap returns its sequential map for data that never exceeds 0 dB.
_CMAP = "magma"

_LUT: np.ndarray | None = None


def _lut() -> np.ndarray:
    """magma's 256 RGBA colours as bytes, rounded the way Agg rounds float colours."""
    global _LUT
    if _LUT is None:
        rgba = matplotlib.colormaps[_CMAP](np.arange(256))
        _LUT = np.round(rgba * 255).astype(np.uint8)
        _LUT[:, 3] = 255
    return _LUT


def mel_db(y: np.ndarray, sr: int = 22050) -> np.ndarray:
    """The ``(128, frames)`` mel power spectrogram in dB relative to its peak (librosa defaults)."""
    y = np.asarray(y, dtype=np.float32)
    S = librosa.feature.melspectrogram(y=y, sr=sr)
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


def _cell_centres(n_pixels: int, start: float, stop: float, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """For pixel centres along one axis: which lie in ``[start, stop)`` and which cell each hits."""
    centre = np.arange(n_pixels) + 0.5
    inside = (centre >= start) & (centre < stop)
    cell = ((centre[inside] - start) / (stop - start) * n_cells).astype(np.intp)
    return inside, np.clip(cell, 0, n_cells - 1)


def render_mel_png(y: np.ndarray, sr: int = 22050, path: str | os.PathLike | None = None) -> Image.Image:
    """Render ``y`` as a 432x288 RGBA mel-spectrogram image in the Kaggle GTZAN style.

    Low frequencies are at the bottom, time runs left to right, the background is white.
    When ``path`` is given the image is also written there as a PNG (parent folders are
    created). Returns the PIL image.
    """
    idx = _colour_indices(mel_db(y, sr))[::-1]  # row 0 = highest mel band, at the top
    n_mels, n_frames = idx.shape
    cols_in, cols = _cell_centres(WIDTH, _LEFT * WIDTH, _RIGHT * WIDTH, n_frames)
    rows_in, rows = _cell_centres(HEIGHT, (1 - _TOP) * HEIGHT, (1 - _BOTTOM) * HEIGHT, n_mels)

    canvas = np.full((HEIGHT, WIDTH, 4), 255, dtype=np.uint8)
    canvas[np.ix_(rows_in, cols_in)] = _lut()[idx[np.ix_(rows, cols)]]
    image = Image.fromarray(canvas)  # uint8 HxWx4 -> RGBA
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
    return image
