"""``genre_cls.report`` on hand-made run folders (no training: each test takes about a second)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genre_cls import GENRES
from genre_cls.metrics import METRIC_NAMES
from genre_cls.paper import PAPER_TABLE2, paper_row
from genre_cls.report import build_table, collect_runs, main, read_curves

TARGETS = {"adam": "torch.optim.Adam", "rmsprop": "torch.optim.RMSprop"}


def fake_metrics(model, optim, lr, epochs, epochs_trained, acc, track=False):
    out = {f"test/{m}": acc - 0.01 * i for i, m in enumerate(METRIC_NAMES)}
    if track:
        out.update({f"test_track/{m}": acc + 0.05 for m in METRIC_NAMES})
    cm = [[0] * 10 for _ in range(10)]
    for i in range(10):
        cm[i][i] = 3
        cm[i][(i + 1) % 10] = 1
    out.update(
        model=model, optim=optim, lr=lr, epochs=epochs, epochs_trained=epochs_trained, best_epoch=epochs_trained,
        classes=list(GENRES), confusion_matrix=cm, split="track", seed=0,
    )
    return out


def make_run(root: Path, name, model, optim, lr, epochs=100, test_at=(50, 100), overrides=()):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    cfg = {
        "lr": lr, "epochs": epochs, "seed": 0, "test_at": list(test_at) or None,
        "model": {"name": model}, "optim": {"_target_": TARGETS[optim], "_partial_": True, "lr": "${lr}"},
        "data": {"split": "track", "root": None}, "output_dir": "${hydra:runtime.output_dir}",
    }
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides) or [f"model={model}", f"optim={optim}", f"lr={lr}"]))
    return run


def write(run: Path, name: str, obj) -> None:
    (run / name).write_text(json.dumps(obj))


def write_events(run: Path, epochs: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run)) as w:
        for e in range(epochs):
            step = 10 * (e + 1) - 1
            w.add_scalar("train/loss", 2.0 / (e + 1), step)
            w.add_scalar("val/acc", 0.1 + 0.1 * e, step)
            w.add_scalar("epoch", e, step)


@pytest.fixture
def sweep(tmp_path) -> Path:
    root = tmp_path / "multirun" / "2024-01-01" / "12-00-00"
    # Finished, snapshot at 50 epochs and the full 100.
    run = make_run(root, "0_net1", "net1", "adam", 1e-4)
    write(run, "metrics.json", fake_metrics("net1", "adam", 1e-4, 100, 100, 0.60))
    write(run, "metrics_epoch50.json", fake_metrics("net1", "adam", 1e-4, 50, 50, 0.50))
    write_events(run, 3)
    # Net3 with RMSprop is the paper's Net4; stopped early at 30, so metrics.json answers 50 and 100.
    run = make_run(root, "1_net3", "net3", "rmsprop", 1e-4)
    write(run, "metrics.json", fake_metrics("net3", "rmsprop", 1e-4, 100, 30, 0.70))
    # A segment model with track-level metrics, other lr: no paper numbers.
    run = make_run(root, "2_net5", "net5", "adam", 1e-3, test_at=())
    write(run, "metrics.json", fake_metrics("net5", "adam", 1e-3, 100, 43, 0.80, track=True))
    run = make_run(root, "3_net1", "net1", "rmsprop", 1e-2, overrides=["model=net1", "batch_size=0"])
    write(run, "failed.json", {"error": "UserError: batch_size must be a whole number >= 1, got 0"})
    # Still running: the 50-epoch snapshot is tested, the whole run not yet.
    run = make_run(root, "4_net2", "net2", "adam", 1e-4)
    write(run, "metrics_epoch50.json", fake_metrics("net2", "adam", 1e-4, 50, 50, 0.65))
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_paper_rows_match_by_model_epochs_optimiser_at_lr_1e4():
    assert len(PAPER_TABLE2) == 16
    assert paper_row("net1", "adam", 50, 1e-4).acc == 55
    assert paper_row("net1", "rmsprop", 100, 1e-4).f1 == 60
    assert paper_row("net4", "rmsprop", 100, 1e-4).acc == 71
    assert paper_row("net3", "rmsprop", 50, 1e-4).model == "net4"  # the same configuration
    assert paper_row("net5", "rmsprop", 100, 1e-4).acc == 83  # early-stopped rows match any epochs
    assert paper_row("net1", "adam", 50, 1e-3) is None
    assert paper_row("net3", "adam", 75, 1e-4) is None


def test_collect_runs_reads_status_and_every_metrics_file(sweep):
    runs = {r["name"]: r for r in collect_runs(sweep)}
    assert list(runs) == ["0_net1", "1_net3", "2_net5", "3_net1", "4_net2"]
    assert [runs[n]["status"] for n in runs] == ["done", "done", "done", "failed", "incomplete"]
    assert sorted(runs["0_net1"]["results"]) == [50, 100]
    assert "batch_size" in runs["3_net1"]["error"]
    assert runs["3_net1"]["optim"] == "rmsprop" and runs["3_net1"]["lr"] == 1e-2


def test_build_table_gives_one_row_per_run_and_epochs_value(sweep):
    rows = build_table(collect_runs(sweep))
    key = {(r["run"], r["epochs"]): r for r in rows}
    assert sorted(key) == [("0_net1", 50), ("0_net1", 100), ("1_net3", 50), ("1_net3", 100), ("2_net5", 100), ("4_net2", 50)]
    r = key["0_net1", 50]
    assert r["acc"] == pytest.approx(50.0) and r["f1"] == pytest.approx(100 * (0.50 - 0.06))
    assert r["precision"] == pytest.approx(100 * (0.50 - 0.04)) and r["f1_macro"] == pytest.approx(100 * (0.50 - 0.03))
    assert (r["paper_acc"], r["paper_precision"], r["paper_recall"], r["paper_f1"]) == (55, 68, 55, 56)
    assert key["0_net1", 100]["paper_acc"] == 51
    # Early stop at 30: both rows from metrics.json, matched to the paper's Net4 rows.
    assert key["1_net3", 50]["acc"] == key["1_net3", 100]["acc"] == pytest.approx(70.0)
    assert key["1_net3", 50]["paper"] == "Net4 50 RMSprop" and key["1_net3", 100]["paper_acc"] == 71
    assert key["2_net5", 100]["track_acc"] == pytest.approx(85.0) and key["2_net5", 100]["paper_acc"] is None
    assert key["0_net1", 50]["track_acc"] is None
    assert [r["optim"] for r in rows] == ["adam"] * 4 + ["rmsprop"] * 2


def test_read_curves_gives_per_epoch_values(sweep):
    curves = read_curves(sweep / "0_net1")
    assert curves["val/acc"][0] == [1, 2, 3]
    assert curves["val/acc"][1] == pytest.approx([0.1, 0.2, 0.3])
    assert curves["train/loss"][1] == pytest.approx([2.0, 1.0, 2.0 / 3])


def test_cli_writes_table_csv_markdown_and_plots(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "paper acc" in printed and "track acc" in printed and "100 (stopped 30)" in printed
    assert "failed: 3_net1" in printed and "running/incomplete: 4_net2" in printed
    with open(out / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    net1 = next(r for r in rows if r["run"] == "0_net1" and r["epochs"] == "50")
    assert float(net1["acc"]) == pytest.approx(50.0) and net1["paper_acc"] == "55" and net1["track_acc"] == ""
    md = (out / "report.md").read_text()
    assert "| model | epochs | optim | lr | acc |" in md and "batch_size must be" in md
    assert "Net6 51 (early stop) Adam" in md  # paper rows without a run are named
    for name in ("accuracy_grid.png", "training_curves.png", "best_confusion_matrix.png"):
        assert (out / name).stat().st_size > 5000, name


def test_single_run_directory_is_a_sweep_of_one(sweep, capsys):
    main([str(sweep / "0_net1")])
    assert (sweep / "0_net1" / "report.csv").is_file()
    assert "0_net1" not in capsys.readouterr().err


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_bad_directory_is_one_line_and_exit_2(tmp_path, what):
    target = tmp_path / what
    if what == "empty":
        target.mkdir()
    proc = subprocess.run([sys.executable, "-m", "genre_cls.report", str(target)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
