from pathlib import Path

import pytest

from genre_cls.config import check_overrides, validate
from genre_cls.errors import UserError


@pytest.mark.parametrize(
    "override, message",
    [
        ("lr=-0.001", "lr must be > 0"),
        ("lr=0", "lr must be > 0"),
        ("epochs=0", "epochs must be"),
        ("data.split=random", "track, segment, filtered"),
        ("ckpt_path=/no/such.ckpt", "does not exist"),
        ("ckpt_path=/", "is a folder: give the file <run dir>/checkpoints/last.ckpt"),
        ("test_at=50", "test_at must be a list"),
        ("test_at=[0,10]", "test_at must be a list"),
        ("cgan.domain=feature", "unknown cgan.domain"),
        ("optim=adam", None),
    ],
)
def test_bad_values_are_rejected_before_work(cfg_factory, override, message):
    cfg = cfg_factory([override])
    if message is None:
        validate(cfg)  # a valid config passes
        return
    with pytest.raises(UserError, match=message):
        validate(cfg)


def test_net4_is_rmsprop_only(cfg_factory):
    validate(cfg_factory(["model=net4"]))
    with pytest.raises(UserError, match="net4 is net3 trained with RMSprop"):
        validate(cfg_factory(["model=net4", "optim=adam"]))


def test_gpu_accelerator_without_cuda_is_a_clear_error(cfg_factory):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    cfg = cfg_factory(["trainer=gpu"])
    cfg.trainer.accelerator = "gpu"  # the factory pins tests to the CPU
    with pytest.raises(UserError, match="no CUDA GPU"):
        validate(cfg)


def test_a_resumed_run_writes_into_its_own_run_directory(tmp_path):
    from genre_cls.train import resume_dir

    ckpt = tmp_path / "runs" / "r1" / "checkpoints" / "last.ckpt"
    assert resume_dir(str(ckpt), "outputs/new") == str((tmp_path / "runs" / "r1").resolve())
    assert resume_dir(None, "outputs/new") == "outputs/new"
    assert resume_dir(str(tmp_path / "elsewhere.ckpt"), "outputs/new") == "outputs/new"


def test_misspelt_keys_are_one_line(capsys):
    from genre_cls.config import precompose

    with pytest.raises(UserError, match="Could not override 'epoch'.*spelling"):
        precompose(["epoch=5"])
    precompose(["-m", "model=net1,net5", "lr=0.1,0.01", "test_at=[1,2]"])
    with pytest.raises(UserError, match="cannot parse the override.*HOME"):
        precompose(["data.root=~/music"])


def test_missing_data_root_is_rejected(cfg_factory, tmp_path):
    cfg = cfg_factory([])
    cfg.data.root = str(tmp_path / "nowhere")
    with pytest.raises(UserError, match="data.root .* does not exist"):
        validate(cfg)


def test_unknown_group_options_name_the_allowed_values():
    with pytest.raises(UserError, match="unknown model 'net9': choose one of mel_resnet, net1, net2, net3, net4"):
        check_overrides(["model=net9"])
    with pytest.raises(UserError, match="unknown optim 'sgd'"):
        check_overrides(["-m", "optim=adam,sgd"])
    check_overrides(["model=net1,net2", "optim=rmsprop", "lr=0.1", "hydra/launcher=joblib"])


# --------------------------------------------------------------------------- every value, before any work


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.fractions=[0.7,0.3]", "data.fractions must be three numbers"),
        ("data.fractions=[0.5,0.1,0.1]", "sum to 1"),
        ("data.fractions=[0.9,-0.1,0.2]", "data.fractions must be three numbers (train > 0, val >= 0, test > 0) that sum to 1"),
        ("seed=-1", "seed must be a whole number in [0, 4294967295], got -1"),
        ("seed=1e20", "seed must be a whole number in [0, 4294967295], got 1e+20"),
        ("seed=abc", "seed must be a whole number"),
        ("data.min_seconds=abc", "data.min_seconds must be a finite number >= 0 and <= 30, got 'abc'"),
        ("lr=-1", "lr must be > 0, got -1 (the paper's values"),
        ("data.loader=bogus", "unknown data.loader 'bogus': choose one of memory, torch"),
        ("lr=inf", "lr must be a finite number > 0, got inf"),
        ("lr=nan", "lr must be a finite number > 0"),
        ("batch_size=2.5", "batch_size must be a whole number >= 1"),
        ("data.image_size=2", "data.image_size must be a whole number in [4, 1024]"),
        ("data.num_workers=-1", "data.num_workers must be a whole number in [0, "),
        ("data.pin_memory=maybe", "data.pin_memory must be true or false"),
        ("trainer.precision=17", "unknown trainer.precision 17: choose one of 32-true"),
        ("trainer.strategy=bogus", "unknown trainer.strategy 'bogus': choose one of auto, ddp"),
        ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches must be"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val must be >= 0 or null"),
        ("+trainer.foo=1", "trainer.foo is not a setting of Trainer"),
        ("+data.foo=1", "data.foo is not a setting of GenreDataModule"),
        ("model=net5", None),
        ("+model.arch_kwargs.dropout=1.5", "model.arch_kwargs.dropout must be >= 0 and < 1"),
        ("model.early_stopping_patience=-2", "model.early_stopping_patience must be"),
        ("model.keep_epoch=worst", "unknown model.keep_epoch 'worst': choose one of best, last"),
        ("data.fractions=[0.9,0.1,0.0]", "data.fractions must be three numbers (train > 0, val >= 0, test > 0)"),
        ("data.fractions=[0.8,0.0,0.2]", None),
        ("model.keep_epoch=last", None),
        ("cgan.betas=[0.5]", "cgan.betas must be a list of 2 values"),
        ("cgan.epochs=0", "cgan.epochs must be a whole number >= 1"),
        ("cgan.per_class=0", "cgan.per_class must be a whole number >= 1 or null"),
        ("cgan.waveform.generator_hidden=[512,-1]", "cgan.waveform.generator_hidden must be a list"),
        ("data.image_size=100000", "data.image_size must be a whole number in [4, 1024], got 100000"),
        ("data.num_workers=100000", "data.num_workers must be a whole number in [0, "),
        ("data.synthetic.tracks_per_genre=0", "data.synthetic.tracks_per_genre must be a whole number in [1, 1000]"),
        ("data.synthetic.tracks_per_genre=5000", "data.synthetic.tracks_per_genre must be a whole number in [1, 1000]"),
        ("optimized_metric=foo", "unknown optimized_metric 'foo': a run's metrics.json holds val/acc_best"),
        ("optimized_metric=test_track/acc", "unknown optimized_metric 'test_track/acc'"),  # net3 votes no tracks
        ("test_at=[100]", "test_at=[100] is after the last epoch (epochs=50)"),
        ("trainer.max_epochs=3", "trainer.max_epochs=3 differs from epochs=50"),
        ("trainer.min_epochs=51", "trainer.min_epochs=51 is more than epochs=50"),
        ("data.image_size=1024", None),
        ("test_at=[25,50]", None),
        ("optimized_metric=test/f1_macro", None),
        ("trainer.limit_train_batches=0.5", None),
        ("seed=4294967295", None),
        ("trainer.precision=64-true", None),
    ],
)
def test_every_settable_value_is_checked(cfg_factory, override, message):
    cfg = cfg_factory([override])
    if message is None:
        validate(cfg)
        return
    with pytest.raises(UserError) as err:
        validate(cfg)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_every_point_of_a_sweep_is_checked_before_it_starts():
    from genre_cls.config import check_train_args

    with pytest.raises(UserError, match=r"^sweep run 1 of 4 \(model=net1 lr=-1\): lr must be > 0, got -1"):
        check_train_args(["-m", "model=net1,net3", "lr=-1,0.1"])
    # A bad value anywhere, not only in the first point: a later value, the last run, a combination of two axes.
    with pytest.raises(UserError, match=r"^sweep run 2 of 4 \(model=net1 lr=-1\): lr must be > 0, got -1"):
        check_train_args(["-m", "model=net1,net3", "lr=0.1,-1"])
    with pytest.raises(UserError, match=r"^sweep run 3 of 3 \(seed=-3\): seed must be a whole number"):
        check_train_args(["-m", "seed=1,2,-3"])
    with pytest.raises(UserError, match=r"^sweep run 4 of 4 \(model=net4 optim=adam\): net4 is net3 trained with RMSprop"):
        check_train_args(["-m", "model=net1,net4", "optim=rmsprop,adam"])
    with pytest.raises(UserError, match=r"^sweep run 3 of 3 \(data.fold=2\): data.fold must be a whole number in 0..1"):
        check_train_args(["-m", "data.folds=2", "data.fold=range(3)"])
    check_train_args(["-m", "model=net1,net3", "lr=0.1,0.01", "seed=range(2)"])


def test_each_sweep_points_config_is_the_one_hydra_composes():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from genre_cls.config import CONF_DIR, sweep_configs, sweep_points

    points = sweep_points(["-m", "model=net1,net5", "optim=adam,rmsprop", "lr=0.1,${seed}", "+model.extra=1", "~data.seed",
                           "test_at=[1,2]", "hydra.sweep.dir=x"])
    assert len(points) == 8 and all("~data.seed" in p and "hydra.sweep.dir=x" not in p for p in points)
    configs = list(sweep_configs(points))
    assert configs[4][0] == "sweep run 5 of 8 (model=net5 optim=adam lr=0.1)"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for point, (_, cfg) in zip(points, configs):
            assert OmegaConf.to_container(cfg) == OmegaConf.to_container(compose("train", overrides=point)), point
    assert configs[5][1].lr == configs[5][1].seed and "seed" not in configs[5][1].data


def test_a_sweep_from_an_experiments_grid_is_checked_at_every_point():
    from genre_cls.config import check_train_args, sweep_points

    # experiment=cv10 sweeps data.fold over range(10) without -m; the command line narrows the grid.
    points = sweep_points(["experiment=cv10", "model=net5"])
    assert [p for p in points[3] if p.startswith("data.fold=")] == ["data.fold=3"] and len(points) == 10
    with pytest.raises(UserError, match=r"^sweep run 4 of 10 \(data.fold=3\): data.fold must be a whole number in 0..2"):
        check_train_args(["experiment=cv10", "model=net5", "data.folds=3"])
    grid = sweep_points(["-m", "experiment=paper_table2", "model=net1,net2", "lr=1e-4"])
    assert len(grid) == 2 * 2 * 3  # models x optimisers x seeds
    assert sweep_points(["-m", "experiment=optuna_lr", "model=net1"]) == [["experiment=optuna_lr", "model=net1"]]
    assert sweep_points(["lr=0.1", "hydra.run.dir=x"]) == [["lr=0.1"]]


# --------------------------------------------------------------------------- resume: the same run, the same folder


def _fake_last_ckpt(path, identity):
    import torch

    from genre_cls.config import RUN_KEY
    from genre_cls.systems.classifier import CHECKPOINT_FORMAT

    torch.save({"genre_cls": CHECKPOINT_FORMAT, "epoch": 1, "optimizer_states": [], RUN_KEY: identity,
                "hyper_parameters": {"model_name": identity["model"]}}, path)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ("seed=8", "belongs to a run with seed=7, not seed=8: resume with seed=7, or start a fresh run without ckpt_path="),
        ("optim=rmsprop", "belongs to a run with optim=adam, not optim=rmsprop"),
        ("data.split=segment", "belongs to a run with data.split=track, not data.split=segment"),
        ("data.fractions=[0.6,0.2,0.2]", "data.fractions=[0.7,0.1,0.2], not data.fractions=[0.6,0.2,0.2]"),
        ("data.root=OTHER", "belongs to a run with data.root="),
    ],
)
def test_resuming_with_another_run_definition_is_refused(cfg_factory, tmp_path, change, message):
    from genre_cls.config import run_identity

    ckpt = _fake_last_ckpt(tmp_path / "last.ckpt", run_identity(cfg_factory(["seed=7"])))
    validate(cfg_factory(["seed=7", f"ckpt_path={ckpt}"]))  # the same definition resumes
    other = tmp_path / "other_root"
    other.mkdir()
    cfg = cfg_factory(["seed=7", f"ckpt_path={ckpt}", change.replace("OTHER", str(other))])
    if change.startswith("data.root"):
        cfg.data.root = str(other)  # the factory pins data.root to the synthetic tree
    with pytest.raises(UserError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_resume_refuses_changed_data_and_keeps_the_original_splits(tmp_path):
    from types import SimpleNamespace

    from genre_cls.data.index import Track
    from genre_cls.train import check_resume_data, data_fingerprint, write_once

    files = []
    for i in range(3):
        f = tmp_path / f"blues.0000{i}.wav"
        f.write_bytes(b"x" * (10 + i))
        files.append(f)
    dm = SimpleNamespace(index=SimpleNamespace(tracks=[Track(f.stem, "blues", f) for f in files]))
    before = data_fingerprint(dm)
    ckpt = _fake_last_ckpt(tmp_path / "last.ckpt", {"model": "net3", "data.fingerprint": before})
    cfg = SimpleNamespace(ckpt_path=str(ckpt))
    check_resume_data(cfg, before, tmp_path)
    files[1].write_bytes(b"y" * 99)  # a file replaced by another
    after = data_fingerprint(dm)
    assert after != before
    with pytest.raises(UserError, match="was trained on other data"):
        check_resume_data(cfg, after, tmp_path)

    splits = tmp_path / "splits.json"
    write_once(splits, {"train": ["a"], "seed": 1}, resuming=False)
    stamp = splits.stat().st_mtime_ns
    write_once(splits, {"train": ["a"], "seed": 1}, resuming=True)  # the same: kept, not rewritten
    assert splits.stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="split the data differently"):
        write_once(splits, {"train": ["b"], "seed": 1}, resuming=True)


def test_a_symlinked_checkpoint_resumes_in_the_folder_named(tmp_path):
    from genre_cls.train import resume_dir, resume_subdir

    a = tmp_path / "runs" / "a" / "checkpoints"
    b = tmp_path / "runs" / "b" / "checkpoints"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "last.ckpt").write_bytes(b"ckpt")
    (b / "last.ckpt").symlink_to(a / "last.ckpt")
    assert resume_dir(str(b / "last.ckpt"), "new") == str(tmp_path / "runs" / "b")
    # Hydra keeps the run's own config: a resume of a run with .hydra/ saves its config beside it.
    assert resume_subdir(str(b / "last.ckpt")) == ".hydra"
    (tmp_path / "runs" / "a" / ".hydra").mkdir()
    (tmp_path / "runs" / "a" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    assert resume_subdir(str(a / "last.ckpt")).startswith(".hydra/resume-")
    assert resume_subdir(None) == ".hydra"


def test_a_text_file_as_checkpoint_is_one_clear_line(cfg_factory, tmp_path):
    from genre_cls.predict import load_classifier

    notes = tmp_path / "notes.ckpt"
    notes.write_text("these are my notes, not a checkpoint\n")
    with pytest.raises(UserError, match="is not a checkpoint: it is a text file") as err:
        validate(cfg_factory([f"ckpt_path={notes}"]))
    assert "101" not in str(err.value)
    with pytest.raises(UserError, match="is not a genre_cls checkpoint \\(it is a text file"):
        load_classifier(notes)


def test_a_run_rejected_before_work_leaves_no_folder_and_a_failed_one_says_why(cfg_factory, tmp_path):
    import json

    from genre_cls.train import record_failure

    fresh = tmp_path / "fresh"
    (fresh / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (fresh / ".hydra" / name).write_text("x: 1\n")
    (fresh / "train.log").write_text("")
    record_failure(cfg_factory([], out=fresh), UserError("no tracks"))
    assert not fresh.exists()

    started = tmp_path / "started"
    (started / "checkpoints").mkdir(parents=True)
    record_failure(cfg_factory([], out=started), UserError("the training loss became nan"))
    assert json.loads((started / "failed.json").read_text()) == {"error": "UserError: the training loss became nan"}

    resumed = tmp_path / "resumed"
    (resumed / ".hydra").mkdir(parents=True)
    record_failure(cfg_factory(["ckpt_path=x.ckpt"], out=resumed), UserError("other data"))
    assert resumed.exists() and not (resumed / "failed.json").exists()  # the original run is left alone


@pytest.mark.parametrize(
    "argv, message",
    [
        (["hydra.run.dir=/proc/genre_cls_nope"], "cannot write hydra.run.dir=/proc/genre_cls_nope"),
        (["lr=1e-3,1e-4"], "several values sweep only with -m"),
        (["+seeed=1"], "unknown key 'seeed' (added with +)"),
        (["data.root=README.md"], "is a file, not a folder"),
    ],
)
def test_more_command_line_mistakes_are_one_line(argv, message, monkeypatch):
    from genre_cls.config import check_train_args

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    with pytest.raises(UserError) as info:
        check_train_args(argv)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_run_dir_check_leaves_nothing_behind(tmp_path, monkeypatch):
    from genre_cls.config import check_run_dir

    monkeypatch.chdir(tmp_path)
    check_run_dir([f"hydra.run.dir={tmp_path}/a/b/c"])
    check_run_dir([])
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_run_dir([f"hydra.run.dir={tmp_path}/file/run"])


def test_worker_counts_are_bounded_by_the_cores(cfg_factory):
    import os

    cfg = cfg_factory([])
    cfg.data.feature_workers = 4 * os.cpu_count() + 1  # the factory pins it to 0
    with pytest.raises(UserError, match=rf"data.feature_workers must be a whole number in \[0, {4 * os.cpu_count()}\] or null"):
        validate(cfg)
    cfg.data.feature_workers = 4 * os.cpu_count()
    validate(cfg)


def test_optimized_metric_is_one_the_run_writes(cfg_factory, tmp_path):
    """Every name the check accepts is a number in a real run's metrics.json, and the optuna preset
    with an unknown one is refused before any trial runs."""
    import json

    from genre_cls.config import check_train_args, optimizable_metrics
    from genre_cls.train import train

    cfg = cfg_factory(["model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16", "epochs=1"], out=tmp_path / "r")
    train(cfg)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    names = optimizable_metrics(cfg)
    assert len(names) == len(set(names)) and "val/acc_best" in names
    assert [n for n in names if not isinstance(metrics.get(n), float)] == []
    assert "test_track/acc" in optimizable_metrics(cfg_factory(["model=net5"]))
    with pytest.raises(UserError, match="unknown optimized_metric 'foo'"):
        check_train_args(["experiment=optuna_lr", "optimized_metric=foo"])


def _trained_run(cfg_factory, out, epochs=2, extra=()):
    from genre_cls.train import train

    train(cfg_factory(["model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16", f"epochs={epochs}", *extra], out=out))
    return out / "checkpoints" / "last.ckpt"


def test_a_resume_with_fewer_epochs_than_trained_is_refused(cfg_factory, tmp_path):
    import json

    from genre_cls.config import epochs_done, load_checkpoint_state

    last = _trained_run(cfg_factory, tmp_path / "run")
    assert epochs_done(load_checkpoint_state(str(last))) == 2
    before = (tmp_path / "run" / "metrics.json").read_text()
    tiny = ["model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16", f"ckpt_path={last}"]
    with pytest.raises(UserError) as err:
        validate(cfg_factory([*tiny, "epochs=1"], out=tmp_path / "run"))
    assert str(err.value).startswith(f"ckpt_path '{last}' has already trained 2 epochs, more than epochs=1: resume with epochs=2")
    validate(cfg_factory([*tiny, "epochs=2"], out=tmp_path / "run"))  # as many: allowed
    assert json.loads(before)["epochs_trained"] == 2
    # test_at epochs the run passed without keeping their best checkpoint cannot be tested any more
    with pytest.raises(UserError, match=r"test_at=\[1\]: ckpt_path .* kept no best checkpoint up to epoch 1"):
        validate(cfg_factory([*tiny, "epochs=3", "test_at=[1]"], out=tmp_path / "run"))
    validate(cfg_factory([*tiny, "epochs=4", "test_at=[3]"], out=tmp_path / "run"))  # still ahead: fine


def test_a_resume_keeps_test_at_epochs_the_run_kept(cfg_factory, tmp_path):
    last = _trained_run(cfg_factory, tmp_path / "run", epochs=2, extra=["test_at=[1]"])
    assert (last.parent / "best_upto_epoch1.ckpt").is_file()
    validate(cfg_factory(["model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16", "epochs=3", "test_at=[1]",
                          f"ckpt_path={last}"], out=tmp_path / "run"))


def _listing(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_a_folder_holding_a_run_is_written_only_by_its_resume(tmp_path, monkeypatch):
    from genre_cls.config import check_run_dir

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.json").write_text("{}")
    before = _listing(run)
    with pytest.raises(UserError) as err:
        check_run_dir([f"hydra.run.dir={run}", "seed=2"])
    assert str(err.value).startswith(f"hydra.run.dir={run} holds another run's results (checkpoints, metrics.json): nothing was written")
    assert f"resume that run with ckpt_path={run}/checkpoints/last.ckpt" in str(err.value)
    assert _listing(run) == before
    check_run_dir([f"hydra.run.dir={run}", f"ckpt_path={run}/checkpoints/last.ckpt"])  # its own resume
    with pytest.raises(UserError, match="holds another run's results"):  # another run's resume
        check_run_dir([f"hydra.run.dir={run}", f"ckpt_path={tmp_path}/other/checkpoints/last.ckpt"])
    for name in ("failed.json", "events.out.tfevents.1.host.2.0", ".hydra", "metrics_epoch5.json"):
        other = tmp_path / name.replace(".", "_")
        other.mkdir()
        (other / name).write_text("")
        with pytest.raises(UserError, match="holds another run's results"):
            check_run_dir([f"hydra.run.dir={other}"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    check_run_dir([f"hydra.run.dir={empty}"])
    check_run_dir([f"hydra.run.dir={tmp_path / 'notes'}"])  # files no run writes are not in the way

    sweep = tmp_path / "sweep"
    (sweep / "0_net1" / ".hydra").mkdir(parents=True)
    with pytest.raises(UserError, match=f"hydra.sweep.dir={sweep} holds an earlier sweep's runs \\(0_net1/.hydra\\)"):
        check_run_dir(["-m", f"hydra.sweep.dir={sweep}"])


def test_track_metrics_are_optimisable_for_every_voted_kind_and_class_names_for_any_collection(cfg_factory):
    validate(cfg_factory(["model=mel_resnet", "optimized_metric=test_track/acc"]))
    validate(cfg_factory(["model=net5", "optimized_metric=test_track/f1/jazz"]))
    with pytest.raises(UserError, match="unknown optimized_metric 'test_track/acc'"):
        validate(cfg_factory(["model=net3", "optimized_metric=test_track/acc"]))
    # A collection's classes are known once it is indexed: any class name is accepted for it.
    validate(cfg_factory(["data=folders", "model=net5", "optimized_metric=test/f1/Bossa Nova"]))
    with pytest.raises(UserError, match="unknown optimized_metric 'test/f1/Bossa Nova'"):
        validate(cfg_factory(["model=net5", "optimized_metric=test/f1/Bossa Nova"]))


def test_a_collection_without_data_root_names_what_the_folder_must_hold(cfg_factory):
    cfg = cfg_factory(["data=fma"])
    cfg.data.root = None
    with pytest.raises(UserError, match=r"^data=fma needs data.root: the folder that holds FMA \(fma_metadata/tracks.csv"):
        validate(cfg)


@pytest.mark.parametrize(
    "was, now, message",
    [
        (["middle", 30.0], ["middle", 10.0], "with data.clip=middle data.clip_seconds=30.0, not data.clip=middle "
         "data.clip_seconds=10.0: resume with data.clip=middle data.clip_seconds=30.0, or start"),
        (["first", 30.0], None, "with data.clip=first data.clip_seconds=30.0, not data.clip_seconds=null: resume"),
        (None, ["middle", 30.0], "with data.clip_seconds=null, not data.clip=middle data.clip_seconds=30.0: resume "
         "with data.clip_seconds=null, or"),
    ],
)
def test_a_refused_clip_says_the_two_overrides_that_resume(was, now, message):
    # data.clip=[middle,30.0] would be no valid override: data.clip is a name, its length another key
    from genre_cls.config import check_identity

    with pytest.raises(UserError) as err:
        check_identity("last.ckpt", {"data.clip": was, "seed": 0}, {"data.clip": now, "seed": 0})
    assert message in str(err.value)
    assert "[" not in str(err.value)
