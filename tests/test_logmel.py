"""LogMel equals librosa's melspectrogram + power_to_db, under autocast and on any device."""

import warnings

import numpy as np
import pytest
import torch

from genre_cls.models.logmel import LogMel

SR = 22050


def librosa_logmel(y, *, n_fft=1024, hop_length=512, n_mels=128, fmin=0.0, fmax=None, power=2.0, top_db=80.0, center=True):
    import librosa

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"n_fft=.* is too large")  # short inputs: same padding in both
        mel = librosa.feature.melspectrogram(
            y=y, sr=SR, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax, power=power,
            center=center, pad_mode="constant",
        )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=top_db)


def signals(n: int, seed: int = 0) -> np.ndarray:
    """Noise, a sine, silence, noise with a silent middle, a loud hum with a faint tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    gapped = 0.3 * rng.standard_normal(n)
    gapped[n // 3 : 2 * n // 3] = 0.0
    return np.stack([
        0.3 * rng.standard_normal(n),
        0.5 * np.sin(2 * np.pi * 440 * t),
        np.zeros(n),
        gapped,
        0.8 * np.sin(2 * np.pi * 60 * t) + 1e-4 * np.sin(2 * np.pi * 3000 * t),
    ]).astype(np.float32)


def assert_matches_librosa(ours: np.ndarray, ref: np.ndarray, power: float = 2.0) -> None:
    """The stated tolerance: 5e-4 dB within 60 dB (of power) of the peak, 5e-3 dB within 80 dB.

    With ``power=1`` the output is 10 log10 of the magnitude, so 30 of its "dB" span 60 dB of
    power; below 80 dB of power float32 has no digits left, so the comparison stops there
    (with ``top_db=80`` and ``power=2`` that is everywhere).
    """
    assert ours.shape == ref.shape
    diff = np.abs(ours - ref)
    loud = ref > ref.max() - 60.0 * power / 2
    within = ref >= ref.max() - 80.0 * power / 2
    assert diff[loud].max() < 5e-4, diff[loud].max()
    assert diff[within].max() < 5e-3, diff[within].max()


def test_the_default_librosa_pad_mode_is_constant():
    """The front end pads with zeros when centring: that must still be librosa's default."""
    import inspect

    import librosa

    assert inspect.signature(librosa.feature.melspectrogram).parameters["pad_mode"].default == "constant"


@pytest.mark.parametrize("n", [66150, 22050, 5000, 1000, 300])
def test_equals_librosa_for_noise_sines_and_silence(n):
    batch = signals(n, seed=n)
    out = LogMel()(torch.from_numpy(batch))
    assert out.dtype == torch.float32 and out.shape == (len(batch), 1, 128, 1 + n // 512)
    for example, y in zip(out.numpy()[:, 0], batch):
        assert_matches_librosa(example, librosa_logmel(y))


def test_silence_is_the_floor_and_top_db_clips_each_example_on_its_own():
    batch = signals(22050)
    out = LogMel()(torch.from_numpy(batch))[:, 0]
    assert torch.all(out[2] == -100.0)  # 10 log10(amin)
    for example in out:
        assert float(example.max() - example.min()) <= 80.0 + 1e-4
    # The loud hum in the same batch does not raise the others' floor: clipping is per example.
    gapped = LogMel()(torch.from_numpy(batch[3:4]))[0, 0]
    assert float(gapped.min()) < float(out[4].max()) - 80.0
    assert torch.equal(out[3], gapped)


@pytest.mark.parametrize(
    "params",
    [
        dict(n_fft=2048, hop_length=512, n_mels=64, fmin=30.0, fmax=8000.0, top_db=None),
        dict(n_fft=512, hop_length=256, n_mels=96, power=1.0, top_db=60.0, center=False),
    ],
)
def test_equals_librosa_for_other_parameters(params):
    batch = signals(11025, seed=1)
    module = LogMel(sample_rate=SR, **params)
    out = module(torch.from_numpy(batch)).numpy()[:, 0]
    assert out.shape[-1] == module.frames(11025)
    for example, y in zip(out, batch):
        assert_matches_librosa(example, librosa_logmel(y, **params), power=params.get("power", 2.0))


@pytest.mark.parametrize("n", [0, 1, 511, 512, 66150])
def test_frames_helper_counts_the_output_frames(n):
    module = LogMel()
    assert module.frames(n) == 1 + n // 512
    if n:
        assert module(torch.zeros(1, n)).shape[-1] == module.frames(n)
    assert LogMel(center=False).frames(66150) == 1 + (66150 - 1024) // 512
    with pytest.raises(ValueError, match="fewer than n_fft"):
        LogMel(center=False).frames(1000)


def test_autocast_does_not_lower_the_precision():
    batch = torch.from_numpy(signals(22050))
    module = LogMel()
    plain = module(batch)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        cast = module(batch)
        from_half = module(batch.to(torch.bfloat16))
    assert cast.dtype == torch.float32 and torch.equal(cast, plain)
    assert from_half.dtype == torch.float32  # a half-precision waveform is widened first


def test_the_filter_bank_travels_in_the_state_dict_and_the_module_moves_with_to():
    module = LogMel(n_mels=64)
    assert set(module.state_dict()) == {"mel_basis"}  # the window is rebuilt, not stored
    assert module.mel_basis.shape == (64, 1024 // 2 + 1)
    module = module.to(torch.float64)  # buffers follow .to(); the STFT still runs in float32
    assert module(torch.zeros(2, 4096, dtype=torch.float64)).dtype == torch.float32
    with pytest.raises(ValueError, match="batch, samples"):
        module(torch.zeros(4096))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_on_cuda_under_autocast_it_still_equals_librosa():
    batch = signals(66150)
    module = LogMel().cuda()
    with torch.autocast(device_type="cuda", dtype=torch.float16):
        out = module(torch.from_numpy(batch).cuda())
    assert out.dtype == torch.float32
    for example, y in zip(out.cpu().numpy()[:, 0], batch):
        assert_matches_librosa(example, librosa_logmel(y))
