"""``genre_cls.report`` on hand-made run folders (no training: each test takes about a second)."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from genre_cls import GENRES
from genre_cls import report as report_module
from genre_cls.metrics import METRIC_NAMES
from genre_cls.paper import PAPER_TABLE2, paper_row
from genre_cls.report import aggregate, build_table, collect_runs, compare, curve_series, main, read_curves

TARGETS = {"adam": "torch.optim.Adam", "rmsprop": "torch.optim.RMSprop"}


def fake_metrics(model, optim, lr, epochs, epochs_trained, acc, track=False, seed=0, split="track", classes=GENRES,
                 dataset=None):
    out = {f"test/{m}": acc - 0.01 * i for i, m in enumerate(METRIC_NAMES)}
    out.update({"test/acc_ci95": [acc - 0.1, acc + 0.05], "test/f1_weighted_ci95": [acc - 0.2, acc]})
    out.update({f"test/f1/{g}": acc for g in classes})
    if track:
        out.update({f"test_track/{m}": acc + 0.05 for m in METRIC_NAMES})
    n = len(classes)
    cm = [[0] * n for _ in range(n)]
    for i in range(n):
        cm[i][i] = 3
        cm[i][(i + 1) % n] = 1
    out.update(
        model=model, optim=optim, lr=lr, epochs=epochs, epochs_trained=epochs_trained, best_epoch=epochs_trained,
        classes=list(classes), confusion_matrix=cm, split=split, seed=seed,
    )
    if dataset is not None:  # runs from before data sets other than GTZAN do not name one
        out["dataset"] = dataset
    return out


def make_run(root: Path, name, model, optim, lr, epochs=100, test_at=(50, 100), overrides=(), seed=0, split="track",
             fold=None, data=None, **config):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    cfg = {
        "lr": lr, "epochs": epochs, "seed": seed, "test_at": list(test_at) or None,
        "model": {"name": model}, "optim": {"_target_": TARGETS[optim], "_partial_": True, "lr": "${lr}"},
        "data": {"split": split, "root": None, "seed": "${seed}", "folds": None if fold is None else 5, "fold": fold or 0,
                 **(data or {})},
        "output_dir": "${hydra:runtime.output_dir}",
        **config,
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


# -- aggregation over seeds and folds ------------------------------------------------------------


@pytest.fixture
def seeds_sweep(tmp_path) -> Path:
    """Net5 (paper lr) with three seeds, one of them on another fold; Net5 at another lr once."""
    root = tmp_path / "seeds"
    for i, (seed, fold, acc) in enumerate([(0, 0, 0.80), (1, 0, 0.84), (1, 1, 0.88)]):
        run = make_run(root, f"{i}_net5", "net5", "adam", 1e-4, test_at=(), seed=seed, fold=fold,
                       overrides=["model=net5", f"seed={seed}", f"data.fold={fold}"])
        write(run, "metrics.json", fake_metrics("net5", "adam", 1e-4, 100, 40 + i, acc, track=True, seed=seed))
        write_events(run, 2 + i)
    run = make_run(root, "3_net5", "net5", "adam", 1e-3, test_at=(), overrides=["model=net5", "lr=0.001"])
    write(run, "metrics.json", fake_metrics("net5", "adam", 1e-3, 100, 30, 0.70, track=True))
    return root


def test_runs_differing_only_in_seed_or_fold_form_one_row_with_a_t_interval(seeds_sweep):
    rows = aggregate(build_table(collect_runs(seeds_sweep)))
    assert [(r["lr"], r["n"]) for r in rows] == [(1e-3, 1), (1e-4, 3)]
    once, thrice = rows
    assert thrice["acc"] == pytest.approx(84.0) and thrice["acc_std"] == pytest.approx(4.0)
    half = 4.302652729911275 * 4.0 / 3 ** 0.5  # t(0.975, 2) * s / sqrt(n)
    assert thrice["acc_ci"] == pytest.approx([84.0 - half, 84.0 + half])
    assert thrice["track_acc"] == pytest.approx(89.0)
    assert thrice["paper_acc"] == 85 and thrice["paper_acc_inside"] is True
    assert thrice["confusion_matrix"][0][0] == 9  # the three runs' matrices summed
    assert thrice["genre_f1"]["jazz"] == pytest.approx((84.0, 4.0))
    # One run: no spread, its own bootstrap interval over test tracks.
    assert once["acc_std"] is None and once["acc_ci"] == pytest.approx([60.0, 75.0])
    assert once["paper_acc"] is None and once["paper_acc_inside"] is None


def test_paper_number_outside_the_interval_is_marked(seeds_sweep, capsys):
    # All three far below the paper's 85: outside their interval [47.5, 54.5].
    for i, acc in enumerate((0.50, 0.51, 0.52)):
        write(seeds_sweep / f"{i}_net5", "metrics.json", fake_metrics("net5", "adam", 1e-4, 100, 40, acc, track=True))
    rows = aggregate(build_table(collect_runs(seeds_sweep)))
    assert rows[1]["n"] == 3 and rows[1]["paper_acc_inside"] is False
    main([str(seeds_sweep)])
    assert "85 (out)" in capsys.readouterr().out


def test_cli_prints_one_aggregated_row_and_csv_keeps_every_run(seeds_sweep, capsys):
    main([str(seeds_sweep)])
    printed = capsys.readouterr().out
    table = printed.split("\n\n")[0].splitlines()
    assert len(table) == 4, printed  # heading, rule, one row per configuration
    assert "84.0 ± 4.0" in printed and "[74.1, 93.9]" in printed and "85 (in)" in printed
    assert "| jazz | 84.0 ± 4.0 |" in printed  # per-genre F1 of the best row
    with open(seeds_sweep / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["kind"] for r in rows] == ["run"] * 4 + ["mean"]
    mean = rows[-1]
    assert mean["n"] == "3" and float(mean["acc"]) == pytest.approx(84.0) and float(mean["acc_std"]) == pytest.approx(4.0)
    assert float(mean["acc_ci_low"]) == pytest.approx(84.0 - 4.302652729911275 * 4 / 3 ** 0.5)
    assert mean["run"] == "0_net5; 1_net5; 2_net5" and mean["paper_acc_inside"] == "True"
    assert next(r for r in rows if r["run"] == "3_net5")["fold"] == ""  # no folds: no fold
    single = next(r for r in rows if r["run"] == "1_net5")
    assert (single["seed"], single["folds"], single["fold"]) == ("1", "5", "0") and float(single["acc_ci_high"]) == pytest.approx(89.0)
    md = (seeds_sweep / "report.md").read_text()
    assert "## Per-genre F1 of the best row" in md and "| n |" in md


def test_training_curves_draw_one_series_per_configuration(seeds_sweep):
    series = curve_series(collect_runs(seeds_sweep))
    assert [(label, len(curves)) for label, _, curves in series] == [
        ("net5 adam lr=0.0001 (3 runs)", 3), ("net5 adam lr=0.001", 1)]
    assert [len(c["val/acc"][0]) for c in series[0][2]] == [2, 3, 4]


def test_a_sweep_over_splits_says_how_much_the_segment_split_inflates_accuracy(tmp_path, capsys):
    root = tmp_path / "leakage"
    for i, (split, acc) in enumerate([(s, a) for s, accs in (("segment", (0.90, 0.92, 0.94)), ("track", (0.70, 0.72, 0.74)))
                                      for a in accs]):
        run = make_run(root, f"{i}_net5", "net5", "adam", 1e-3, test_at=(), seed=i % 3, split=split,
                       overrides=["experiment=leakage", f"data.split={split}", f"seed={i % 3}"])
        write(run, "metrics.json", fake_metrics("net5", "adam", 1e-3, 100, 40, acc, seed=i % 3, split=split))
    main([str(root)])
    printed = capsys.readouterr().out
    # Welch: difference 20, standard error sqrt(4/3 + 4/3), 4 degrees of freedom: t = 2.776.
    assert "The segment split reads +20.0 points over track (95% interval [+15.5, +24.5])" in printed
    assert "## How much the split changes accuracy" in (root / "report.md").read_text()


# -- paired comparison ---------------------------------------------------------------------------


def write_predictions(run: Path, correct: list[bool], segments: int, classes=GENRES) -> None:
    """One test track per class whose voted prediction is right where ``correct`` says."""
    n = len(classes)
    lines = ["track,segment,true,predicted," + ",".join(f"p_{g}" for g in classes)]
    for t, (genre, ok) in enumerate(zip(classes, correct)):
        wrong = classes[(t + 1) % n]
        for seg in range(segments):
            probs = [0.0] * n
            # Segment models: the first segment points elsewhere, the vote still decides.
            first_odd = segments > 1 and seg == 0
            probs[classes.index(genre if ok != first_odd else wrong)] = 0.9 if seg else 0.6
            probs[classes.index(wrong if ok != first_odd else genre)] += 0.1 if seg else 0.4
            lines.append(f"{genre}.{t:05d},{seg if segments > 1 else ''},{genre},"
                         f"{classes[probs.index(max(probs))]}," + ",".join(str(p) for p in probs))
    (run / "predictions.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def paired_sweep(tmp_path) -> Path:
    root = tmp_path / "paired"
    # A (net5, 3 segments per track) and B (net6) right on these tracks, per seed:
    right = {
        0: ([1] * 6 + [0] * 4, [1] * 5 + [0] + [1] * 4),  # A only: 1 track; B only: 4
        1: ([1] * 5 + [0] * 5, [1] * 7 + [0] * 3),        # A only: 0; B only: 2
    }
    for seed, (a, b) in right.items():
        for model, correct, segments in (("net5", a, 3), ("net6", b, 1)):
            run = make_run(root, f"{model}_s{seed}", model, "adam", 1e-3, test_at=(), seed=seed,
                           overrides=[f"model={model}", f"seed={seed}"])
            write(run, "metrics.json", fake_metrics(model, "adam", 1e-3, 100, 40, sum(correct) / 10, seed=seed))
            write_predictions(run, [bool(c) for c in correct], segments)
    return root


def test_paired_comparison_matches_a_hand_computed_mcnemar(paired_sweep):
    result = compare(collect_runs(paired_sweep), "net5", "model=net6")
    assert [(p["seed"], p["acc_a"], p["acc_b"]) for p in result["pairs"]] == [(0, 60.0, 90.0), (1, 50.0, 70.0)]
    assert result["diff"] == pytest.approx(25.0) and result["diff_std"] == pytest.approx(50 ** 0.5)
    half = 12.706204736174698 * 50 ** 0.5 / 2 ** 0.5  # t(0.975, 1) * s / sqrt(2)
    assert result["diff_ci"] == pytest.approx([25 - half, 25 + half])
    # Discordant tracks pooled over both pairs: A only 1, B only 6; exact two-sided p = 2 * (1 + 7) / 2**7.
    assert result["mcnemar"] == {"a_only": 1, "b_only": 6, "p_value": pytest.approx(0.125)}
    assert result["pooled_tracks"] == 20


def test_compare_command_prints_the_comparison_and_skips_pairs_on_other_tracks(paired_sweep, capsys):
    run = make_run(paired_sweep, "net5_s2", "net5", "adam", 1e-3, test_at=(), seed=2, overrides=["model=net5", "seed=2"])
    write(run, "metrics.json", fake_metrics("net5", "adam", 1e-3, 100, 40, 0.5, seed=2))
    write_predictions(run, [True] * 10, 3)
    run = make_run(paired_sweep, "net6_s2", "net6", "adam", 1e-3, test_at=(), seed=2, overrides=["model=net6", "seed=2"])
    write(run, "metrics.json", fake_metrics("net6", "adam", 1e-3, 100, 40, 0.5, seed=2))
    write_predictions(run, [True] * 10, 1)
    text = (run / "predictions.csv").read_text().replace("blues.00000", "blues.00099")
    (run / "predictions.csv").write_text(text)
    for model in ("net5", "net6"):  # a pair whose predictions are damaged is left out, with the reason
        run = make_run(paired_sweep, f"{model}_s3", model, "adam", 1e-3, test_at=(), seed=3,
                       overrides=[f"model={model}", "seed=3"])
        write(run, "metrics.json", fake_metrics(model, "adam", 1e-3, 100, 40, 0.5, seed=3))
        write_predictions(run, [True] * 10, 1)
    text = (run / "predictions.csv").read_text().replace("0.6,", "abc,", 1)
    (run / "predictions.csv").write_text(text)
    main([str(paired_sweep), "--compare", "net5", "net6"])
    printed = capsys.readouterr().out
    assert "not paired: seed=3: predictions.csv: line 2: a probability that is not a number" in printed
    assert "B - A track accuracy: +25.0 ± 7.1 points over 2 pair(s)" in printed
    assert "p = 0.125" in printed and "not paired: seed=2" in printed and "different tracks" in printed
    assert "## Paired comparison" in (paired_sweep / "report.md").read_text()


@pytest.mark.parametrize(("a", "b", "message"), [
    ("net5", "net9", "no finished run matches 'net9'"),
    ("net5", "foo=1", "unknown key 'foo' in 'foo=1': name dataset, model, optim, lr, epochs, seed, split or a config key"),
    ("net5", "model=net6,seeed=1", "unknown key 'seeed'"),
    ("net5", "optim=adam", "matches 2 configurations"),
    ("net5", "model=net5,seed=1", "the same configuration"),
    ("net5", "model=net6,seed=7", "no finished run matches"),
])
def test_compare_errors_are_one_line(paired_sweep, capsys, a, b, message):
    with pytest.raises(SystemExit) as info:
        main([str(paired_sweep), "--compare", a, b])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


# -- malformed runs ------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def _metrics_with(**changes):
    m = fake_metrics("net1", "adam", 1e-4, 100, 100, 0.6)
    for key, value in changes.items():
        key = key.replace("__", "/")
        if value is KeyError:
            del m[key]
        else:
            m[key] = value
    return json.dumps(m)


MALFORMED = {
    "string_for_number": ("metrics.json", _metrics_with(test__acc="abc"), "test/acc must be a number in [0, 1]"),
    "nan": ("metrics.json", _metrics_with(test__acc=math.nan), "test/acc must be a number in [0, 1]"),
    "huge_int": ("metrics.json", _metrics_with(lr=10**400), "lr must be a number > 0"),
    "missing_key": ("metrics.json", _metrics_with(test__f1_weighted=KeyError), "missing key 'test/f1_weighted'"),
    "nested_junk": ("metrics.json", _metrics_with(lr={"a": [1, {"b": [2]}]}), "lr must be a number > 0"),
    "bool_epochs": ("metrics.json", _metrics_with(epochs=True), "epochs must be a whole number"),
    "absurd_epochs": ("metrics.json", _metrics_with(epochs_trained=10**30), "epochs_trained must be a whole number in 0.."),
    "bad_interval": ("metrics.json", _metrics_with(test__acc_ci95=[0.9, 0.1]), "test/acc_ci95 must be [low, high]"),
    "classes": ("metrics.json", _metrics_with(classes=["rock"] * 10), "classes must be a list of 2 to 1000 distinct"),
    "one_class": ("metrics.json", _metrics_with(classes=["rock"]), "classes must be a list of 2 to 1000 distinct"),
    "dataset": ("metrics.json", _metrics_with(dataset=["fma"]), "dataset must be a data set name"),
    "matrix_of_other_classes": ("metrics.json", _metrics_with(classes=list(GENRES[:8])), "confusion_matrix must be a 8 x 8"),
    "huge_matrix": ("metrics.json", _metrics_with(confusion_matrix=[[1] * 400] * 400), "confusion_matrix must be a 10 x 10"),
    "ragged_matrix": ("metrics.json", _metrics_with(confusion_matrix=[[1] * 10] * 9 + [[1] * 11]), "10 x 10"),
    "negative_count": ("metrics.json", _metrics_with(confusion_matrix=[[-1] * 10] * 10), "counts"),
    "not_json": ("metrics.json", '{"test/acc": 0.5', "metrics.json: not valid JSON"),
    "json_list": ("metrics.json", "[1, 2]", "holds a JSON list, not an object"),
    "deep_json": ("metrics.json", _nested(200_000), "nested too deeply"),
    "oversized": ("metrics.json", _metrics_with() + " " * (1 << 20), "more than the 1,048,576"),
    "snapshot": ("metrics_epoch50.json", _metrics_with(model=7), "metrics_epoch50.json: model must be a model name"),
    "bad_yaml": (".hydra/config.yaml", "model: [unclosed\n  lr: : :", "config.yaml: not valid YAML"),
    "yaml_list": (".hydra/config.yaml", "- 1\n- 2\n", "holds a list, not a mapping"),
    "alias_bomb": (".hydra/config.yaml", ALIAS_BOMB, "nested too deeply or too large"),
    "overrides": (".hydra/overrides.yaml", "{a: 1}", "overrides.yaml: must be a list of override strings"),
    "failed_error": ("failed.json", '{"error": [1]}', "failed.json: must hold an 'error' message"),
    "binary": ("metrics.json", b"\xff\xfe\x00junk", "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_run_is_listed_as_unreadable_and_the_others_are_reported(sweep, tmp_path, capsys, monkeypatch, case):
    name, content, reason = MALFORMED[case]
    if case != "huge_matrix":  # one case draws the figures too; the others skip the slowest part
        monkeypatch.setattr(report_module, "write_figures", lambda *args, **kwargs: [])
    target = sweep / "0_net1" / name
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)
    out = tmp_path / "report"
    main([str(sweep), "--out", str(out)])
    printed = capsys.readouterr().out
    assert f"unreadable: 0_net1: {Path(name).name}: " in printed and reason in printed, printed[-800:]
    md = (out / "report.md").read_text()
    section = md.split("## Unreadable runs", 1)[1]
    assert "0_net1" in section and reason in section
    assert "running/incomplete: 0_net1" not in printed  # unreadable, not mistaken for unfinished
    with open(out / "report.csv") as f:
        runs = {r["run"] for r in csv.DictReader(f)}
    assert runs == {"1_net3", "2_net5", "4_net2"}  # the other runs are still reported
    if case == "huge_matrix":
        assert (out / "best_confusion_matrix.png").stat().st_size > 5000


def test_an_interrupted_run_is_listed_with_its_resume_command(tmp_path, capsys):
    root = tmp_path / "sweep"
    done = make_run(root, "0_net1", "net1", "adam", 1e-4)
    write(done, "metrics.json", fake_metrics("net1", "adam", 1e-4, 100, 100, 0.5))
    stopped = make_run(root, "1_net2", "net2", "adam", 1e-4)
    command = "python -m genre_cls.train ckpt_path=/x/1_net2/checkpoints/last.ckpt model=net2"
    write(stopped, "interrupted.json", {"signal": "SIGTERM", "epochs_completed": 3, "resume": command})
    runs = collect_runs(root)
    assert [r["status"] for r in runs] == ["done", "interrupted"]
    main([str(root)])
    out = capsys.readouterr().out
    assert f"interrupted: 1_net2 (net2 adam lr=0.0001; model=net2); resume with: {command}" in out
    assert "1 interrupted" in (root / "report.md").read_text()


def test_out_that_is_a_file_is_one_line(sweep, tmp_path, capsys):
    target = tmp_path / "notes.md"
    target.write_text("my notes")
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), "--out", str(target)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "is a file: give a folder" in err and "\n" not in err
    assert target.read_text() == "my notes"


def test_out_that_cannot_be_written_is_one_line_before_any_file(sweep, capsys):
    """/proc exists and even root's permission bits say writable: the report tries, not trusts them."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), "--out", "/proc"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write to --out '/proc': ") and err.endswith("give a folder you can write to")


def test_an_unfinished_run_is_running_or_killed_as_its_process_says(tmp_path, capsys):
    import socket
    import subprocess
    import sys

    root = tmp_path / "sweep"
    live = make_run(root, "0_net1", "net1", "adam", 1e-3)
    gone = make_run(root, "1_net1", "net1", "adam", 1e-4)
    make_run(root, "2_net1", "net1", "adam", 1e-5)  # no .running: a run from before it existed
    (gone / "checkpoints").mkdir()
    (gone / "checkpoints" / "last.ckpt").write_bytes(b"x")
    host = socket.gethostname()
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        write(live, ".running", {"pid": worker.pid, "host": host})
        write(gone, ".running", {"pid": 2**22 + 7, "host": host})  # above pid_max: no such process
        main([str(root)])
    finally:
        worker.kill()
        worker.wait()
    printed = capsys.readouterr().out
    assert f"running: 0_net1 (net1 adam lr=0.001; lr=0.001), in process {worker.pid} on host {host}" in printed
    assert ("killed (its process is gone, no failed.json): 1_net1 (net1 adam lr=0.0001; lr=0.0001); resume with "
            f"ckpt_path={gone / 'checkpoints' / 'last.ckpt'}") in printed
    assert "running/incomplete: 2_net1 (net1 adam lr=1e-05; lr=1e-05)" in printed


# -- data sets and any number of classes ---------------------------------------------------------

# Seven labels of a folder tree, with names the way people write them.
SEVEN = ["Hip-Hop", "música latina", "Rock & Roll", "8-bit", "drum.n.bass", "jazz", "metal"]
FMA8 = ["Electronic", "Experimental", "Folk", "Hip-Hop", "Instrumental", "International", "Pop", "Rock"]


@pytest.fixture
def datasets_sweep(tmp_path) -> Path:
    """Net5 at the paper's lr, two seeds each on GTZAN (runs that name no data set), FMA (8 genres)
    and a folder tree (7 labels). The FMA runs' configs equal the GTZAN runs': only their metrics
    name the data set."""
    root = tmp_path / "datasets"
    for seed in (0, 1):
        for name, dataset, classes, acc, data in (("gtzan", None, GENRES, 0.80, None), ("fma", "fma", FMA8, 0.50, None),
                                                  ("folders", "folders", SEVEN, 0.60, {"dataset": "folders"})):
            run = make_run(root, f"{name}_s{seed}", "net5", "adam", 1e-4, test_at=(), seed=seed, data=data,
                           overrides=["model=net5", f"seed={seed}"])
            write(run, "metrics.json", fake_metrics("net5", "adam", 1e-4, 100, 40, acc + 0.02 * seed, seed=seed,
                                                    classes=classes, dataset=dataset))
            write_predictions(run, [True, False] * 5, 3, classes)
    return root


def test_runs_of_different_data_sets_never_pool_and_only_gtzan_gets_the_papers_numbers(datasets_sweep):
    runs = {r["name"]: r for r in collect_runs(datasets_sweep)}
    assert [runs[f"{n}_s0"]["dataset"] for n in ("gtzan", "fma", "folders")] == ["gtzan", "fma", "folders"]
    assert runs["gtzan_s0"]["group"] != runs["fma_s0"]["group"]  # same config, other data set
    rows = aggregate(build_table(list(runs.values())))
    assert [(r["dataset"], r["n"]) for r in rows] == [("gtzan", 2), ("fma", 2), ("folders", 2)]  # GTZAN first
    gtzan, fma, folders = rows
    assert gtzan["acc"] == pytest.approx(81.0) and fma["acc"] == pytest.approx(51.0) and folders["acc"] == pytest.approx(61.0)
    assert gtzan["paper"] == "Net5 43 (early stop) Adam" and gtzan["paper_acc"] == 85
    assert fma["paper"] is None and fma["paper_acc"] is None and fma["paper_acc_inside"] is None and folders["paper"] is None
    assert fma["classes"] == FMA8 and len(fma["confusion_matrix"]) == 8 and fma["confusion_matrix"][0][0] == 6
    assert list(folders["genre_f1"]) == SEVEN


def test_the_report_groups_rows_by_data_set_and_names_the_classes_of_any_count(datasets_sweep, capsys):
    main([str(datasets_sweep)])
    printed = capsys.readouterr().out
    table = printed.split("\n\n")[0].splitlines()
    assert table[0].split()[:2] == ["dataset", "model"] and len(table) == 5
    assert [line.split()[0] for line in table[2:]] == ["gtzan", "fma", "folders"]
    assert "85 (in)" in table[2] and "85" not in table[3] + table[4]
    with open(datasets_sweep / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["kind"], r["dataset"]) for r in rows] == [("run", d) for d in ("gtzan", "gtzan", "fma", "fma", "folders", "folders")] \
        + [("mean", "gtzan"), ("mean", "fma"), ("mean", "folders")]
    assert [r["paper_acc"] for r in rows if r["dataset"] != "gtzan"] == [""] * 6
    md = (datasets_sweep / "report.md").read_text()
    assert "| dataset | model |" in md and "Paper rows without a run here" in md
    assert (datasets_sweep / "best_confusion_matrix.png").stat().st_size > 5000


def test_a_sweep_on_another_data_set_has_no_papers_columns(tmp_path, capsys):
    root = tmp_path / "folders"
    for seed in (0, 1):
        run = make_run(root, f"{seed}_net5", "net5", "adam", 1e-4, test_at=(), seed=seed, data={"dataset": "folders"},
                       overrides=["model=net5", f"seed={seed}"])
        write(run, "metrics.json", fake_metrics("net5", "adam", 1e-4, 100, 40, 0.6, seed=seed, classes=SEVEN, dataset="folders"))
    main([str(root)])
    printed = capsys.readouterr().out
    assert "paper" not in printed.split("\n\n")[0] and "dataset" not in printed.split("\n\n")[0]
    assert "| música latina | 60.0 ± 0.0 |" in printed  # per-class F1 of the best row, any names
    md = (root / "report.md").read_text()
    assert md.startswith("# Results from") and "Paper rows without a run here" not in md


def test_compare_pairs_runs_of_any_number_of_classes(datasets_sweep, tmp_path):
    root = tmp_path / "pair"
    for seed in (0,):
        for model, correct in (("net5", [True] * 3 + [False] * 4), ("net6", [True] * 6 + [False])):
            run = make_run(root, f"{model}_s{seed}", model, "adam", 1e-3, test_at=(), seed=seed, data={"dataset": "folders"},
                           overrides=[f"model={model}", f"seed={seed}"])
            write(run, "metrics.json", fake_metrics(model, "adam", 1e-3, 100, 40, 0.5, seed=seed, classes=SEVEN,
                                                    dataset="folders"))
            write_predictions(run, correct, 3, SEVEN)
    result = compare(collect_runs(root), "net5", "dataset=folders,model=net6")
    assert [(p["acc_a"], p["acc_b"], p["tracks"]) for p in result["pairs"]] == [(pytest.approx(300 / 7), pytest.approx(600 / 7), 7)]
    assert result["mcnemar"]["a_only"] == 0 and result["mcnemar"]["b_only"] == 3
    # Net5 on GTZAN and on FMA are two configurations: the data set names them apart.
    with pytest.raises(report_module.ReportError, match="matches 3 configurations.*dataset=fma"):
        compare(collect_runs(datasets_sweep), "net5", "model=net6")


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda t: t.replace(",jazz,", ",rock,", 1), "line 7: true genre 'rock' is not one of the run's classes"),
    (lambda t: t.replace("jazz,0.", "salsa,0.", 1), "predicted genre 'salsa' is not one of the run's classes"),
    (lambda t: t.replace("p_jazz,p_metal", "p_metal,p_jazz", 1), "its header must be track,segment,true,predicted,p_Hip-Hop,..."),
    (lambda t: "\n".join(t.split("\n")[:3] + [t.split("\n")[3].rsplit(",", 1)[0] + ",nan"] + t.split("\n")[4:]),
     "line 4: a probability that is not finite"),
])
def test_predictions_whose_genres_are_not_the_runs_classes_are_not_paired(tmp_path, edit, reason):
    root = tmp_path / "pair"
    for model in ("net5", "net6"):
        run = make_run(root, f"{model}_s0", model, "adam", 1e-3, test_at=(), overrides=[f"model={model}"])
        write(run, "metrics.json", fake_metrics(model, "adam", 1e-3, 100, 40, 0.5, classes=SEVEN, dataset="folders"))
        write_predictions(run, [True] * 7, 1, SEVEN)
    path = root / "net6_s0" / "predictions.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(report_module.ReportError) as info:
        compare(collect_runs(root), "net5", "net6")
    # The runs match (same seed, same tracks): their files are what is wrong, and the line says so.
    assert str(info.value).startswith("'net5' and 'net6' cannot be paired: seed=0: ") and reason in str(info.value)
    assert str(info.value).endswith("re-run the run(s) named (or restore their predictions.csv) to compare them")
    assert "same seeds" not in str(info.value)


# -- configurations that only the config tells apart --------------------------------------------


def test_rows_that_differ_only_in_a_key_off_the_command_line_name_that_key(tmp_path, capsys):
    root = tmp_path / "presets"
    # The same command line twice; a preset (or a changed default) set another batch size and data root.
    for i, (batch, data_root) in enumerate(((16, None), (32, None), (32, "/music"))):
        run = make_run(root, f"{i}_net5", "net5", "adam", 1e-3, test_at=(), overrides=["model=net5"], batch_size=batch,
                       data={"root": data_root})
        write(run, "metrics.json", fake_metrics("net5", "adam", 1e-3, 100, 40, 0.5 + 0.1 * i))
    rows = aggregate(build_table(collect_runs(root)))
    assert [r["setting"] for r in rows] == ["batch_size=16 data.root=null", "batch_size=32 data.root=/music",
                                            "batch_size=32 data.root=null"]
    main([str(root)])
    table = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert len(set(table[2:])) == 3 and "batch_size=16 data.root=null" in table[2]


@pytest.mark.parametrize("optim, shown", [("adam", "Adam"), ("adamw", "AdamW"), ("rmsprop", "RMSprop"), ("sgd", "sgd")])
def test_optimiser_names_are_written_in_their_usual_case(optim, shown):
    # mel_resnet sweeps mix adam and adamw: one column must not read "Adam" beside "adamw"
    assert report_module._cell({"optim": optim}, "optim") == shown


def test_labels_with_newlines_and_pipes_stay_one_table_cell():
    row = {"model": "net5", "optim": "adam", "lr": 1e-3, "epochs": 50, "dataset": "folders", "split": "track",
           "setting": "data.root=/music\nold", "n": 1, "genre_f1": {"Hip\nHop": 50.0, "Rock|Pop": 20.0, "メタル": 10.0}}
    lines = report_module.genre_f1_lines(row)
    assert "| Hip\\nHop | 50.0 |" in lines and "| Rock\\|Pop | 20.0 |" in lines and "| メタル | 10.0 |" in lines
    assert all("\n" not in line for line in lines)


# -- repeated cross-validation ---------------------------------------------------------------------


def write_track_predictions(run: Path, right: dict[str, bool], classes=GENRES) -> None:
    """One row per track id (its genre before the dot), predicted right where ``right`` says."""
    lines = ["track,segment,true,predicted," + ",".join(f"p_{g}" for g in classes)]
    for track, ok in right.items():
        genre = track.split(".")[0]
        guess = genre if ok else classes[(classes.index(genre) + 1) % len(classes)]
        probs = [0.9 if c == guess else 0.1 / (len(classes) - 1) for c in classes]
        lines.append(f"{track},,{genre},{guess}," + ",".join(str(p) for p in probs))
    (run / "predictions.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def repeated_cv(tmp_path) -> tuple[Path, dict]:
    """A and B over 2 folds x 2 split seeds (data.seed 0 and 1, seed 0): 20 tracks, each tested
    once per split seed. The folds deal the tracks differently per split seed."""
    root = tmp_path / "repeated"
    tracks = [f"{GENRES[i % 10]}.{i:05d}" for i in range(20)]
    # Per track: how often A and B are right over the two repetitions.
    a_right = {t: (i % 4 != 0, i % 5 != 0) for i, t in enumerate(tracks)}
    b_right = {t: (True, i % 10 != 3) for i, t in enumerate(tracks)}
    for data_seed in (0, 1):
        order = tracks if data_seed == 0 else tracks[::-1]
        for fold in (0, 1):
            test = order[10 * fold: 10 * fold + 10]
            for model, right in (("net5", a_right), ("net6", b_right)):
                run = make_run(root, f"{model}_d{data_seed}_f{fold}", model, "adam", 1e-3, test_at=(), fold=fold,
                               data={"seed": data_seed},
                               overrides=[f"model={model}", f"data.seed={data_seed}", f"data.fold={fold}"])
                share = min(0.9, sum(right[t][data_seed] for t in test) / 10)  # metrics.json only; pooling reads predictions
                write(run, "metrics.json", fake_metrics(model, "adam", 1e-3, 100, 40, share))
                write_track_predictions(run, {t: right[t][data_seed] for t in test})
    return root, {"a": a_right, "b": b_right}


def test_compare_pairs_repeated_cross_validation_by_split_seed_and_counts_each_track_once(repeated_cv, capsys):
    from genre_cls.metrics import sign_flip_test

    root, right = repeated_cv
    result = compare(collect_runs(root), "net5", "net6")
    # Four pairs, not two: runs of one seed and fold but another split seed are other repetitions.
    assert sorted((str(p["data_seed"]), p["fold"]) for p in result["pairs"]) == [("1", 0), ("1", 1), ("None", 0), ("None", 1)]
    assert result["pooled_tracks"] == 40
    pooled = result["pooled"]
    assert pooled["tracks"] == 20 and pooled["repeats"] == (2, 2)
    share_a = {t: sum(r) / 2 for t, r in right["a"].items()}
    share_b = {t: sum(r) / 2 for t, r in right["b"].items()}
    assert pooled["acc_a"] == pytest.approx(100 * np.mean(list(share_a.values())))
    assert pooled["acc_b"] == pytest.approx(100 * np.mean(list(share_b.values())))
    diffs = [share_b[t] - share_a[t] for t in share_a]
    assert pooled["diff"] == pytest.approx(100 * np.mean(diffs))
    assert pooled["p_value"] == pytest.approx(sign_flip_test(diffs))
    assert pooled["diff_ci"][0] < pooled["diff"] < pooled["diff_ci"][1]
    main([str(root), "--compare", "net5", "net6"])
    printed = capsys.readouterr().out
    assert "seed=0 data.seed=1 fold=1:" in printed and "seed=0 fold=0:" in printed
    assert f"Over 20 tracks, each predicted 2 times: A {pooled['acc_a']:.1f}%, B {pooled['acc_b']:.1f}%" in printed


def test_the_report_pools_a_cross_validation_over_its_folds_and_split_seeds(repeated_cv, capsys):
    root, right = repeated_cv
    main([str(root)])
    printed = capsys.readouterr().out
    acc_a = 100 * np.mean([sum(r) / 2 for r in right["a"].values()])
    assert (f"net5 adam lr=0.001, 100 epochs: {acc_a:.1f}% of 40 test predictions of 20 tracks (folds 0,1 of 5, "
            "split seed(s) 0,1; each track tested 2 time(s)), 95% interval [") in printed
    assert "## Cross-validation: track accuracy pooled over the folds" in (root / "report.md").read_text()
