"""genre_cls/cmdline.py: command-line mistakes are one line before Hydra starts."""

from pathlib import Path

import pytest

from genre_cls.errors import UserError
from genre_cls.cmdline import check_overrides


def test_unknown_group_options_name_the_allowed_values():
    with pytest.raises(UserError, match="unknown model 'net9': choose one of mel_resnet, musicnn_finetune, musicnn_head, net1, net2, net3, net4"):
        check_overrides(["model=net9"])
    with pytest.raises(UserError, match="unknown optim 'sgd'"):
        check_overrides(["-m", "optim=adam,sgd"])
    check_overrides(["model=net1,net2", "optim=rmsprop", "lr=0.1", "hydra/launcher=joblib"])


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
    from genre_cls.cmdline import check_train_args

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    with pytest.raises(UserError) as info:
        check_train_args(argv)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "override, line",
    [
        ("hydra/launcher=nope", "In 'hydra/config': Could not find 'hydra/launcher/nope'; available options in "
                                "'hydra/launcher': basic, joblib, parallel, slurm"),
        ("hydra.job.chdir=maybe", "Error merging override hydra.job.chdir=maybe: Value 'maybe' is not a valid bool"),
    ],
)
def test_what_hydra_checks_itself_becomes_one_line(override, line):
    """hydra/... groups and hydra.* keys are left to Hydra, whose report is several paragraphs:
    the command prints the first line, the options it lists and the cause (test_cli.py runs one as
    a process)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from genre_cls.cmdline import hydra_error_line
    from genre_cls.conf import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"), pytest.raises(HydraException) as info:
        compose("train", overrides=[override], return_hydra_config=True)
    assert "\n" in str(info.value) or info.value.__cause__ is not None  # what Hydra says is more than the line
    text = hydra_error_line(info.value)
    assert text.startswith(line) and "\n" not in text, text
