"""data/audio_stream.py: decoding block by block equals decoding whole; what decoding saw; the flags."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data.audio import SR, AudioDecodeError, load_audio
from genre_cls.data.audio_stream import AudioStats, audio_flags, decode_blocks, header_seconds, waveform_stats
from genre_cls.data.synth import render_clip


def _decoded(path, sr=SR, block_seconds=10.0):
    stats = AudioStats()
    blocks = list(decode_blocks(path, sr, stats, block_seconds=block_seconds))
    return blocks, stats


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """23 s of synthetic music in several formats, rates and channel counts."""
    d = tmp_path_factory.mktemp("stream")
    y = render_clip("rock", 0, (1,), 23.0, 44100, channels=2) * 0.8
    files = {
        "stereo44k_float.wav": (y, 44100, {"subtype": "FLOAT"}),
        "stereo44k.flac": (y, 44100, {}),
        "mono8k.wav": (y[::5, 0][: 8000 * 23 + 7], 8000, {"subtype": "PCM_16"}),
        "mono22k.wav": (y[::2, 0], SR, {"subtype": "PCM_16"}),
        "stereo44k.mp3": (y, 44100, {"format": "MP3"}),
    }
    for name, (data, sr, kw) in files.items():
        sf.write(d / name, data, sr, **kw)
    return {name: d / name for name in files}


@pytest.mark.parametrize("name", ["stereo44k_float.wav", "stereo44k.flac", "mono8k.wav", "mono22k.wav"])
def test_blocks_joined_equal_load_audio_bit_for_bit(music, name):
    blocks, stats = _decoded(music[name], block_seconds=3.3)
    whole = load_audio(music[name])
    joined = np.concatenate(blocks)
    assert len(blocks) > 3  # it really was decoded in pieces
    assert joined.dtype == np.float32 and joined.shape == whole.shape
    assert np.array_equal(joined, whole)
    assert stats.samples == len(whole) and stats.seconds == pytest.approx(len(whole) / SR)
    assert stats.peak == pytest.approx(float(np.abs(whole).max()))
    assert stats.rms_db == pytest.approx(10 * math.log10(np.mean(whole.astype(np.float64) ** 2)), abs=1e-6)
    assert stats.stopped is None and stats.header_seconds == pytest.approx(23.0, abs=0.01)


def test_an_mp3_decodes_to_load_audio_within_a_float_step(music):
    """libmpg123 rounds the last bit differently with other read sizes: equal within 1e-6."""
    joined = np.concatenate(_decoded(music["stereo44k.mp3"], block_seconds=3.3)[0])
    whole = load_audio(music["stereo44k.mp3"])
    assert joined.shape == whole.shape
    assert np.abs(joined - whole).max() < 1e-6


def test_the_blocks_do_not_depend_on_their_size_and_stay_that_size(music):
    small = _decoded(music["stereo44k.flac"], block_seconds=1.0)[0]
    large = np.concatenate(_decoded(music["stereo44k.flac"], block_seconds=60.0)[0])
    assert np.array_equal(np.concatenate(small), large)
    # One second of the 44.1 kHz file at a time: about one second at 22,050 Hz per block (the
    # resampler's delay, a few hundred samples, comes out with the last one).
    assert max(len(b) for b in small) <= SR + 1024


def test_undecodable_files_are_the_same_errors_as_load_audio(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("not audio\n")
    for name, words in (("missing.wav", "no such file"), ("empty.wav", r"empty \(0 bytes\)"), ("notes.wav", "it is a text file, not audio")):
        with pytest.raises(AudioDecodeError, match=words):
            _decoded(tmp_path / name)
        with pytest.raises(AudioDecodeError, match=words):
            load_audio(tmp_path / name)


def test_samples_that_are_not_audio_stop_the_file_even_late(tmp_path):
    y = np.full(SR * 30, 0.1, dtype=np.float32)
    y[SR * 25] = np.nan  # in the third 10 s block
    sf.write(tmp_path / "nan.wav", y, SR, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="non-finite"):
        _decoded(tmp_path / "nan.wav")


def test_a_wav_cut_short_is_decoded_and_its_header_length_kept(tmp_path):
    y = render_clip("jazz", 0, (2,), 10.0, SR)
    sf.write(tmp_path / "full.wav", y, SR, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + (len(data) - 44) // 2])  # a download cut short
    assert header_seconds(tmp_path / "full.wav") == pytest.approx(10.0)
    # libsndfile reports what the file holds (5 s); the data chunk still declares 10 s.
    assert sf.info(str(tmp_path / "cut.wav")).duration == pytest.approx(5.0, abs=0.01)
    assert header_seconds(tmp_path / "cut.wav") == pytest.approx(10.0)
    blocks, stats = _decoded(tmp_path / "cut.wav")
    assert stats.seconds == pytest.approx(5.0, abs=0.01)
    flags = audio_flags(stats, 3.0, "3 s segment")
    assert list(flags) == ["length_mismatch"]
    assert "5.00 s of audio decoded but its header announces 10.00 s" in flags["length_mismatch"]
    assert audio_flags(_decoded(tmp_path / "full.wav")[1], 3.0, "3 s segment") == {}


def test_a_flac_damaged_part_way_keeps_the_audio_before_the_damage(tmp_path):
    y = render_clip("pop", 0, (3,), 20.0, SR)
    sf.write(tmp_path / "full.flac", y, SR)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: int(len(data) * 0.6)])
    blocks, stats = _decoded(tmp_path / "cut.flac", block_seconds=2.0)
    got = np.concatenate(blocks)
    assert 6.0 <= stats.seconds < 12.0 and stats.stopped  # whole 2 s blocks before the damage
    assert np.abs(got - load_audio(tmp_path / "full.flac")[: len(got)]).max() < 1e-4
    flags = audio_flags(stats, 3.0, "3 s segment")
    assert "decoding stopped after" in flags["length_mismatch"] and "of the 20.00 s its header announces" in flags["length_mismatch"]


def test_flags_name_silence_near_silence_and_clips_shorter_than_the_unit():
    music = render_clip("metal", 0, (4,), 30.0, SR)
    assert audio_flags(waveform_stats(music, SR), 3.0, "3 s segment") == {}
    silent = audio_flags(waveform_stats(np.zeros(SR * 30, np.float32), SR), 3.0, "3 s segment")
    assert list(silent) == ["silent"] and "peak -inf dBFS" in silent["silent"]
    hiss = (np.random.default_rng(0).standard_normal(SR * 30) * 10 ** (-55 / 20)).astype(np.float32)  # -55 dBFS RMS
    near = audio_flags(waveform_stats(hiss, SR), 3.0, "3 s segment")
    assert list(near) == ["near_silent"] and "RMS level -55 dBFS" in near["near_silent"]
    quiet_music = music * 10 ** (-20 / 20)  # 20 dB quieter music is still music
    assert audio_flags(waveform_stats(quiet_music, SR), 3.0, "3 s segment") == {}
    short = audio_flags(waveform_stats(music[: SR], SR), 3.0, "3 s segment")
    assert list(short) == ["too_short"] and "1.00 s of audio" in short["too_short"] and "3 s segment" in short["too_short"]
    # Against a 30 s window, 10 s is far too short; against a 3 s chunk it is not.
    assert list(audio_flags(waveform_stats(music[: 10 * SR], SR), 30.0, "30 s window")) == ["too_short"]
    assert audio_flags(waveform_stats(music[: 2 * SR], SR), 3.0, "3 s chunk") == {}


def test_no_real_gtzan_clip_is_flagged(gtzan_sample):
    """The thresholds leave real music alone: every clip of the real sample decodes unflagged."""
    paths = sorted((gtzan_sample / "genres_original").glob("*/*.wav"))
    assert len(paths) >= 10
    for path in paths:
        stats = _decoded(path)[1]
        assert audio_flags(stats, 3.0, "3 s segment") == {}, path
        assert stats.rms_db > -40, path
