"""genre_cls/sweeps.py: the runs a command line makes and the config of each, every point checked
before the first one trains."""

import pytest

from genre_cls.errors import UserError


def test_misspelt_keys_are_one_line(capsys):
    from genre_cls.sweeps import precompose

    with pytest.raises(UserError, match="Could not override 'epoch'.*spelling"):
        precompose(["epoch=5"])
    precompose(["-m", "model=net1,net5", "lr=0.1,0.01", "test_at=[1,2]"])
    with pytest.raises(UserError, match="cannot parse the override.*HOME"):
        precompose(["data.root=~/music"])


def test_every_point_of_a_sweep_is_checked_before_it_starts():
    from genre_cls.cmdline import check_train_args

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

    from genre_cls.conf import CONF_DIR
    from genre_cls.sweeps import sweep_configs, sweep_points

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
    from genre_cls.cmdline import check_train_args
    from genre_cls.sweeps import sweep_points

    # experiment=cv10 sweeps data.fold over range(10) without -m; the command line narrows the grid.
    points = sweep_points(["experiment=cv10", "model=net5"])
    assert [p for p in points[3] if p.startswith("data.fold=")] == ["data.fold=3"] and len(points) == 10
    with pytest.raises(UserError, match=r"^sweep run 4 of 10 \(data.fold=3\): data.fold must be a whole number in 0..2"):
        check_train_args(["experiment=cv10", "model=net5", "data.folds=3"])
    grid = sweep_points(["-m", "experiment=paper_table2", "model=net1,net2", "lr=1e-4"])
    assert len(grid) == 2 * 2 * 3  # models x optimisers x seeds
    assert sweep_points(["-m", "experiment=optuna_lr", "model=net1"]) == [["experiment=optuna_lr", "model=net1"]]
    assert sweep_points(["lr=0.1", "hydra.run.dir=x"]) == [["lr=0.1"]]
