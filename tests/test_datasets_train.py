"""Every model trains on every data set beyond GTZAN, each on the synthetic tree its module writes
(a 7-label folder tree with odd file names, an FMA-shaped download with its official split, a CSV
manifest); a sweep and the report work on them; predict and the page read a checkpoint whose
classes are not GTZAN's ten."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_cfg
from genre_cls.data.datasets import datasets
from genre_cls.data.synth.trees import MANIFEST
from genre_cls.bench.gpu_check import QUICK, _quick_net
from genre_cls.train import train

# Training runs on every data set.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = [name for name, spec in datasets().items() if not spec.synthetic_default]
MODELS = ["net1", "net2", "net3", "net4", "net5", "net6", "mel_resnet", "musicnn_head", "musicnn_finetune"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("collections")
    return {name: datasets()[name].write_synthetic(base / f"my {name}", tracks_per_label=4) for name in COLLECTIONS}


@pytest.fixture(scope="module")
def coll_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("coll_cache")


def _cfg(dataset: str, model: str, trees, cache: Path, out: Path, extra=()):
    overrides = [f"data={dataset}", f"model={model}", *QUICK, *_quick_net(model, True), "cgan.domain=features", *extra]
    return make_cfg(overrides, out, trees[dataset], cache)


def _manifest(trees, dataset: str) -> dict:
    root = trees[dataset]
    return json.loads(((root if root.is_dir() else root.parent) / MANIFEST).read_text())


def _labels(trees, dataset: str) -> list[str]:
    return sorted({t["label"] for t in _manifest(trees, dataset)["tracks"].values()})


@pytest.mark.parametrize("dataset", COLLECTIONS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_on_the_collection(dataset, model, trees, coll_cache, tmp_path):
    cfg = _cfg(dataset, model, trees, coll_cache, tmp_path / "run")
    metrics = train(cfg)
    out = Path(cfg.output_dir)
    classes = metrics["classes"]
    assert metrics["dataset"] == dataset and classes == _labels(trees, dataset)
    assert len(classes) == {"folders": 7, "fma": 8, "csv": 3}[dataset]
    cm = metrics["confusion_matrix"]
    assert len(cm) == len(classes) and all(len(r) == len(classes) for r in cm)
    splits = json.loads((out / "splits.json").read_text())
    if dataset == "fma":
        # The official split, as tracks.csv gives it (set.split), for every model.
        official = {tid: t["split"] for tid, t in _manifest(trees, "fma")["tracks"].items()}
        assert splits["split"] == "official"
        for part in ("train", "val", "test"):
            assert splits[part] and all(official[t] == part for t in splits[part]), part
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["true"] for r in rows} <= set(classes) and {r["predicted"] for r in rows} <= set(classes)
    assert {r["track"] for r in rows} == set(splits["test"])


def test_odd_track_names_survive_splits_and_predictions(trees, coll_cache, tmp_path):
    cfg = _cfg("folders", "net5", trees, coll_cache, tmp_path / "run", ["data.split=segment"])
    train(cfg)
    out = Path(cfg.output_dir)
    summary = json.loads((out / "data_summary.json").read_text())
    splits = json.loads((out / "splits.json").read_text())
    ids = summary_ids = set(splits["train"]) | set(splits["val"]) | set(splits["test"])
    assert any("#" in t for t in ids) and any("," in t for t in ids) and any(not t.isascii() for t in ids), sorted(ids)
    assert summary["tracks"] == len(summary_ids)
    with open(out / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["track"], int(r["segment"])) for r in rows} == {
        (u.rpartition("#")[0], int(u.rpartition("#")[2])) for u in splits["test_segments"]
    }


def test_a_sweep_and_the_report_work_on_a_collection_and_show_no_paper_column(trees, coll_cache, tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "GENRE_CLS_CACHE": str(coll_cache), "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "genre_cls.train", "-m", "data=folders", f"data.root={trees['folders']}", "model=net5",
           "optim=adam,rmsprop", *QUICK, *_quick_net("net5", True), f"data.cache_dir={coll_cache}", "data.progress=false",
           "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.accelerator=cpu",
           f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(sweep.glob("*/metrics.json"))
    assert len(runs) == 2 and all(json.loads(r.read_text())["dataset"] == "folders" for r in runs)
    rep = subprocess.run([sys.executable, "-m", "genre_cls.report", str(sweep)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    report = (sweep / "report.md").read_text()
    header, _, *rows = [line for line in report.splitlines() if line.startswith("| model |")
                        or line.startswith("|---") or line.startswith("| net5 |")][:4]
    assert "paper" not in header and len(rows) == 2  # one row per optimiser, no paper numbers beside them
    assert {row.split(" | ")[2] for row in rows} == {"Adam", "RMSprop"}
    assert report.startswith("# Results from") and "dataset=folders" in report  # the best row's label names the data set


def test_predict_and_the_page_read_a_seven_class_checkpoint(trees, coll_cache, tmp_path):
    cfg = _cfg("folders", "mel_resnet", trees, coll_cache, tmp_path / "run")
    train(cfg)
    run = Path(cfg.output_dir)
    song = next(p for p in sorted(trees["folders"].rglob("*.wav")))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "genre_cls.predict", f"ckpt={run}", f"inputs=[{song}]", "format=json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["classes"] == _labels(trees, "folders") and len(doc["classes"]) == 7
    (result,) = doc["results"]
    assert set(result["probabilities"]) == set(doc["classes"]) and result["chunks"]
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)

    from genre_cls.predict import load_classifier
    from genre_cls.serve import UploadPredictor

    info = UploadPredictor(load_classifier(run), str(run)).info()
    assert info["classes"] == doc["classes"] and set(info["colors"]) == set(doc["classes"])
    assert info["reads"] == "log-mel spectrograms of 3 s chunks"
