"""The musicnn port equals the original network (genre_cls/models/musicnn.py, genre_cls/pretrained/).

The reference, tests/data/musicnn_reference.npz, was computed once with musicnn 0.1.0's own
TensorFlow graphs and checkpoints (``python -m genre_cls.pretrained.convert_musicnn reference``),
its preprocessing in float32, on the synthetic signals of ``reference_signals()`` (regenerated
here bit for bit) and on the 10 real clips of ../shared/gtzan-sample (keyed by file name and
the sha256 of the decoded samples). Stated tolerances, on CPU float32:

* log-mel (``log10(1 + 10000 mel)``, values 0-7): 5e-5 absolute (measured: 1.7e-5);
* tag probabilities of every patch, all four models: 2e-5 absolute (measured: 4.4e-6);
* MSD embeddings of the first patch (mean_pool, max_pool, penultimate): 2e-5 of the layer's
  largest magnitude (measured: 4.5e-6).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from genre_cls.models.musicnn import PATCH_FRAMES, PATCH_SAMPLES, SAMPLE_RATE, Musicnn, MusicnnLogMel, MusicnnVGG
from genre_cls.pretrained import PRETRAINED, WEIGHTS_DIR, load, pretrained
from genre_cls.pretrained.convert_musicnn import convert, decoded_hash, reference_signals, tf_to_torch_names
from genre_cls.pretrained.tagger import PATCH_SECONDS, Tagger, logmel_patches

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "data" / "musicnn_reference.npz"
LOGMEL_TOL, TAGS_TOL, EMBEDDING_RTOL = 5e-5, 2e-5, 2e-5


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def taggers():
    return {name: Tagger(name) for name in PRETRAINED}


@pytest.fixture(scope="module")
def real_clips(gtzan_sample, reference):
    """File name -> (decoded samples, sample rate) for each clip the reference holds."""
    import soundfile as sf

    clips = {}
    for name in sorted({k.split("/")[1] for k in reference if k.startswith("real/")}):
        (path,) = gtzan_sample.glob(f"genres_original/*/{name}")
        y, sr = sf.read(path, dtype="float32")
        assert decoded_hash(y) == str(reference[f"real/{name}/decoded_sha256"]), f"{path} is not the clip the reference was computed from"
        clips[name] = (y, sr)
    assert len(clips) == 10
    return clips


def _check_logmel(key, y, sr, reference):
    import librosa

    y16 = librosa.resample(y, orig_sr=sr, target_sr=SAMPLE_RATE) if sr != SAMPLE_RATE else y
    with torch.no_grad():
        rep = MusicnnLogMel()(torch.from_numpy(y16)[None])[0].numpy()
    frames = reference[f"{key}/frames"]
    assert rep.shape == (1 + len(y16) // 256, 96) and frames[-1] == rep.shape[0] - 1
    np.testing.assert_allclose(rep[frames], reference[f"{key}/logmel"], rtol=0, atol=LOGMEL_TOL)


def _check_tags(key, y, sr, reference, taggers, patches=None, msd_result=None):
    """Every model's tag probabilities against the reference's, and MSD's embeddings of the first
    patch. ``patches``: compare only these patches, computed from the log-mel patches directly
    (the real clips' other models, to keep the test fast); ``msd_result``: MSD's result already
    computed through the tagger."""
    cut, _ = logmel_patches(y, sr, taggers["msd"].model.frontend)
    for name, tagger in taggers.items():
        want = reference[f"{key}/{name}/tags"]
        if name == "msd" and msd_result is not None:
            got = msd_result.patch_probabilities
        elif patches is None:
            got = tagger(y, sr).patch_probabilities
        else:
            with torch.no_grad():
                got = torch.sigmoid(tagger.model.embeddings(cut[patches])["logits"]).numpy()
            want = want[patches]
        assert got.shape == want.shape  # the same patches as musicnn's own cut
        np.testing.assert_allclose(got, want, rtol=0, atol=TAGS_TOL, err_msg=f"{key} {name}")
    with torch.no_grad():
        layers = taggers["msd"].model.embeddings(cut[:1])
    for layer in ("mean_pool", "max_pool", "penultimate"):
        want = reference[f"{key}/msd/{layer}"]
        np.testing.assert_allclose(layers[layer].numpy(), want, rtol=0, atol=EMBEDDING_RTOL * np.abs(want).max())


@pytest.fixture(scope="module")
def real_msd(real_clips, taggers):
    """File name -> the MSD tagger's result on the whole clip."""
    return {name: taggers["msd"](y, sr) for name, (y, sr) in real_clips.items()}


SYNTHETIC = sorted(reference_signals())


@pytest.mark.parametrize("signal", SYNTHETIC)
def test_front_end_equals_musicnns_float32_logmel_on_synthetic_audio(signal, reference):
    _check_logmel(f"synthetic/{signal}", reference_signals()[signal], SAMPLE_RATE, reference)


@pytest.mark.parametrize("signal", SYNTHETIC)
def test_tags_and_embeddings_equal_the_original_networks_on_synthetic_audio(signal, reference, taggers):
    _check_tags(f"synthetic/{signal}", reference_signals()[signal], SAMPLE_RATE, reference, taggers)


def test_front_end_equals_musicnns_float32_logmel_on_real_clips(real_clips, reference):
    for name, (y, sr) in real_clips.items():
        _check_logmel(f"real/{name}", y, sr, reference)


def test_tags_and_embeddings_equal_the_original_networks_on_real_clips(real_clips, real_msd, reference, taggers):
    """MSD through the tagger on every patch; MTT and the VGGs on patches 1 and 6 of each clip."""
    for name, (y, sr) in real_clips.items():
        _check_tags(f"real/{name}", y, sr, reference, taggers, patches=[0, 5], msd_result=real_msd[name])


def test_loud_music_neither_overflows_nor_gets_the_same_tags_as_other_music(real_msd):
    """The float16 trap: musicnn's own cast made loud clips inf and every clip the same tags."""
    loud = reference_signals()["loud_bass"]
    with torch.no_grad():
        rep = MusicnnLogMel()(torch.from_numpy(loud)[None])
    # 10000 x overflows float16 (max 65504) where the log-mel exceeds log10(65505) = 4.82.
    assert torch.isfinite(rep).all() and float(rep.max()) > np.log10(65504.0 + 1)
    top = {name: [t for t, _ in result.top(3)] for name, result in real_msd.items()}
    assert "metal" in top["metal.00000.wav"] and "jazz" in top["jazz.00000.wav"] and "blues" in top["blues.00000.wav"]
    assert len({tuple(t) for t in top.values()}) >= 8


def test_parameter_counts_are_the_published_networks():
    def count(model):
        return sum(p.numel() for p in model.parameters())

    assert count(Musicnn()) == 787_159  # the TF checkpoints' trainable variables (counted with TF)
    assert count(MusicnnVGG()) == 605_748
    assert count(Musicnn(midend_filters=512, backend_units=500)) > 2 * count(Musicnn())


def test_forward_returns_the_logits_and_every_layer():
    model = Musicnn().eval()
    x = 0.1 * torch.randn(2, PATCH_SAMPLES)
    with torch.no_grad():
        logits, layers = model(x, return_embeddings=True)
        assert torch.equal(logits, model(x))
    assert set(layers) == set(Musicnn.PER_FRAME) | set(Musicnn.PER_PATCH)
    frames = PATCH_FRAMES
    shapes = {"timbral": (2, 408, frames), "temporal": (2, 153, frames), "frontend": (2, 561, frames), "cnn1": (2, 64, frames),
              "midend": (2, 753, frames), "max_pool": (2, 753), "mean_pool": (2, 753), "penultimate": (2, 200), "logits": (2, 50)}
    for name, shape in shapes.items():
        assert tuple(layers[name].shape) == shape, name
    assert torch.equal(layers["frontend"], torch.cat([layers["timbral"], layers["temporal"]], 1))
    assert torch.equal(layers["mean_pool"], layers["midend"].mean(2))
    with pytest.raises(ValueError, match="96 mels"):
        model.embeddings(torch.zeros(1, 187, 128))
    vgg_logits, vgg_layers = MusicnnVGG().eval()(x, return_embeddings=True)
    assert vgg_logits.shape == (2, 50) and vgg_layers["pool5"].shape == (2, 128, 2, 1)
    with pytest.raises(ValueError, match="187 frames"):
        MusicnnVGG()(torch.zeros(1, 2 * PATCH_SAMPLES))


@pytest.mark.parametrize("architecture", ["musicnn", "vgg"])
def test_the_converter_maps_every_tf_variable_with_the_right_axes(architecture):
    """Without TensorFlow: write a torch model's weights in TF's layouts under TF's names, and
    the converter must rebuild the same network (a swapped axis changes the output)."""
    torch.manual_seed(0)
    source = {"musicnn": Musicnn, "vgg": MusicnnVGG}[architecture]()
    for m in source.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    source.eval()
    to_tf = {"copy": lambda a: a, "conv2d": lambda a: a.transpose(2, 3, 1, 0),
             "conv1d": lambda a: a.transpose(2, 1, 0)[:, :, None, :], "dense": lambda a: a.T}
    state = source.state_dict()
    variables = {tf: to_tf[kind](state[name].numpy()) for name, (tf, kind) in tf_to_torch_names(architecture).items()}
    rebuilt = convert(variables, architecture)
    x = 0.1 * torch.randn(2, PATCH_SAMPLES)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), source(x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="no place"):
        convert({**variables, "conv2d_99/kernel": np.zeros(1)}, architecture)


def test_registry_loads_each_model_with_its_tags_and_refuses_a_damaged_file(tmp_path, monkeypatch):
    provenance = json.loads((WEIGHTS_DIR / "musicnn.json").read_text())
    assert tuple(provenance["models"]) == PRETRAINED
    assert provenance["source"]["package"] == "musicnn" and provenance["source"]["version"] == "0.1.0"
    assert "ISC" in provenance["source"]["licence"] and "Permission to use" in (WEIGHTS_DIR / "LICENSE-musicnn.md").read_text()
    for name in PRETRAINED:
        entry = pretrained(name)
        assert hashlib.sha256(entry.weights.read_bytes()).hexdigest() == entry.weights_sha256
        assert len(entry.tags) == 50 and len(set(entry.tags)) == 50
    assert pretrained("msd").tags[:3] == ("rock", "pop", "alternative")
    assert pretrained("mtt").tags[:3] == ("guitar", "classical", "slow")
    assert not load("msd").training
    with pytest.raises(ValueError, match="unknown pretrained model 'gtzan'.*msd, mtt"):
        pretrained("gtzan")

    damaged = tmp_path / "musicnn_msd.pt"
    shutil.copyfile(pretrained("msd").weights, damaged)
    with open(damaged, "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\0" * 10)
    import genre_cls.pretrained as registry

    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    registry._registry.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="damaged"):
            load("msd")
        damaged.unlink()
        with pytest.raises(RuntimeError, match="missing"):
            load("msd")
    finally:
        monkeypatch.undo()
        registry._registry.cache_clear()


def test_pyproject_ships_every_weight_file():
    """A non-editable install gets exactly what package-data names (checked with ``pip wheel``
    once; here: every file in weights/ matches a package-data pattern)."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["genre_cls"]
    files = sorted(p.relative_to(REPO / "genre_cls").as_posix() for p in WEIGHTS_DIR.iterdir())
    assert len(files) == 6
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []


@pytest.mark.parametrize(
    ("seconds", "patches"),
    [(30.0, 10), (1.0, 1), (0.01, 1), (2 * PATCH_SECONDS + 0.4 * PATCH_SECONDS, 2), (2 * PATCH_SECONDS + 0.6 * PATCH_SECONDS, 3)],
)
def test_tagger_cuts_patches_and_spans_like_musicnn_keeping_a_long_tail(seconds, patches, taggers):
    y = 0.1 * np.random.default_rng(0).standard_normal(int(seconds * 22050)).astype(np.float32)
    result = taggers["msd"](y, 22050)
    duration = len(y) / 22050
    assert result.patch_probabilities.shape == (patches, 50) and result.spans.shape == (patches, 2)
    np.testing.assert_allclose(result.spans[:, 0], np.arange(patches) * PATCH_SECONDS)
    assert result.spans[-1, 1] == pytest.approx(min(duration, patches * PATCH_SECONDS), abs=1e-4)
    np.testing.assert_allclose(result.probabilities, result.patch_probabilities.mean(0), rtol=1e-6)


def test_tag_result_ranks_tags_and_is_json_ready(real_msd):
    result = real_msd["metal.00000.wav"]
    top = result.top(5)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert top[0][1] == pytest.approx(float(result.probabilities.max()))
    record = json.loads(json.dumps(result.as_dict(k=3)))
    assert len(record["tags"]) == 50 and record["tags"]["metal"] == pytest.approx(float(result.probabilities[result.tags.index("metal")]))
    assert [t["tag"] for t in record["top"]] == [t for t, _ in result.top(3)]
    assert len(record["patches"]) == 10 and record["patches"][1]["start_s"] == pytest.approx(PATCH_SECONDS, abs=1e-3)
    assert record["duration_s"] == pytest.approx(30.0, abs=0.05) and len(record["patches"][1]["tags"]) == 50
    second = result.patch_probabilities[1]
    assert record["patches"][1]["top"] == [result.tags[i] for i in np.argsort(-second)[:3]]


def test_tagger_rejects_what_is_not_a_waveform(taggers):
    with pytest.raises(ValueError, match="non-empty 1-D"):
        taggers["msd"](np.zeros((2, 1000), np.float32), 16000)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        taggers["msd"](np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match="NaN or infinite"):
        taggers["msd"](np.full(1000, np.nan, np.float32), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        taggers["msd"](np.zeros(1000, np.float32), 0)
