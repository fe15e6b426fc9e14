import subprocess
import sys

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
    with pytest.raises(UserError, match="unknown model 'net9': choose one of net1, net2, net3, net4"):
        check_overrides(["model=net9"])
    with pytest.raises(UserError, match="unknown optim 'sgd'"):
        check_overrides(["-m", "optim=adam,sgd"])
    check_overrides(["model=net1,net2", "optim=rmsprop", "lr=0.1", "hydra/launcher=joblib"])


@pytest.mark.parametrize("args, message", [(["model=net9"], "unknown model"), (["lr=-1"], "lr must be > 0")])
def test_cli_errors_are_one_line_without_traceback(args, message, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "genre_cls.train", *args, f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    err_lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert message in err_lines[-1] and err_lines[-1].startswith("error:")
