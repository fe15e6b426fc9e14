"""Decoding, fixed-length framing and long-input windows (genre_cls.data.audio)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data.audio import (
    N_SEGMENTS,
    SEGMENT_SAMPLES,
    SR,
    TRACK_SAMPLES,
    AudioDecodeError,
    fix_length,
    load_audio,
    segments,
    windows,
)


def _tone(seconds: float, sr: int = SR, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.5 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def test_constants():
    assert (SR, TRACK_SAMPLES, N_SEGMENTS, SEGMENT_SAMPLES) == (22050, 660_000, 10, 66_000)
    assert N_SEGMENTS * SEGMENT_SAMPLES == TRACK_SAMPLES


@pytest.mark.parametrize("suffix, fmt, subtype", [(".wav", "WAV", "PCM_16"), (".au", "AU", "PCM_16")])
def test_load_wav_and_au_at_native_rate(tmp_path, suffix, fmt, subtype):
    y = _tone(1.5)
    path = tmp_path / f"clip{suffix}"
    sf.write(path, y, SR, format=fmt, subtype=subtype)
    out = load_audio(path)
    assert out.dtype == np.float32 and out.ndim == 1 and out.shape == y.shape
    np.testing.assert_allclose(out, y, atol=1.0 / 2**15)  # PCM_16 quantisation


def test_stereo_44k_downmix_and_resample_matches_librosa(tmp_path):
    import librosa

    left, right = _tone(2.0, sr=44100, freq=330.0, seed=1), _tone(2.0, sr=44100, freq=1200.0, seed=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    out = load_audio(path)
    ref, sr = librosa.load(path, sr=22050)
    assert sr == SR and out.dtype == np.float32
    assert out.shape == ref.shape == (44100,)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


def test_text_file_renamed_wav_raises_one_line_error(tmp_path):
    path = tmp_path / "jazz.00054.wav"
    path.write_text("this is not audio\n" * 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fallback must not leak librosa's warnings
        with pytest.raises(AudioDecodeError) as info:
            load_audio(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    assert isinstance(info.value, ValueError)


def test_missing_and_empty_files_raise(tmp_path):
    with pytest.raises(AudioDecodeError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(AudioDecodeError):
        load_audio(empty)


def test_fix_length_and_segments():
    y = np.arange(100, dtype=np.float32)
    assert np.array_equal(fix_length(y, 60), y[:60])
    padded = fix_length(y, 150)
    assert padded.shape == (150,) and np.array_equal(padded[:100], y) and not padded[100:].any()

    track = _tone(31.0)
    segs = segments(track)
    assert segs.shape == (N_SEGMENTS, SEGMENT_SAMPLES) and segs.dtype == np.float32
    assert np.array_equal(segs.reshape(-1), track[:TRACK_SAMPLES])
    short = segments(_tone(5.0))
    assert short.shape == (10, 66_000) and not short[2:].any()


@pytest.mark.parametrize(
    "seconds, n_windows",
    [(5.0, 1), (30.0, 1), (95.0, 3), (50.0, 2), (60.0, 2)],
)
def test_windows(seconds, n_windows):
    y = np.random.default_rng(0).standard_normal(int(seconds * SR)).astype(np.float32)
    w = windows(y)
    assert w.shape == (n_windows, TRACK_SAMPLES) and w.dtype == np.float32
    flat = w.reshape(-1)
    n = min(y.size, flat.size)
    assert np.array_equal(flat[:n], y[:n])  # consecutive, in order
    assert not flat[n:].any()  # padding is zeros


@pytest.mark.parametrize(
    "bad, sr, reason",
    [
        (1e30, SR, "too large to be audio (peak 1e+30"),
        (2e3, 44100, "too large to be audio (peak 2e+03"),  # checked before resampling too
        (np.nan, SR, "non-finite samples"),
        (np.inf, SR, "non-finite samples"),
    ],
)
def test_samples_that_are_not_audio_are_refused(tmp_path, bad, sr, reason):
    y = _tone(1.0, sr)
    y[100] = bad
    path = tmp_path / "huge.wav"
    sf.write(path, y, sr, subtype="FLOAT")  # a float wav stores any value as it is
    with pytest.raises(AudioDecodeError, match=re.escape(reason)) as err:
        load_audio(path)
    assert err.value.path == str(path)


def test_float_audio_a_little_over_full_scale_is_still_audio(tmp_path):
    y = _tone(1.0)
    y[100] = 1.5  # an unclipped master
    path = tmp_path / "hot.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    assert load_audio(path)[100] == pytest.approx(1.5)


def test_an_empty_file_says_it_is_empty(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match=r"empty \(0 bytes\)"):
        load_audio(empty)


def test_a_broken_wav_says_what_is_wrong_with_it(tmp_path):
    """A RIFF header with no data chunk (the synthetic set's corrupt track): audioread's fallback
    fails with an empty message, so soundfile's reason is given, without repeating the path."""
    import struct

    path = tmp_path / "broken.wav"
    body = bytes(range(256)) * 40
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body) + 4) + b"WAVE" + body)
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path)
    assert info.value.reason.startswith("Error in WAV file") and str(path) not in info.value.reason
    assert "in the fallback decoder" in info.value.reason


def _lying(path, kind: str):
    """An audio file whose header says one thing and whose data another, made from a real 5 s tone."""
    import struct

    y = _tone(5.0)
    suffix = path.suffix.lower()
    sf.write(path, y, SR, format={".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}[suffix])
    data = bytearray(path.read_bytes())
    if suffix == ".wav" and kind == "rate":
        data[24:28] = struct.pack("<I", 4_000_000_000)  # fmt chunk: sample rate
    elif suffix == ".wav" and kind == "channels":
        data[22:24] = struct.pack("<H", 1024)
    elif suffix == ".flac":  # STREAMINFO: 20 bits of sample rate, then channels - 1 in 3 bits
        bits = int.from_bytes(data[18:26], "big")
        bits = (bits & ~(((1 << 20) - 1) << 44)) | (655_350 << 44) if kind == "rate" else bits | (7 << 41)
        data[18:26] = bits.to_bytes(8, "big")
    else:  # the Vorbis identification header: channels, then the sample rate
        at = data.find(b"\x01vorbis") + 7
        data[at + 4 : at + 9] = struct.pack("<BI", 255, 4_000_000_000)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("name, kind, reason", [
    ("rate.wav", "rate", "its header claims a sample rate of 4,000,000,000 Hz (audio has 1,000 to 768,000)"),
    ("channels.wav", "channels", "its header claims 1,024 channels (audio has 1 to 256)"),
    ("channels.flac", "channels", "flac channel changed mid stream"),
    ("both.ogg", "rate", "Error opening"),
])
def test_a_header_that_lies_is_not_decoded_into_nonsense(tmp_path, name, kind, reason):
    from genre_cls.data.tracks import audio_problem

    path = _lying(tmp_path / name, kind)
    with pytest.raises(AudioDecodeError) as err:
        load_audio(path)
    assert reason in err.value.reason and "\n" not in str(err.value)
    assert audio_problem(path, 1.0, decode=True) is not None  # and the indexers skip it (or the build, decoding it)


def test_a_flac_whose_header_rate_is_30_times_too_high_decodes_to_what_it_holds(tmp_path):
    from genre_cls.data.tracks import audio_problem

    path = _lying(tmp_path / "fast.flac", "rate")
    assert len(load_audio(path)) < SR  # 5 s of samples read at 655 kHz: a sixth of a second (predict refuses it)
    assert audio_problem(path, 1.0).startswith("too short (0.17 s < 1 s)")


@pytest.mark.parametrize("name", ["page.mp3", "page.wav", "page.flac", "page.ogg"])
def test_a_web_page_saved_as_audio_is_named_for_what_it_is(tmp_path, name):
    from genre_cls.data.tracks import audio_problem

    path = tmp_path / name
    path.write_text("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>gone</body></html>\n")
    with pytest.raises(AudioDecodeError) as err:
        load_audio(path)
    assert err.value.reason == "it is an HTML page, not audio"
    assert audio_problem(path, 1.0) == "it is an HTML page, not audio"
    (tmp_path / "cover.mp3").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert audio_problem(tmp_path / "cover.mp3", 1.0) == "it is a PNG image, not audio"
