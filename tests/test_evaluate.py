"""evaluate: a checkpoint scored on a labelled collection (all of it or one part), labels mapped, in
a run folder with a training run's test files, and the report's row beside the training runs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR
from genre_cls import GENRES
from genre_cls.data.datasets.folders import make_folder_tree
from genre_cls.errors import UserError
from genre_cls.evaluate import check_args, evaluate

REPO = Path(__file__).resolve().parents[1]


def _cfg(overrides: list[str], out: Path, cache_dir: Path):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("evaluate", overrides=[*overrides, f"output_dir={out}", f"data.cache_dir={cache_dir}",
                                             "data.progress=false", "data.workers=0"])
    return cfg


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A data=folders collection: two labels named otherwise than GTZAN's classes, one that is a class."""
    root = tmp_path_factory.mktemp("evaluate") / "tree"
    make_folder_tree(root, labels={"Hip-Hop": "hiphop", "rock": "rock", "Spoken Word": "blues", "Hip-Hop & Rap": "hiphop"},
                     tracks_per_label=3, seconds=5.0, long_seconds=None, short_seconds=None)
    return root


def test_a_run_scored_on_its_own_test_part_gives_its_test_metrics_and_predictions(net5_run, synth_root, cache_dir, tmp_path):
    out = tmp_path / "eval"
    metrics = evaluate(_cfg([f"ckpt={net5_run}", f"data.root={synth_root}", "part=test"], out, cache_dir))
    trained = json.loads((net5_run / "metrics.json").read_text())
    for key in ("test/acc", "test/f1_weighted", "test/f1_macro", "test_track/acc", "test_track/f1_weighted",
                "test/acc_ci95", "test_track/acc_ci95", "confusion_matrix", "test/f1/jazz", "classes", "model", "optim", "lr"):
        assert metrics[key] == trained[key], key
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["dataset"] == metrics["trained_on"] == "gtzan" and metrics["split"] == "track"
    assert metrics["epochs"] == trained["epochs"] and metrics["epochs_trained"] == trained["epochs_trained"]
    assert metrics["evaluation"]["part"] == "test" and metrics["evaluation"]["left_out"] == {}
    assert metrics["evaluation"]["training_run"] == str(net5_run)
    assert sorted(_rows(out / "predictions.csv")) == sorted(_rows(net5_run / "predictions.csv"))
    assert (out / "confusion_matrix.png").stat().st_size > 10_000
    summary = json.loads((out / "data_summary.json").read_text())
    assert summary["part"] == "test" and summary["samples"]["test"] == len(_rows(out / "predictions.csv")) - 1


def test_another_collection_is_scored_through_a_label_map(net5_run, tree, cache_dir, tmp_path):
    """Hip-Hop is mapped to hiphop, rock is a class already; Spoken Word and Hip-Hop & Rap are left
    out and counted. The metrics are over the checkpoint's ten classes, rows by the mapped label."""
    out = tmp_path / "eval"
    metrics = evaluate(_cfg([f"ckpt={net5_run}", "data=folders", f"data.root={tree}", "map={Hip-Hop: hiphop}"], out, cache_dir))
    ev = metrics["evaluation"]
    assert ev["left_out"] == {"Hip-Hop & Rap": 3, "Spoken Word": 3} and ev["tracks"] == 6 and ev["part"] == "all"
    assert ev["map"] == {"Hip-Hop": "hiphop"} and metrics["dataset"] == "folders" and metrics["trained_on"] == "gtzan"
    assert metrics["classes"] == list(GENRES) and metrics["split"] == "all"
    cm = metrics["confusion_matrix"]
    assert len(cm) == 10 and [sum(row) for row in cm] == [30 if g in ("hiphop", "rock") else 0 for g in GENRES]
    rows = _rows(out / "predictions.csv")
    assert rows[0] == ["track", "segment", "true", "predicted", *(f"p_{g}" for g in GENRES)]
    assert {(r[0].split("/")[0], r[2]) for r in rows[1:]} == {("Hip-Hop", "hiphop"), ("rock", "rock")}
    assert len(rows) - 1 == 60
    correct = sum(r[2] == r[3] for r in rows[1:]) / 60
    assert metrics["test/acc"] == pytest.approx(correct)


def test_labels_the_command_line_cannot_write_are_mapped_by_a_file(net5_run, tree, cache_dir, tmp_path):
    labels = tmp_path / "labels.yaml"
    labels.write_text(yaml.safe_dump({"Hip-Hop & Rap": "hiphop", "Spoken Word": "blues"}, allow_unicode=True))
    metrics = evaluate(_cfg([f"ckpt={net5_run}", "data=folders", f"data.root={tree}", f"map={labels}"], tmp_path / "e", cache_dir))
    assert metrics["evaluation"]["left_out"] == {"Hip-Hop": 3}
    assert [sum(row) for row in metrics["confusion_matrix"]] == [30 if g in ("blues", "hiphop", "rock") else 0 for g in GENRES]


@pytest.mark.parametrize("kind", ["image", "waveform"])
def test_every_kind_of_model_is_evaluated(tiny_ckpts, tree, cache_dir, tmp_path, kind):
    out = tmp_path / kind
    metrics = evaluate(_cfg([f"ckpt={tiny_ckpts[kind]}", "data=folders", f"data.root={tree}", "map={Hip-Hop: hiphop}"], out,
                            cache_dir))
    units = len(_rows(out / "predictions.csv")) - 1
    # image: one 30 s window a track; waveform: every 3 s chunk, a tail of half a chunk kept: tracks of
    # 3.75, 4.375 and 5 s in each label give 1, 1 and 2 chunks.
    assert units == {"image": 6, "waveform": 8}[kind] == sum(map(sum, metrics["confusion_matrix"]))
    assert ("test_track/acc" in metrics) == (kind == "waveform")


@pytest.mark.parametrize("overrides, message", [
    (["map={Hip-Hop: hip-hop}"], "map sends a label to 'hip-hop', which is not a class of the checkpoint .its classes: blues,"),
    (["map={HipHop: hiphop}"], "map names the label 'HipHop', which data=folders under .* does not have .its labels: Hip-Hop,"),
    (["map=labels.txt"], "map=labels.txt is neither a mapping"),
    (["part=tests"], "unknown part 'tests'"),
    (["data.root=/no/such/tree"], "data.root '/no/such/tree' does not exist"),
    (["ckpt=/no/such/best.ckpt"], "checkpoint /no/such/best.ckpt does not exist: "),
])
def test_mistakes_are_one_line_before_any_work(net5_run, tree, cache_dir, tmp_path, overrides, message):
    cfg = _cfg([f"ckpt={net5_run}", "data=folders", f"data.root={tree}", *overrides], tmp_path / "e", cache_dir)
    with pytest.raises(UserError, match=message):
        evaluate(cfg)
    assert not (tmp_path / "e").exists()


def test_a_collection_without_a_label_the_checkpoint_knows_is_refused(net5_run, cache_dir, tmp_path):
    root = make_folder_tree(tmp_path / "tree", labels={"Spoken": "blues", "Noise": "metal"}, tracks_per_label=1, seconds=2.0,
                            long_seconds=None, short_seconds=None)
    with pytest.raises(UserError, match=r"no track of data=folders .* has a label the checkpoint knows .* map them, e.g. 'map=\{Noise: blues\}'"):
        evaluate(_cfg([f"ckpt={net5_run}", "data=folders", f"data.root={root}"], tmp_path / "e", cache_dir))


@pytest.mark.parametrize("argv, message", [
    (["data.rooot=x"], "unknown setting 'data.rooot'"),
    (["data=folderz"], "unknown data 'folderz'"),
    (["mapping={a: b}"], "unknown setting 'mapping'"),
    (["ckpt"], "not a key=value setting"),
])
def test_arguments_hydra_would_reject_get_one_line(argv, message):
    with pytest.raises(UserError, match=message):
        check_args(argv)


@pytest.mark.slow
def test_the_command_writes_a_run_folder_the_report_shows_beside_the_training_run(net5_run, tree, cache_dir, tmp_path):
    sweep = tmp_path / "outputs"
    shutil.copytree(net5_run, sweep / "runs" / "net5")
    hydra_dir = sweep / "runs" / "net5" / ".hydra"  # what python -m genre_cls.train leaves (the fixture called train())
    hydra_dir.mkdir()
    (hydra_dir / "config.yaml").write_text("model: {name: net5}\noptim: {_target_: torch.optim.Adam}\nlr: 0.0001\nepochs: 1\n")
    (hydra_dir / "overrides.yaml").write_text("- model=net5\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "GENRE_CLS_CACHE": str(cache_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "genre_cls.evaluate", f"ckpt={sweep / 'runs' / 'net5'}", "data=folders", f"data.root={tree}",
         "map={Hip-Hop: hiphop}", "data.progress=false", f"hydra.run.dir={sweep / 'evaluations' / 'folders'}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "net5 (trained on gtzan) on folders" in proc.stdout and "left out: Hip-Hop & Rap (3 tracks), Spoken Word (3 tracks)" in proc.stdout
    folder = sweep / "evaluations" / "folders"
    assert {p.name for p in folder.iterdir()} == {".hydra", "metrics.json", "predictions.csv", "confusion_matrix.png",
                                                 "data_summary.json"}
    report = subprocess.run([sys.executable, "-m", "genre_cls.report", str(sweep)], capture_output=True, text=True, env=env,
                            timeout=600)
    assert report.returncode == 0, report.stderr
    head, _, *rows = [line for line in report.stdout.splitlines() if line.strip()][:4]
    assert head.split()[:4] == ["dataset", "trained", "on", "model"], report.stdout
    table = {r.split()[0]: r.split() for r in rows}
    assert table["gtzan"][1:3] == ["gtzan", "net5"] and table["folders"][1:3] == ["gtzan", "net5"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert f"{100 * metrics['test/acc']:.1f}" in table["folders"]
    md = (sweep / "report.md").read_text()
    assert "score a checkpoint trained on one collection on another" in md
