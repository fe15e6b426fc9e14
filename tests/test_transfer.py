"""The transfer models: ``model=musicnn_head`` (a head on the frozen musicnn's cached embeddings,
the embedding input kind) and ``model=musicnn_finetune`` (the whole pretrained musicnn on
waveforms): their networks, their units, their checkpoints, and that they learn, on the synthetic
set and on real music."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR
from genre_cls.data import GenreDataModule
from genre_cls.data.kinds import embedding as embedding_kind
from genre_cls.data.embeddingset import spread
from genre_cls.errors import UserError
from genre_cls.models.head import EmbeddingHead
from genre_cls.models.musicnn import EMBEDDING_SIZE, PATCH_SAMPLES, MusicnnClassifier
from genre_cls.predict import load_classifier, predict_file
from genre_cls.pretrained import load, pretrained
from genre_cls.systems import GenreClassifier
from genre_cls.train import train

EXCERPTS = Path(__file__).resolve().parents[2] / "shared" / "gtzan-excerpts"
# The quick sizes of the transfer models: two chunks of each track; the finetuned front end frozen.
HEAD = ["model=musicnn_head", "model.input.max_chunks=2", "callbacks.last_checkpoint=null"]
FINETUNE = ["model=musicnn_finetune", "model.arch_kwargs.train_frontend=false", "model.input.crops_per_track=1"]


def _model_cfg(name: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}"])
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg.model, resolve=True), OmegaConf.to_container(cfg.optim, resolve=True)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- the networks


def test_the_head_is_an_mlp_or_a_linear_layer_of_the_stated_sizes():
    assert sum(p.numel() for p in EmbeddingHead().parameters()) == 1506 * 256 + 256 + 256 * 10 + 10
    assert sum(p.numel() for p in EmbeddingHead(num_classes=7, hidden=0).parameters()) == 1506 * 7 + 7
    assert EmbeddingHead(num_classes=7).eval()(torch.randn(3, EMBEDDING_SIZE)).shape == (3, 7)
    with pytest.raises(ValueError, match="1506"):
        EmbeddingHead()(torch.randn(3, 33))


def test_the_finetuned_network_starts_from_the_pretrained_tagger_without_its_tag_layer():
    tagger = load("msd")
    net = MusicnnClassifier(num_classes=7)
    net.load_pretrained(tagger)
    net.eval()
    # musicnn's 787,159 parameters less its 50-tag layer (200 x 50 + 50), plus the new layer (200 x 7 + 7).
    assert sum(p.numel() for p in net.parameters()) == 787_159 - 10_050 + 1_407
    logmel = tagger.frontend(0.1 * torch.randn(2, PATCH_SAMPLES))
    with torch.no_grad():
        mine, theirs = net.backbone.embeddings(logmel), tagger.embeddings(logmel)
        assert torch.equal(mine["penultimate"], theirs["penultimate"])
        assert net(logmel).shape == (2, 7)


class _Trainer:
    """What configure_optimizers reads of a trainer (its schedule's length)."""

    estimated_stepping_batches = 40
    max_epochs = 4


def _optimizer(system: GenreClassifier):
    object.__setattr__(system, "_trainer", _Trainer())
    return system.configure_optimizers()["optimizer"]


def test_the_backbone_learns_at_a_tenth_of_the_rate_and_a_frozen_front_end_stays_as_pretrained():
    model, optim = _model_cfg("musicnn_finetune")
    input_params = {"sample_rate": 16000, "chunk_samples": PATCH_SAMPLES}
    system = GenreClassifier.from_config(model, optim, ["a", "b", "c"], input_params)
    groups = _optimizer(system).param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
    assert [sum(p.numel() for p in g["params"]) for g in groups] == [787_159 - 10_050, 200 * 3 + 3]
    # Started from the pretrained weights (the front end's first conv equals the tagger's).
    assert torch.equal(system.net.backbone.timbral[0].conv.weight, load("msd").timbral[0].conv.weight)

    frozen = GenreClassifier.from_config({**model, "arch_kwargs": {**model["arch_kwargs"], "train_frontend": False}},
                                         optim, ["a", "b", "c"], input_params)
    (backbone, head) = _optimizer(frozen).param_groups
    trained = {id(p) for p in backbone["params"]}
    assert not any(id(p) in trained for p in frozen.net.backbone.timbral.parameters())
    assert all(id(p) in trained for p in frozen.net.backbone.midend.parameters())
    frozen.train()
    assert not frozen.net.backbone.timbral[0].bn.training and not frozen.net.backbone.input_bn.training
    assert frozen.net.backbone.midend_bn[0].training


def test_missing_pretrained_weights_are_one_user_error(monkeypatch):
    import dataclasses

    import genre_cls.pretrained as registry

    entries = {**registry._registry(), "msd": dataclasses.replace(pretrained("msd"), weights=Path("/no/such/weights.pt"))}
    monkeypatch.setattr(registry, "_registry", lambda: entries)
    model, optim = _model_cfg("musicnn_finetune")
    with pytest.raises(UserError, match="the weights of 'msd' are missing .*reinstall genre_cls"):
        GenreClassifier.from_config(model, optim, ["a", "b"], {"sample_rate": 16000})


# --------------------------------------------------------------------------- the embedding kind


@pytest.fixture(scope="module")
def embedding_dm(synth_root, cache_dir) -> GenreDataModule:
    dm = GenreDataModule(root=str(synth_root), input="embedding", input_options={"backbone": "msd", "max_chunks": 2},
                         cache_dir=str(cache_dir), progress=False, workers=0)
    dm.setup("fit")
    return dm


def test_every_chunk_of_a_track_is_a_unit_of_its_side_only(embedding_dm):
    dm = embedding_dm
    sides = {p: {dm.track_ids[t] for t, _ in dm.units[p]} for p in ("train", "val", "test")}
    assert not sides["train"] & sides["test"] and not sides["train"] & sides["val"] and not sides["val"] & sides["test"]
    for part in ("train", "val", "test"):
        by_track: dict[int, list[int]] = {}
        for t, c in dm.units[part]:
            by_track.setdefault(t, []).append(c)
        assert all(cs == [0, 1] for cs in by_track.values())  # 30 s clips, at most 2 chunks (as HEAD: one cache)
        x, y, t = dm.datasets[part].tensors
        assert x.shape == (2 * len(by_track), EMBEDDING_SIZE) and t.tolist() == [u[0] for u in dm.units[part]]
    params = dm.input_params()
    train_x = dm.datasets["train"].tensors[0].double()
    np.testing.assert_allclose(params["mean"], train_x.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    # Channels constant over the training split (dead ones) are left unscaled; the others are standardised.
    std = train_x.std(0).numpy()
    dead = std < 1e-5
    assert 0 < dead.sum() < len(std)
    assert np.all(np.asarray(params["std"])[dead] == 1.0)
    np.testing.assert_allclose(np.asarray(params["std"])[~dead], std[~dead], rtol=1e-5)
    model = GenreClassifier(arch="embedding_head", input_kind="embedding", input_params=params).eval()
    woken = dm.datasets["test"].tensors[0][:1].clone()
    woken[0, int(np.flatnonzero(dead)[0])] += 0.5  # a dead channel that wakes on a user's file
    assert float(model.frontend(woken).abs().max()) < 100
    assert params["backbone"] == "msd" and params["backbone_sha256"] == pretrained("msd").weights_sha256
    assert params["sample_rate"] == 16000 and params["hop_samples"] == PATCH_SAMPLES and params["max_chunks"] == 2


# --------------------------------------------------------------------------- training and the commands


@pytest.mark.slow
def test_musicnn_head_learns_the_synthetic_set_and_predict_and_serve_read_its_checkpoint(cfg_factory, tmp_path, monkeypatch):
    cfg = cfg_factory([*HEAD, "epochs=10"])
    metrics = train(cfg)
    out = Path(cfg.output_dir)
    # Chance is 10%: a frozen musicnn tells the synthetic genres apart from two chunks of each track.
    assert metrics["test_track/acc"] >= 0.8, metrics["test_track/acc"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["model"] == "musicnn_head" and saved["input"] == "embedding" and saved["optim"] == "adamw"

    model = load_classifier(out)
    params = model.hparams.input_params
    assert params["backbone"] == "msd" and params["backbone_sha256"] == pretrained("msd").weights_sha256
    assert len(params["mean"]) == EMBEDDING_SIZE and model.frontend.feature_std.shape == (EMBEDDING_SIZE,)
    # predict reads every chunk of the file; training and testing read chunks 0 and 9 of each
    # 30 s track (max_chunks=2): the same chunks give the same probabilities both ways.
    rows = _rows(out / "predictions.csv")
    track = rows[0]["track"]
    audio = next(p for p in (Path(cfg.data.root) / "genres_original").rglob(f"{track}.wav"))
    result = predict_file(model, audio)
    assert result["unit"] == "2.976 s chunk" and len(result["chunks"]) == 10
    classes = saved["classes"]
    tested = [[float(r[f"p_{c}"]) for c in classes] for r in rows if r["track"] == track]
    chosen = spread(np.arange(10), 2)
    predicted = [[result["chunks"][i]["probabilities"][c] for c in classes] for i in chosen]
    np.testing.assert_allclose(predicted, tested, atol=2e-4)

    from genre_cls.serve import UploadPredictor

    served = json.loads(UploadPredictor(model, str(out)).classify(audio, "song.wav"))["results"][0]
    assert served["probabilities"] == result["probabilities"] and served["file"] == "song.wav"

    # A checkpoint references the backbone's weights by their hash: other weights are refused.
    monkeypatch.setattr(embedding_kind, "weights_sha256", lambda name: "f" * 64)
    with pytest.raises(UserError, match="trained on embeddings of musicnn 'msd' with weights sha256"):
        predict_file(model, audio)


@pytest.mark.slow
def test_musicnn_head_resumes_from_its_last_checkpoint(cfg_factory, tmp_path):
    out = tmp_path / "head"
    train(cfg_factory([*HEAD[:2], "epochs=2"], out=out))
    last = out / "checkpoints" / "last.ckpt"
    metrics = train(cfg_factory([*HEAD[:2], "epochs=4", f"ckpt_path={last}"], out=out))
    assert metrics["epochs_trained"] == 4 and torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 3


@pytest.mark.slow
def test_musicnn_finetune_trains_resumes_and_its_checkpoint_carries_every_weight(cfg_factory, small_root, tmp_path):
    # The first 6 s of each track: two 2.976 s chunks to evaluate.
    quick = [*FINETUNE, "data.clip_seconds=6", "trainer.limit_train_batches=1"]
    out = tmp_path / "run"
    cfg = cfg_factory([*quick, "epochs=1"], out=out)
    cfg.data.root = str(small_root)
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0 and metrics["model"] == "musicnn_finetune" and metrics["input"] == "waveform"
    state = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    pretrained_state = load("msd").state_dict()
    # The frozen front end is the pretrained one, carried in the checkpoint; the mid end trained.
    assert torch.equal(state["net.backbone.timbral.0.conv.weight"], pretrained_state["timbral.0.conv.weight"])
    assert not torch.equal(state["net.backbone.midend.0.weight"], pretrained_state["midend.0.weight"])
    assert not any(k.startswith("net.backbone.classifier") for k in state)

    model = load_classifier(out)
    rows = _rows(out / "predictions.csv")
    track = rows[0]["track"]
    audio = next(p for p in (small_root / "genres_original").rglob(f"{track}.wav"))
    result = predict_file(model, audio)
    classes = metrics["classes"]
    # The test's chunks (the clip's two, int16 in the waveform cache) and predict's first two (decoded afresh) agree.
    tested = [[float(r[f"p_{c}"]) for c in classes] for r in rows if r["track"] == track]
    predicted = [[c["probabilities"][k] for k in classes] for c in result["chunks"]]
    assert len(predicted) == 10 and len(tested) == 2
    np.testing.assert_allclose(predicted[:2], tested, atol=2e-3)

    # Resumed with its two parameter groups (backbone and new layer) and their learning rates.
    last = out / "checkpoints" / "last.ckpt"
    cfg = cfg_factory([*quick, "epochs=2", f"ckpt_path={last}"], out=out)
    cfg.data.root = str(small_root)
    assert train(cfg)["epochs_trained"] == 2
    groups = torch.load(last, map_location="cpu", weights_only=True)["optimizer_states"][0]["param_groups"]
    assert len(groups) == 2 and groups[0]["initial_lr"] == pytest.approx(0.1 * groups[1]["initial_lr"])


@pytest.fixture(scope="module")
def excerpts(tmp_path_factory) -> Path:
    """20 real excerpts per genre of ``<repo>/../shared/gtzan-excerpts``, linked into a label tree;
    without them the test skips, except under ``CI=true``, where it fails."""
    if not EXCERPTS.is_dir():
        message = f"no real GTZAN excerpts at {EXCERPTS} (<repo>/../shared/gtzan-excerpts)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}, and CI=true: the real-audio tests must run in CI")
        pytest.skip(message)
    root = tmp_path_factory.mktemp("excerpts")
    for genre in sorted(p for p in EXCERPTS.iterdir() if p.is_dir()):
        (root / genre.name).mkdir()
        for wav in sorted(genre.glob("*.wav"))[:20]:
            (root / genre.name / wav.name).symlink_to(wav)
    return root


@pytest.mark.slow
def test_musicnn_head_learns_genre_from_real_music(excerpts, cfg_factory):
    """One fold of five on 200 real excerpts (2-3 s each, one chunk): the frozen MSD musicnn's
    embeddings carry genre (chance 10%; 5-fold CV on all 409 excerpts: about 79%, README)."""
    cfg = cfg_factory(["model=musicnn_head", "data=folders", "data.folds=5", "data.fold=0", "callbacks.last_checkpoint=null"])
    cfg.data.root = str(excerpts)
    metrics = train(cfg)
    assert len(json.loads((Path(cfg.output_dir) / "splits.json").read_text())["test"]) == 40
    assert metrics["test_track/acc"] >= 0.5, metrics["test_track/acc"]
