import csv
import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genre_cls import GENRES
from genre_cls.metrics import METRIC_NAMES
from genre_cls.train import train

SUMMARY_KEYS = {f"test/{m}" for m in METRIC_NAMES}


def read_predictions(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_intervals(metrics: dict, prefixes=("test",)) -> None:
    """Every *_ci95 key is [low, high] around its metric."""
    for prefix in prefixes:
        for name in ("acc", "f1_weighted"):
            low, high = metrics[f"{prefix}/{name}_ci95"]
            assert low <= metrics[f"{prefix}/{name}"] <= high and low < high, (prefix, name, low, high)


def check_predictions(rows: list[dict[str, str]], metrics: dict, prefix: str = "test") -> None:
    """The rows agree with the metrics: argmax of the probabilities, the accuracy, the matrix."""
    probs = [[float(r[f"p_{g}"]) for g in GENRES] for r in rows]
    assert all(abs(sum(p) - 1) < 1e-4 for p in probs)
    assert [GENRES[max(range(10), key=p.__getitem__)] for p in probs] == [r["predicted"] for r in rows]
    assert [r["true"] for r in rows] == [r["track"].split(".")[0] for r in rows]
    correct = sum(r["true"] == r["predicted"] for r in rows)
    assert correct / len(rows) == pytest.approx(metrics[f"{prefix}/acc"], abs=1e-6)
    assert sum(map(sum, metrics[f"{prefix}/confusion_matrix"])) == len(rows)


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
    rows = read_predictions(out / "predictions.csv")  # image model: one row per test track
    assert [r["track"] for r in rows] == splits["test"] and {r["segment"] for r in rows} == {""}
    check_predictions(rows, saved)
    check_intervals(saved)
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
    saved = json.loads((out / "metrics.json").read_text())
    check_intervals(saved, ("test", "test_track"))
    rows = read_predictions(out / "predictions.csv")  # one row per test segment
    assert [(r["track"], int(r["segment"])) for r in rows] == [(t, s) for t in test_tracks for s in range(10)]
    check_predictions(rows, saved)
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["early_stopping_patience"] == 7
    assert ckpt["state_dict"]["feature_std"].shape == (33,)


def test_net5_on_fold_of_a_segment_split_writes_predictions_for_every_evaluation(cfg_factory):
    cfg = cfg_factory(["model=net5", "epochs=2", "test_at=[1]", "data.split=segment", "data.folds=5", "data.fold=1"])
    metrics = train(cfg)
    out = Path(cfg.output_dir)
    splits = json.loads((out / "splits.json").read_text())
    assert (splits["folds"], splits["fold"]) == (5, 1) and (metrics["folds"], metrics["fold"]) == (5, 1)
    test_segments = [s.split("#") for s in splits["test_segments"]]
    assert len(test_segments) == 990 // 5  # 99 readable tracks x 10 segments, a fifth of them
    for csv_name, json_name in (("predictions.csv", "metrics.json"), ("predictions_epoch1.csv", "metrics_epoch1.json")):
        saved = json.loads((out / json_name).read_text())
        rows = read_predictions(out / csv_name)
        assert [[r["track"], r["segment"]] for r in rows] == test_segments
        check_predictions(rows, saved)
        check_intervals(saved, ("test", "test_track"))
        assert len(saved["test_track/confusion_matrix"]) == 10
        assert sum(map(sum, saved["test_track/confusion_matrix"])) == len({r["track"] for r in rows})
