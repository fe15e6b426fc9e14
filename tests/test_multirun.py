"""Sweeps through the real command line: Hydra multirun, launchers, presets, the report of a sweep.

One tiny sweep (Net1 on 32x32 images, 2 epochs) is shared by the tests here and by
``tests/test_notebook.py``; the sweep machinery is under test, not the model.
"""

import csv
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import shared
from genre_cls.conf import options
from genre_cls.report import main as report_main

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = str(ROOT / "conf")
QUIET = [
    "data.progress=false",
    "data.workers=0",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
]
# lr=100 passes every check but diverges in its first epoch: those two jobs must be recorded and
# the others finish.
TINY_SWEEP = ["model=net1", "optim=adam,rmsprop", "lr=0.001,0.0001,100", "epochs=2", "test_at=[1,2]",
              "batch_size=16", "data.image_size=32"]


def run_sweep(overrides: list[str], sweep_dir: Path, root: Path, cache: Path, failed: int = 0) -> None:
    """``python -m genre_cls.train -m ...`` in a subprocess, quiet, on the synthetic tree; with
    ``failed`` runs expected to fail, the sweep must end with exit status 1 and one line saying so."""
    env = {**os.environ, "GENRE_CLS_CACHE": str(cache), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "genre_cls.train", "-m", *overrides, f"data.root={root}", *QUIET,
           f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == (1 if failed else 0), proc.stdout[-2000:] + proc.stderr[-4000:]
    if failed:
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {failed} run(s) of the sweep failed") and "failed.json" in last, last


@pytest.fixture(scope="session")
def tiny_sweep(synth_root, tmp_path_factory) -> Path:
    """The shared sweep: 2 optimisers x 3 learning rates through the joblib launcher, 2 jobs at once.

    Imported by ``test_notebook.py`` as well; built once per test run either way (:func:`conftest.shared`).
    """
    def build(folder: Path) -> None:
        run_sweep(TINY_SWEEP + ["hydra/launcher=parallel"], folder / "multirun", synth_root, folder / "cache", failed=2)

    return shared(tmp_path_factory, "tiny_sweep", build) / "multirun"


def run_dirs(sweep: Path) -> list[Path]:
    runs = [p for p in sweep.iterdir() if (p / ".hydra" / "config.yaml").is_file()]
    return sorted(runs, key=lambda p: int(p.name.split("_")[0]))


@pytest.mark.slow
def test_sweep_runs_every_combination_and_records_the_failed_ones(tiny_sweep):
    assert (tiny_sweep / "multirun.yaml").is_file()
    runs = run_dirs(tiny_sweep)
    assert [r.name for r in runs] == [f"{i}_net1" for i in range(6)]
    failed = [r for r in runs if (r / "failed.json").is_file()]
    assert len(failed) == 2
    for run in failed:
        assert "training diverged" in json.loads((run / "failed.json").read_text())["error"]
        assert not (run / "metrics.json").exists()
    done = [r for r in runs if r not in failed]
    seen = set()
    for run in done:
        final = json.loads((run / "metrics.json").read_text())
        at1 = json.loads((run / "metrics_epoch1.json").read_text())
        assert (final["epochs"], final["epochs_trained"], at1["epochs"], at1["epochs_trained"]) == (2, 2, 1, 1)
        assert at1["best_epoch"] == 1 and final["best_epoch"] in (1, 2)
        assert at1["model"] == final["model"] == "net1"
        seen.add((final["optim"], final["lr"]))
    assert seen == {(o, lr) for o in ("adam", "rmsprop") for lr in (0.001, 0.0001)}


@pytest.mark.slow
def test_report_of_the_sweep_equals_the_metrics_files(tiny_sweep, tmp_path, capsys):
    out = tmp_path / "report"
    report_main([str(tiny_sweep), "--out", str(out)])
    printed = capsys.readouterr().out
    assert printed.count("failed: ") == 2 and "training diverged" in printed
    with open(out / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8  # 2 optimisers x 2 learning rates x epochs 1 and 2
    assert sorted((r["optim"], float(r["lr"]), int(r["epochs"])) for r in rows) == sorted(
        itertools.product(("adam", "rmsprop"), (0.0001, 0.001), (1, 2)))
    columns = {"acc": "acc", "precision": "precision_weighted", "recall": "recall_weighted", "f1": "f1_weighted",
               "f1_macro": "f1_macro"}
    for row in rows:
        name = "metrics.json" if row["epochs"] == "2" else "metrics_epoch1.json"
        saved = json.loads((tiny_sweep / row["run"] / name).read_text())
        for column, key in columns.items():
            assert float(row[column]) == pytest.approx(100 * saved[f"test/{key}"]), (row["run"], column)
        assert row["track_acc"] == "" and row["paper_acc"] == ""  # no lr 1e-4 row at 1 or 2 epochs
        assert int(row["epochs_trained"]) == saved["epochs_trained"]
    md = (out / "report.md").read_text()
    assert md.count("- failed: ") == 2
    for name in ("accuracy_grid.png", "training_curves.png", "best_confusion_matrix.png"):
        assert (out / name).stat().st_size > 5000, name


@pytest.mark.slow
def test_each_run_feeds_tensorboards_hparams_tab(tiny_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = next(r for r in run_dirs(tiny_sweep) if (r / "metrics.json").is_file())
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    assert "hp_metric" in acc.Tags()["scalars"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert acc.Scalars("hp_metric")[-1].value == pytest.approx(metrics["test/acc"])
    content = acc.PluginTagToContent("hparams")
    assert content, "no hparams plugin data"
    hparams = {}
    for blob in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(blob)
        if data.HasField("session_start_info"):
            hparams.update({k: v for k, v in data.session_start_info.hparams.items()})
    assert {"model", "optim", "lr", "epochs", "seed", "split"} <= hparams.keys()
    assert hparams["model"].string_value == "net1" and hparams["lr"].number_value == pytest.approx(metrics["lr"])


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_in_its_own_process(synth_root, tmp_path):
    sweep = tmp_path / "multirun"
    run_sweep(["hydra/launcher=submitit", "model=net1", "optim=adam,rmsprop", "debug=fdr", "data.image_size=32"],
              sweep, synth_root, tmp_path / "cache")
    runs = run_dirs(sweep)
    assert len(runs) == 2
    assert {json.loads((r / "metrics.json").read_text())["optim"] for r in runs} == {"adam", "rmsprop"}
    assert list((sweep / ".submitit").iterdir()), "no submitit job folders"


@pytest.mark.slow
def test_dataloader_workers_run_inside_joblib_jobs(synth_root, tmp_path):
    sweep = tmp_path / "multirun"
    run_sweep(["hydra/launcher=parallel", "model=net1", "optim=adam,rmsprop", "debug=fdr", "data.image_size=32",
               "data.loader=torch", "data.num_workers=2"], sweep, synth_root, tmp_path / "cache")
    runs = run_dirs(sweep)
    assert len(runs) == 2 and all((r / "metrics.json").is_file() for r in runs)
    assert not any((r / "failed.json").exists() for r in runs)


@pytest.mark.slow
def test_optuna_lr_preset_searches_log_uniform_learning_rates(synth_root, tmp_path):
    sweep = tmp_path / "optuna"
    run_sweep(["experiment=optuna_lr", "hydra.sweeper.n_trials=2", "model=net1", "debug=fdr", "data.image_size=32"],
              sweep, synth_root, tmp_path / "cache")
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert 1e-5 <= best["best_params"]["lr"] <= 1e-2 and 0.0 <= best["best_value"] <= 1.0
    lrs = [json.loads((r / "metrics.json").read_text())["lr"] for r in run_dirs(sweep)]
    assert len(lrs) == 2 and best["best_params"]["lr"] in lrs


def compose_hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_paper_table2_preset_sweeps_the_papers_grid():
    cfg = compose_hydra(["experiment=paper_table2"])
    assert cfg.epochs == 100 and list(cfg.test_at) == [50, 100] and cfg.data.split == "segment"
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert set(params["model"]) <= set(options("model")) and {"net1", "net2", "net3"} <= set(params["model"])
    assert params["optim"] == ["adam", "rmsprop"]
    assert sorted(map(float, params["lr"])) == [0.0001, 0.0005, 0.001, 0.01]
    assert params["seed"] == ["0", "1", "2"]  # repeated runs, pooled by the report
    assert len(list(itertools.product(*params.values()))) == 8 * 3 * len(params["model"])


def test_cv10_and_leakage_presets_sweep_folds_and_splits():
    cfg = compose_hydra(["experiment=cv10", "model=net5"])
    assert cfg.data.folds == 10 and cfg.model.name == "net5" and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert str(cfg.hydra.sweeper.params["data.fold"]) == "range(10)"
    cfg = compose_hydra(["experiment=leakage"])
    params = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    assert cfg.model.name == "net5" and cfg.lr == 1e-4 and cfg.model.early_stopping_patience == 7
    assert params == {"data.split": ["segment", "track", "filtered"], "seed": ["0", "1", "2"]}


def test_launcher_optuna_and_ddp_presets_compose():
    cfg = compose_hydra(["hydra/launcher=slurm"])
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.partition) == (1, 1, None)
    cfg = compose_hydra(["hydra/launcher=parallel"])
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    cfg = compose_hydra(["experiment=optuna_lr"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert str(sweeper.params.lr) == "tag(log, interval(1e-5, 1e-2))" and cfg.optimized_metric == "val/acc_best"
    cfg = compose_hydra(["trainer=ddp"])
    assert (cfg.trainer.strategy, cfg.trainer.devices) == ("ddp", 2)


def test_the_failure_summary_counts_only_this_sweeps_jobs(tmp_path):
    """A failed.json left by an earlier sweep does not count; one this sweep writes (or rewrites) does."""
    import time

    from omegaconf import OmegaConf

    from genre_cls.callbacks import SweepSummary

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    for job in ("0_net1", "1_net1", "2_net1"):
        (tmp_path / job).mkdir()
    (tmp_path / "0_net1" / "failed.json").write_text('{"error": "old"}')
    (tmp_path / "1_net1" / "failed.json").write_text('{"error": "old"}')
    summary = SweepSummary()
    summary.on_multirun_start(config)
    time.sleep(0.01)
    (tmp_path / "1_net1" / "failed.json").write_text('{"error": "new"}')
    (tmp_path / "2_net1" / "failed.json").write_text('{"error": "new"}')
    summary.on_multirun_end(config)
    assert SweepSummary.failed == [str(tmp_path / "1_net1"), str(tmp_path / "2_net1")]
    summary.on_multirun_start(config)  # the next sweep starts with nothing failed
    summary.on_multirun_end(config)
    assert SweepSummary.failed == []


@pytest.mark.slow
def test_a_search_whose_every_trial_fails_is_one_line(synth_root, tmp_path):
    """Every trial fails after its start (a callback raises): no traceback from Optuna's "No trials
    are completed yet", exit status 1, one line naming a failed.json."""
    env = {**os.environ, "GENRE_CLS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    sweep = tmp_path / "optuna"
    cmd = [sys.executable, "-m", "genre_cls.train", "experiment=optuna_lr", "hydra.sweeper.n_trials=2", "model=net1",
           "data.image_size=16", "model.arch_kwargs.hidden=8", "epochs=1", "+callbacks.boom._target_=test_robustness.Boom",
           f"data.root={synth_root}", *QUIET, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: every trial of the search failed, so there is no best one") and "/failed.json" in last
    assert len(list(sweep.glob("*/failed.json"))) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-m", "seed=1,2", "hydra.sweep.subdir=fixed"], "hydra.sweep.subdir=fixed is the same folder for every job"),
        (["experiment=optuna_lr", "hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials must be a whole number >= 1, got '0'"),
        (["experiment=optuna_lr", "hydra.sweeper.n_jobs=0"], "hydra.sweeper.n_jobs must be a whole number >= 1"),
        (["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs must be a whole number other than 0"),
        (["-m", "seed=1,2", "--cfg", "job"], "-m and --cfg cannot be used together: give one of them (--cfg job prints"),
        (["--cfg", "job", "--info"], "--cfg and --info cannot be used together: give one of them"),
        (["-m", "seed=1,2", "hydra.sweep.subdir=${hydra.job.num}"], None),
        (["-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=-1"], None),
    ],
)
def test_hydras_own_sweep_settings_are_checked_before_it_starts(argv, message):
    """Each would have had Hydra, Optuna or joblib end in a traceback or a misleading line, or (one
    subdir for all jobs) every job overwrite the one before."""
    from genre_cls.cmdline import check_sweep_settings
    from genre_cls.errors import UserError

    if message is None:
        check_sweep_settings(argv)
        return
    with pytest.raises(UserError) as info:
        check_sweep_settings(argv)
    assert str(info.value).startswith(message)


@pytest.mark.slow
def test_ctrl_c_in_a_sweep_says_how_to_resume_its_run_and_which_runs_never_started(synth_root, cache_dir, tmp_path):
    import signal

    sweep = tmp_path / "sweep"
    env = {**os.environ, "GENRE_CLS_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    cmd = [sys.executable, "-m", "genre_cls.train", "-m", "model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16",
           "epochs=2", "seed=1,2,3", f"data.root={synth_root}", *QUIET, f"hydra.sweep.dir={sweep}",
           "+callbacks.sig._target_=test_robustness.SignalAt", f"+callbacks.sig.signum={int(signal.SIGINT)}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: interrupted by SIGINT after 1 epochs (see {sweep}/0_net1/interrupted.json): resume with: ")
    assert f"ckpt_path={sweep}/0_net1/checkpoints/last.ckpt; this was run 1 of the sweep's 3, and 2 run(s) after it never " \
           f"started: seed=2; seed=3 (python -m genre_cls.report {sweep} lists what finished)" in last
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0_net1"]


def test_python_m_genre_cls_train_runs_the_importable_module(monkeypatch):
    """``python -m genre_cls.train`` hands Hydra ``genre_cls.train.main``, which launchers pickle by
    reference, not the ``__main__`` copy (pickled by value: its globals drag torch.classes along,
    which cannot be pickled; the submitit and joblib tests above run the whole path)."""
    import runpy

    import genre_cls.train as train_module

    called = []
    monkeypatch.setattr(train_module, "cli", lambda: called.append(True))
    runpy.run_module("genre_cls.train", run_name="__main__")
    assert called == [True]
