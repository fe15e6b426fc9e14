"""Mel-spectrogram PNGs in the Kaggle GTZAN style."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from genre_cls.data.melimage import HEIGHT, MEL_IMAGE_VERSION, WIDTH, render_mel_png

SR = 22050


def tone(hz: float, seconds: float = 3.0, gain: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(0)
    return (gain * np.sin(2 * np.pi * hz * t) + 1e-3 * rng.standard_normal(len(t))).astype(np.float32)


def brightest_row(image: Image.Image) -> int:
    """The image row (0 = top) with the highest mean luminance inside the plot area."""
    a = np.asarray(image.convert("L"), dtype=float)[35:256, 54:389]
    return 35 + int(a.mean(axis=1).argmax())


def test_size_mode_margins_and_file(tmp_path):
    path = tmp_path / "sub" / "x.png"
    image = render_mel_png(tone(440), SR, path)
    assert image.size == (WIDTH, HEIGHT) == (432, 288)
    assert image.mode == "RGBA"
    a = np.asarray(image)
    assert (a[..., 3] == 255).all()
    # white margins around matplotlib's default axes (rows 35..255, columns 54..388)
    assert (a[:35] == 255).all() and (a[256:] == 255).all()
    assert (a[:, :54] == 255).all() and (a[:, 389:] == 255).all()
    assert not (a[35:256, 54:389, :3] == 255).all(axis=-1).any()
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.mode == "RGBA" and saved.size == (432, 288)
        assert np.array_equal(np.asarray(saved), a)
    assert isinstance(MEL_IMAGE_VERSION, str) and MEL_IMAGE_VERSION


def test_low_tone_lights_lower_rows_than_high_tone():
    low = brightest_row(render_mel_png(tone(150, gain=0.9), SR))
    high = brightest_row(render_mel_png(tone(5000, gain=0.2), SR))
    assert low > high + 50  # rows grow downwards: low frequencies sit at the bottom


def test_silence_and_bad_shapes():
    image = render_mel_png(np.zeros(SR, dtype=np.float32), SR)
    assert image.size == (432, 288)
    with pytest.raises(ValueError, match="mono"):
        render_mel_png(np.zeros((2, SR), dtype=np.float32), SR)


def test_matches_librosa_specshow_through_matplotlib():
    """The fast path reproduces the specshow figure the Kaggle images were made with."""
    import io

    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    y = tone(300, seconds=7.3) + 0.3 * tone(2200, seconds=7.3) * (rng.random(int(7.3 * SR)) > 0.5)
    S_dB = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR), ref=np.max)
    fig = plt.figure(figsize=(6, 4), dpi=72)
    librosa.display.specshow(S_dB, sr=SR)
    plt.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    reference = np.asarray(Image.open(buf).convert("RGBA"), dtype=int)

    ours = np.asarray(render_mel_png(y, SR), dtype=int)
    assert reference.shape == ours.shape
    differing = (np.abs(reference - ours).max(axis=-1) > 1).mean()
    assert differing < 0.01, f"{differing:.2%} of pixels differ from matplotlib's rendering"
