import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genre_cls import GENRES
from genre_cls.metrics import METRIC_NAMES
from genre_cls.train import train

SUMMARY_KEYS = {f"test/{m}" for m in METRIC_NAMES}


def scalars(run: Path) -> dict[str, list[float]]:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("model", ["net1", "net2", "net3", "net4"])
def test_fast_dev_run_of_each_image_model(cfg_factory, model):
    cfg = cfg_factory([f"model={model}", "debug=fdr"])
    metrics = train(cfg)
    assert SUMMARY_KEYS <= metrics.keys()
    assert metrics["model"] == model
    assert metrics["optim"] == ("rmsprop" if model == "net4" else "adam")
    out = Path(cfg.output_dir)
    assert json.loads((out / "metrics.json").read_text())["model"] == model
    assert (out / "splits.json").is_file()


def test_net1_learns_the_synthetic_set_and_writes_a_complete_run(cfg_factory):
    # No last.ckpt here (the resume test covers it): 25 full-state saves of a 50 M model are slow.
    cfg = cfg_factory(["model=net1", "epochs=25", "lr=1e-4", "batch_size=16", "callbacks.last_checkpoint=null"])
    metrics = train(cfg)
    out = Path(cfg.output_dir)

    # Chance is 10%; the synthetic genres are learnable from the images.
    assert metrics["test/acc"] >= 0.4, metrics["test/acc"]

    saved = json.loads((out / "metrics.json").read_text())
    assert SUMMARY_KEYS | {"classes", "confusion_matrix", "epochs_trained", "model", "optim", "lr"} <= saved.keys()
    assert saved["classes"] == list(GENRES)
    cm = saved["confusion_matrix"]
    assert len(cm) == 10 and all(len(r) == 10 for r in cm)
    splits = json.loads((out / "splits.json").read_text())
    assert sum(map(sum, cm)) == len(splits["test"])
    assert saved["epochs_trained"] == 25 and saved["lr"] == 1e-4
    assert all(isinstance(v, (int, float, str, list, type(None))) for v in saved.values())

    ckpt = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["genre_cls"].startswith("genre_cls.classifier")
    assert ckpt["epoch"] + 1 == saved["best_epoch"]

    logged = scalars(out)
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "test/acc", "test/f1_weighted", "hp_metric"):
        assert tag in logged, tag
    assert len(logged["val/acc"]) == 25
    assert logged["test/acc"][-1] == pytest.approx(metrics["test/acc"])
    assert (out / "confusion_matrix.png").stat().st_size > 1000


def test_resume_from_last_checkpoint_finishes_the_requested_epochs(cfg_factory, tmp_path):
    out = tmp_path / "resume"
    train(cfg_factory(["model=net1", "epochs=2"], out=out))
    last = out / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    metrics = train(cfg_factory(["model=net1", "epochs=4", f"ckpt_path={last}"], out=out))
    assert metrics["epochs_trained"] == 4
    assert len(scalars(out)["val/acc"]) == 4


def test_fast_dev_run_of_net5(cfg_factory):
    metrics = train(cfg_factory(["model=net5", "debug=fdr"]))
    assert SUMMARY_KEYS <= metrics.keys()
    assert {f"test_track/{m}" for m in METRIC_NAMES} <= metrics.keys()


def test_net5_learns_at_segment_and_track_level_with_early_stopping(cfg_factory):
    cfg = cfg_factory(["model=net5", "epochs=20", "lr=1e-3"])
    metrics = train(cfg)
    out = Path(cfg.output_dir)
    # Chance is 10%; a margin this wide does not flake.
    assert metrics["test/acc"] >= 0.4, metrics["test/acc"]
    assert metrics["test_track/acc"] >= 0.4, metrics["test_track/acc"]
    test_tracks = json.loads((out / "splits.json").read_text())["test"]
    assert sum(map(sum, metrics["test_track/confusion_matrix"])) == len(test_tracks)
    assert sum(map(sum, metrics["confusion_matrix"])) == 10 * len(test_tracks)
    assert "test_track/acc" in scalars(out)
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["early_stopping_patience"] == 7
    assert ckpt["state_dict"]["feature_std"].shape == (33,)
