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
