import csv
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import make_cfg
from genre_cls import GENRES
from genre_cls.metrics import METRIC_NAMES
from genre_cls.train import train

SUMMARY_KEYS = {f"test/{m}" for m in METRIC_NAMES}
REPO = Path(__file__).resolve().parents[1]


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
    # Per-genre F1 of metrics.json, recomputed by sklearn from the rows.
    f1 = f1_score([r["true"] for r in rows], [r["predicted"] for r in rows], labels=list(GENRES), average=None, zero_division=0)
    assert [metrics[f"{prefix}/f1/{g}"] for g in GENRES] == pytest.approx(list(f1), abs=1e-6)


def scalars(run: Path) -> dict[str, list[float]]:
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["net1", "net2", "net3", "net4"])
def test_fast_dev_run_of_each_image_model(cfg_factory, model):
    # The paper's image size, batches of 8 (one batch of 32 through Net3's backward alone takes 3 s here).
    cfg = cfg_factory([f"model={model}", "debug=fdr", "batch_size=8", "data.eval_batch_size=8"])
    metrics = train(cfg)
    assert SUMMARY_KEYS <= metrics.keys()
    assert metrics["model"] == model
    assert metrics["optim"] == ("rmsprop" if model == "net4" else "adam")
    out = Path(cfg.output_dir)
    assert json.loads((out / "metrics.json").read_text())["model"] == model
    assert (out / "splits.json").is_file()


@pytest.mark.slow
def test_net1_learns_the_synthetic_set_and_writes_a_complete_run(cfg_factory):
    # No last.ckpt here (the resume test covers it). 64 x 64 images: a 6 M model, 4x faster to train than
    # at 180 x 180 (the fast_dev_run tests cover every model at the paper's size).
    cfg = cfg_factory(["model=net1", "epochs=25", "lr=1e-4", "batch_size=16", "callbacks.last_checkpoint=null",
                       "data.image_size=64"])
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
    assert logged["test/acc"] == [pytest.approx(metrics["test/acc"])]
    # Every test scalar is written once (counted in the event files, where TensorBoard's reader would hide repeats).
    counts = raw_counts(out)
    tested = [tag for tag in counts if tag.startswith("test/")]
    assert len(tested) == len(SUMMARY_KEYS) + 3 * 10  # and precision, recall and F1 per genre
    assert {tag: counts[tag] for tag in tested + ["hp_metric"]} == dict.fromkeys(tested + ["hp_metric"], 1)
    assert (out / "confusion_matrix.png").stat().st_size > 1000


@pytest.mark.slow
def test_resume_from_last_checkpoint_finishes_the_requested_epochs(cfg_factory, tmp_path):
    out = tmp_path / "resume"
    small = ["model=net1", "model.arch_kwargs.hidden=32", "data.image_size=64"]  # small checkpoints to save and load
    train(cfg_factory([*small, "epochs=2"], out=out))
    last = out / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    metrics = train(cfg_factory([*small, "epochs=4", f"ckpt_path={last}"], out=out))
    assert metrics["epochs_trained"] == 4
    assert len(scalars(out)["val/acc"]) == 4


@pytest.mark.slow
def test_fast_dev_run_of_net5(cfg_factory):
    metrics = train(cfg_factory(["model=net5", "debug=fdr"]))
    assert SUMMARY_KEYS <= metrics.keys()
    assert {f"test_track/{m}" for m in METRIC_NAMES} <= metrics.keys()


@pytest.mark.slow
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
    assert ckpt["state_dict"]["frontend.feature_std"].shape == (33,)


@pytest.mark.slow
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


# --------------------------------------------------------------------------- claims (issue 14, item 5)


class Killed(RuntimeError):
    pass


class KillAtEpochEnd(L.Callback):
    """Stand-in for a kill at the worst moment: epoch ``at`` (0-based) has been trained and
    validated, its metrics are in TensorBoard, but its checkpoint is not written yet (Lightning
    runs the checkpoint callbacks after this one), so ``last.ckpt`` holds the ``at`` epochs before.
    (Added to a run's callbacks with ``+callbacks.kill._target_=test_train.KillAtEpochEnd``.)"""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.at:
            raise Killed(f"killed before the checkpoint of epoch {self.at}")


def raw_counts(run: Path) -> Counter:
    """How many scalar events each tag has in the run's event files, repeats included."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return Counter(value.tag for path in sorted(run.glob("events.out.tfevents.*"))
                   for event in EventFileLoader(str(path)).Load() for value in event.summary.value
                   if value.metadata.plugin_data.plugin_name == "scalars")


def raw_events(run: Path, tag: str) -> list[tuple[int, float]]:
    """Every ``(step, value)`` written for ``tag`` in the run's event files, in file order, with
    no de-duplication (TensorBoard's EventAccumulator drops points that a restart wrote again)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util.tensor_util import make_ndarray

    found = []
    for path in sorted(run.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == tag:
                    found.append((event.step, float(make_ndarray(value.tensor))))
    return found


@pytest.fixture(scope="module")
def resumed_net5(synth_root, cache_dir, tmp_path_factory):
    """A 4-epoch Net5 run killed after its third epoch's validation, before that epoch's
    checkpoint, then resumed from last.ckpt (which holds two epochs)."""
    out = tmp_path_factory.mktemp("resumed") / "run"
    overrides = ["model=net5", "epochs=4", "lr=1e-3"]
    killed = make_cfg([*overrides, "+callbacks.kill._target_=test_train.KillAtEpochEnd", "+callbacks.kill.at=2"], out, synth_root, cache_dir)
    with pytest.raises(Killed):
        train(killed)
    last = out / "checkpoints" / "last.ckpt"
    before = {
        "epoch": torch.load(last, map_location="cpu", weights_only=True)["epoch"],
        "val_acc": raw_events(out, "val/acc"),
        "metrics": (out / "metrics.json").exists(),
    }
    metrics = train(make_cfg([*overrides, f"ckpt_path={last}"], out, synth_root, cache_dir))
    return out, before, metrics


@pytest.mark.slow
def test_a_killed_run_resumes_only_the_epochs_left_and_logs_each_epoch_once(resumed_net5):
    out, before, metrics = resumed_net5
    # The killed run logged three epochs and checkpointed two.
    assert before["epoch"] == 1 and len(before["val_acc"]) == 3 and not before["metrics"]
    assert metrics["epochs_trained"] == 4
    assert torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"] == 3

    val_acc = raw_events(out, "val/acc")
    assert len(val_acc) == 4, val_acc
    steps = [step for step, _ in val_acc]
    assert all(a < b for a, b in zip(steps, steps[1:])), steps
    assert val_acc[:2] == before["val_acc"][:2]  # the checkpointed epochs, not trained again
    assert scalars(out)["val/acc"] == [value for _, value in val_acc]  # as TensorBoard reads them
    # Lightning writes the `epoch` scalar with each epoch's training and validation metrics (the
    # test metrics are logged by train(), without it).
    epochs = Counter(int(value) for _, value in raw_events(out, "epoch"))
    assert epochs == {0: 2, 1: 2, 2: 2, 3: 2}, epochs
    assert len(raw_events(out, "train/loss")) == 4


@pytest.fixture(scope="module")
def stalled_net5(synth_root, cache_dir, tmp_path_factory):
    """Net5 whose validation loss never improves: steps of lr 1e-12 vanish in its float32 weights."""
    out = tmp_path_factory.mktemp("stalled") / "run"
    return out, train(make_cfg(["model=net5", "epochs=20", "lr=1e-12"], out, synth_root, cache_dir))


def test_early_stopping_stops_on_val_loss_after_patience_7(stalled_net5):
    out, metrics = stalled_net5
    val_loss = [value for _, value in raw_events(out, "val/loss")]
    assert val_loss == [val_loss[0]] * len(val_loss), val_loss  # forced: no epoch improves on the first
    # Epoch 1 sets the best val/loss; epochs 2..8 do not improve on it; the 7th of them stops the run.
    assert metrics["epochs_trained"] == 1 + 7 and len(val_loss) == 8
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    (key,) = [k for k in last["callbacks"] if k.startswith("EarlyStopping")]
    assert "'monitor': 'val/loss'" in key and "'mode': 'min'" in key, key
    state = last["callbacks"][key]
    assert state["patience"] == 7 and state["wait_count"] == 7 and state["stopped_epoch"] == 7
    assert float(state["best_score"]) == pytest.approx(val_loss[0])


def net5_data(synth_root: Path, cache_dir: Path, out: Path):
    """The data module a Net5 run with the default seed and split trains on, set up."""
    import hydra

    dm = hydra.utils.instantiate(make_cfg(["model=net5"], out, synth_root, cache_dir).data, input="features")
    dm.setup("fit")
    return dm


def test_the_checkpoint_holds_the_training_splits_feature_mean_and_std(resumed_net5, synth_root, cache_dir):
    out, _, _ = resumed_net5
    dm = net5_data(synth_root, cache_dir, out)
    x, _, track = dm.datasets["train"].tensors
    train_ids = json.loads((out / "splits.json").read_text())["train"]
    assert sorted({dm.track_ids[i] for i in track.tolist()}) == sorted(train_ids)
    rows = x.numpy().astype(np.float64).reshape(-1, x.shape[-1])  # every frame of every training segment
    assert rows.shape == (len(train_ids) * 10 * 16, 33)
    state = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    np.testing.assert_allclose(state["frontend.feature_mean"].numpy(), rows.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(state["frontend.feature_std"].numpy(), rows.std(0, ddof=1), rtol=1e-6)
    # Not the statistics of all the data (validation and test included).
    everything = np.concatenate([dm.datasets[p].tensors[0].numpy().reshape(-1, 33) for p in ("train", "val", "test")])
    assert not np.allclose(state["frontend.feature_mean"].numpy(), everything.astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)


def test_the_track_metrics_vote_the_mean_of_a_trained_net5s_segment_probabilities(resumed_net5, synth_root, cache_dir):
    from genre_cls.metrics import vote_tracks
    from genre_cls.systems import GenreClassifier

    out, _, metrics = resumed_net5
    model = GenreClassifier.load_from_checkpoint(out / "checkpoints" / "best.ckpt", map_location="cpu").eval()
    x, y, track = net5_data(synth_root, cache_dir, out).datasets["test"].tensors
    with torch.no_grad():
        probs = model.predict_step((x,), 0).double()

    by_track: dict[int, list[int]] = {}
    for row, t in enumerate(track.tolist()):
        by_track.setdefault(t, []).append(row)
    assert all(len(rows) == 10 for rows in by_track.values())
    ids = sorted(by_track)
    mean = torch.stack([probs[by_track[t]].mean(0) for t in ids])
    labels = torch.tensor([int(y[by_track[t][0]]) for t in ids])

    voted, voted_labels = vote_tracks(probs, y, track)
    torch.testing.assert_close(voted, mean, rtol=0, atol=1e-12)
    assert voted_labels.tolist() == labels.tolist()
    cm = np.zeros((10, 10), dtype=int)
    np.add.at(cm, (labels.numpy(), mean.argmax(1).numpy()), 1)
    assert metrics["test_track/confusion_matrix"] == cm.tolist()
    assert metrics["test_track/acc"] == pytest.approx(np.trace(cm) / len(ids), abs=1e-6)


@pytest.mark.slow
def test_the_same_config_and_seed_in_two_processes_give_identical_metrics_for_net5_and_net6(synth_root, cache_dir, tmp_path):
    net5_data(synth_root, cache_dir, tmp_path)  # the features cache, which both processes copy
    args = [
        "-m", "model=net5,net6", "cgan.domain=features", "cgan.epochs=2", "cgan.per_class=10", "epochs=2", "seed=1",
        f"data.root={synth_root}", "data.progress=false", "data.workers=0",
        "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
    ]
    procs = {}
    for name in ("a", "b"):
        # Each process has its own cache, so each trains its own CGAN instead of reusing the other's.
        shutil.copytree(cache_dir / "features", tmp_path / f"cache_{name}" / "features")
        env = {**os.environ, "PYTHONPATH": str(REPO), "GENRE_CLS_CACHE": str(tmp_path / f"cache_{name}"), "OMP_NUM_THREADS": "1"}
        sweep = [f"hydra.sweep.dir={tmp_path / name}"]
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "genre_cls.train", *args, *sweep],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
    logs = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, logs[name][-3000:]

    for job, model in enumerate(("net5", "net6")):
        a, b = (json.loads((tmp_path / name / f"{job}_{model}" / "metrics.json").read_text()) for name in ("a", "b"))
        assert a["model"] == model and a["seed"] == 1
        tested = sorted(k for k in a if k.startswith(("test/", "test_track/")))
        assert {"test/acc", "test/f1_weighted", "test_track/acc", "test_track/confusion_matrix"} <= set(tested)
        assert {k: a[k] for k in tested} == {k: b[k] for k in tested}
        assert a == b  # also the epochs, the best epoch and the CGAN's losses
        # Test metrics count argmax decisions; the weights and the validation losses show smaller differences.
        runs = [tmp_path / name / f"{job}_{model}" for name in ("a", "b")]
        assert raw_events(runs[0], "val/loss") == raw_events(runs[1], "val/loss")
        weights = [torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"] for run in runs]
        assert weights[0].keys() == weights[1].keys()
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0]), model
        if model == "net6":  # each process trained its CGAN
            assert a["cgan/reused"] is False and a["cgan/epochs"] == 2


def _one_unit_data(model_cfg):
    """A data module's stand-in for the memory check: the classes, one training unit of the shape
    the model's input kind builds, and the input parameters a checkpoint would keep."""
    from types import SimpleNamespace

    from genre_cls.data.kinds import kind_of
    from genre_cls.data.kinds.waveform import chunk_length

    kind = model_cfg.input_kind
    if kind == "image":
        unit, params = torch.zeros(3, 16, 16, dtype=torch.uint8), {"image_size": 16}
    elif kind == "features":
        unit, params = torch.zeros(16, 33), {}
    else:
        params = kind_of(kind).input_params(dict(model_cfg.input), None)
        unit = torch.zeros(chunk_length(params))
    return SimpleNamespace(datasets={"train": [(unit, 0, 0)]}, classes=list(GENRES), input_params=lambda: params,
                           has_validation=True, train_units=[(0, s) for s in range(10)])


@pytest.mark.parametrize("model", ["net1", "net2", "net3", "net4", "net5", "net6", "mel_resnet"])
def test_the_memory_check_covers_every_model(cfg_factory, monkeypatch, model):
    import genre_cls.train as train_module
    from genre_cls.errors import UserError

    cfg = cfg_factory([f"model={model}", "data.image_size=16"])
    monkeypatch.setattr(train_module, "available_memory", lambda: 1000)  # 1 kB free: every model is too large
    with pytest.raises(UserError, match=r"this run needs about .* GB of memory to train .* but 0.0 GB are free: lower batch_size"):
        train_module.check_memory(cfg, _one_unit_data(cfg.model))
    monkeypatch.setattr(train_module, "available_memory", lambda: 10**13)
    train_module.check_memory(cfg, _one_unit_data(cfg.model))  # fits


def test_a_network_the_memory_check_cannot_trace_is_said_in_one_line(cfg_factory, monkeypatch, caplog):
    import genre_cls.train as train_module

    def untraceable(cfg, dm):
        raise NotImplementedError("aten::frobnicate has no meta kernel")

    cfg = cfg_factory(["model=mel_resnet"])
    monkeypatch.setattr(train_module, "available_memory", lambda: 1000)
    monkeypatch.setattr(train_module, "build_system", untraceable)
    with caplog.at_level("WARNING", logger="genre_cls.train"):
        train_module.check_memory(cfg, _one_unit_data(cfg.model))
    (line,) = [r.getMessage() for r in caplog.records if "memory check" in r.getMessage()]
    assert line.startswith("the memory check could not trace mel_resnet (NotImplementedError: aten::frobnicate has no "
                           "meta kernel): this run is not checked against the 0.0 GB of free memory")


@pytest.mark.slow
@pytest.mark.parametrize("no_validation", ["trainer.limit_val_batches=0", "+trainer.check_val_every_n_epoch=9"])
def test_a_run_without_validation_keeps_its_last_epoch_and_says_so_once(cfg_factory, tmp_path, caplog, no_validation):
    out = tmp_path / "run"
    tiny = ["model=net5", "model.arch_kwargs.hidden=8", "epochs=2", "test_at=[1]", no_validation]
    with caplog.at_level("WARNING"):
        metrics = train(cfg_factory(tiny, out=out))  # Net5 early-stops on val/loss: not without validation
    said = [r.getMessage() for r in caplog.records if "does not validate" in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("the last epoch's weights are tested and kept as best.ckpt")
    assert metrics["epochs_trained"] == 2 and metrics["best_epoch"] == 2 and metrics["val/acc_best"] is None
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(torch.equal(best["state_dict"][k], v) for k, v in last["state_dict"].items())
    assert json.loads((out / "metrics_epoch1.json").read_text())["best_epoch"] == 1
    assert not [r for r in caplog.records if "could not find the monitored key" in r.getMessage()]


@pytest.mark.slow
def test_a_limit_that_leaves_less_than_one_batch_is_one_line(cfg_factory, tmp_path):
    from genre_cls.errors import UserError

    with pytest.raises(UserError) as err:
        train(cfg_factory(["model=net5", "model.arch_kwargs.hidden=8", "epochs=1", "trainer.limit_train_batches=0.001"]))
    assert str(err.value).startswith("trainer.limit_train_batches=0.001 leaves no train batch (0.001 of ")
    assert "give a fraction of at least " in str(err.value)


def test_net6s_cgan_is_under_the_memory_check_too(cfg_factory, monkeypatch):
    import genre_cls.train as train_module
    from genre_cls.errors import UserError

    cfg = cfg_factory(["model=net6"])
    dm = _one_unit_data(cfg.model)
    dm.train_units = [(0, s) for s in range(700)]  # 70 training tracks of 10 segments
    monkeypatch.setattr(train_module, "available_memory", lambda: 10**9)  # Net5 fits in 1 GB, the waveform CGAN not
    with pytest.raises(UserError) as err:
        train_module.check_memory(cfg, dm)
    assert str(err.value).startswith("net6's CGAN needs about 3.6 GB of memory to train (206.0 M parameters with their "
                                     "gradients and optimiser state, and 700 training samples held in memory) but 1.0 GB")
    assert str(err.value).endswith("or cgan.batch_size, or use cgan.domain=features")
    train_module.check_memory(cfg_factory(["model=net6", "cgan.domain=features"]), dm)


# -- which epoch a run keeps ----------------------------------------------------------------------


@pytest.mark.parametrize(("model", "extra"), [
    ("net1", ["model.arch_kwargs.hidden=8", "data.image_size=16"]),
    # Patience 0 would stop Net5 at the first epoch that does not improve: without validation it trains on.
    ("net5", ["model.arch_kwargs.hidden=8", "model.early_stopping_patience=0"]),
    ("mel_resnet", ["model.arch_kwargs.width=4", "model.arch_kwargs.depth=2", "model.arch_kwargs.stem_pool=2",
                    "model.input.crops_per_track=1"]),
])
def test_without_validation_every_kind_trains_every_epoch_and_keeps_the_last(cfg_factory, model, extra):
    cfg = cfg_factory([f"model={model}", "epochs=3", "data.fractions=[0.8,0,0.2]", "callbacks.last_checkpoint=null", *extra])
    metrics = train(cfg)
    out = Path(cfg.output_dir)
    splits = json.loads((out / "splits.json").read_text())
    assert splits["val"] == [] and (len(splits["train"]), len(splits["test"])) == (79, 20)  # of 99 tracks (one corrupt)
    assert metrics["kept"] == "last" and metrics["kept_epoch"] == metrics["epochs_trained"] == 3
    assert metrics["val/acc_best"] is None
    # Saved once training ended: Lightning's epoch counter has moved past the last epoch (index 2).
    assert torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["epoch"] == 3
    assert "val/acc" not in scalars(out) and len(scalars(out)["train/loss"]) == 3
    assert json.loads((out / "metrics.json").read_text())["kept"] == "last"


def test_keep_epoch_last_tests_the_last_epoch_though_validation_is_measured(cfg_factory):
    cfg = cfg_factory(["model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16", "epochs=4", "lr=0.05",
                       "model.keep_epoch=last", "callbacks.last_checkpoint=null"])
    metrics = train(cfg)
    out = Path(cfg.output_dir)
    assert metrics["kept"] == "last" and metrics["kept_epoch"] == 4
    assert torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["epoch"] == 4
    assert len(scalars(out)["val/acc"]) == 4
    # The kept checkpoint's predictions are what was tested.
    check_predictions(read_predictions(out / "predictions.csv"), metrics)
