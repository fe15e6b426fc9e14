"""genre_cls/settings.py: every value of a composed training config checked against its group's schema
(one line naming the key, what it accepts and what it got), then what only the whole config can say."""

import pytest

from genre_cls.errors import UserError
from genre_cls.settings import validate


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


def test_missing_data_root_is_rejected(cfg_factory, tmp_path):
    cfg = cfg_factory([])
    cfg.data.root = str(tmp_path / "nowhere")
    with pytest.raises(UserError, match="data.root .* does not exist"):
        validate(cfg)


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.fractions=[0.7,0.3]", "data.fractions must be three numbers"),
        ("data.fractions=[0.5,0.1,0.1]", "sum to 1"),
        ("data.fractions=[0.9,-0.1,0.2]", "data.fractions must be three numbers (train > 0, val >= 0, test > 0) that sum to 1"),
        ("data.fractions=[0.9,0.1,0.0]", "data.fractions must be three numbers (train > 0, val >= 0, test > 0)"),
        ("data.fractions=[0.8,0.0,0.2]", None),
        ("model.keep_epoch=worst", "model.keep_epoch"),
        ("model.keep_epoch=last", None),
        ("model=mel_resnet", None),
        ("model=mel_resnet model.arch_kwargs.time_pool=mean", "model.arch_kwargs.time_pool"),
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
        ("+model.arch_kwargs.dropout=1.5", "model.arch_kwargs.dropout is not a setting of Net2 and Net3"),  # net3 has none
        ("model=net5 model.arch_kwargs.dropout=1.5", "model.arch_kwargs.dropout must be >= 0 and < 1, got 1.5"),
        ("model.early_stopping_patience=-2", "model.early_stopping_patience must be"),
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
    cfg = cfg_factory(override.split())
    if message is None:
        validate(cfg)
        return
    with pytest.raises(UserError) as err:
        validate(cfg)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_worker_counts_are_bounded_by_the_cores(cfg_factory):
    import os

    cfg = cfg_factory([])
    cfg.data.workers = 4 * os.cpu_count() + 1  # the factory pins it to 0
    with pytest.raises(UserError, match=rf"data.workers must be a whole number in \[0, {4 * os.cpu_count()}\] or null"):
        validate(cfg)
    cfg.data.workers = 4 * os.cpu_count()
    validate(cfg)


@pytest.mark.slow
def test_optimized_metric_is_one_the_run_writes(cfg_factory, tmp_path):
    """Every name the check accepts is a number in a real run's metrics.json, and the optuna preset
    with an unknown one is refused before any trial runs."""
    import json

    from genre_cls.cmdline import check_train_args
    from genre_cls.settings import optimizable_metrics
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


def test_track_metrics_are_optimisable_for_every_voted_kind_and_class_names_for_any_collection(cfg_factory):
    validate(cfg_factory(["model=mel_resnet", "optimized_metric=test_track/acc"]))
    validate(cfg_factory(["model=net5", "optimized_metric=test_track/f1/jazz"]))
    with pytest.raises(UserError, match="unknown optimized_metric 'test_track/acc'"):
        validate(cfg_factory(["model=net3", "optimized_metric=test_track/acc"]))
    # A collection's classes are its index's labels (here the synthetic GTZAN tree read as folders has one:
    # genres_original, the only label folder with audio in it): a class it lacks is refused before any work.
    validate(cfg_factory(["data=folders", "model=net5", "optimized_metric=test/f1/genres_original"]))
    with pytest.raises(UserError, match="names the class 'Bossa Nova', which data=folders under .* does not have"):
        validate(cfg_factory(["data=folders", "model=net5", "optimized_metric=test/f1/Bossa Nova"]))
    with pytest.raises(UserError, match="unknown optimized_metric 'test/f1/Bossa Nova'"):
        validate(cfg_factory(["model=net5", "optimized_metric=test/f1/Bossa Nova"]))


def test_a_collection_without_data_root_names_what_the_folder_must_hold(cfg_factory):
    cfg = cfg_factory(["data=fma"])
    cfg.data.root = None
    with pytest.raises(UserError, match=r"^data=fma needs data.root: the folder that holds FMA \(fma_metadata/tracks.csv"):
        validate(cfg)


@pytest.mark.parametrize("override, why", [
    ("trainer.limit_train_batches=0", "the network would never train"),
    ("trainer.limit_train_batches=0.0", "the network would never train"),
    ("trainer.limit_test_batches=0", "the run would have no test metrics"),
    ("trainer.limit_test_batches=0.0", "the run would have no test metrics"),
])
def test_a_limit_that_makes_the_run_meaningless_is_refused_in_one_line(cfg_factory, override, why):
    with pytest.raises(UserError) as err:
        validate(cfg_factory(["model=net5", override]))
    assert str(err.value).startswith(f"{override}: {why}; give a fraction of the batches above 0")
    validate(cfg_factory(["model=net5", "trainer.limit_val_batches=0"]))  # no validation: handled, not refused


@pytest.fixture(scope="module")
def labelled_tree(tmp_path_factory):
    from genre_cls.data.datasets.folders import make_folder_tree

    return make_folder_tree(tmp_path_factory.mktemp("labels") / "music", tracks_per_label=3, seconds=2.0)


def test_a_metric_naming_a_class_the_data_does_not_have_is_refused_before_any_trial(cfg_factory, labelled_tree):
    from genre_cls.settings import check_metric_class

    def cfg(metric):
        c = cfg_factory(["model=net5", "data=folders"])
        c.data.root, c.optimized_metric = str(labelled_tree), metric
        return c

    with pytest.raises(UserError) as err:
        validate(cfg("test_track/f1/Nonexistent"))
    assert str(err.value).startswith(f"optimized_metric 'test_track/f1/Nonexistent' names the class 'Nonexistent', "
                                     f"which data=folders under {labelled_tree} does not have: its classes are "
                                     "'Classique (Baroque, Romantique)', 'Folk, Country', ")
    validate(cfg("test_track/f1/Rock #1"))  # a class the tree has
    # Once indexed, the classes are those that kept a usable file: the run checks again before it trains.
    with pytest.raises(UserError, match="names the class 'Rock #1'"):
        check_metric_class(cfg("test_track/f1/Rock #1"), ["jazz.fusion", "メタル"])


def test_a_search_on_the_best_validation_accuracy_of_runs_that_do_not_validate_is_refused(synth_root):
    from genre_cls.sweeps import check_sweep

    argv = ["experiment=optuna_lr", "model=net5", f"data.root={synth_root}", "trainer.limit_val_batches=0"]
    with pytest.raises(UserError) as err:
        check_sweep(argv)
    assert str(err.value).startswith("the search: optimized_metric=val/acc_best is the best validation accuracy, but this "
                                     "run does not validate")
    check_sweep([*argv, "optimized_metric=test_track/acc"])
    check_sweep(["-m", "model=net5", f"data.root={synth_root}", "trainer.limit_val_batches=0", "seed=1,2"])  # a grid


def test_a_search_on_the_best_validation_accuracy_of_a_model_trained_without_validation_is_refused(synth_root):
    """mel_resnet's config gives validation nothing (data.fractions=[0.8,0,0.2]): a search on
    val/acc_best is refused before any trial, and accepted once validation is back."""
    from genre_cls.sweeps import check_sweep

    argv = ["experiment=optuna_lr", "model=mel_resnet", f"data.root={synth_root}"]
    with pytest.raises(UserError) as err:
        check_sweep(argv)
    assert "does not validate (data.fractions=[0.8,0,0.2] gives validation nothing" in str(err.value)
    check_sweep([*argv, "data.fractions=[0.7,0.1,0.2]"])
    check_sweep([*argv, "data.split=filtered"])  # a fixed split brings its own validation tracks
