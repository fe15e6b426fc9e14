"""Precision by capability and trainer settings checked against this machine (genre_cls.hardware):
``trainer.precision=auto`` becomes what the device runs, an explicit precision, accelerator or
device count the machine cannot run is one line before any work. The machine's answers are
forced (monkeypatch), so every branch runs on any machine."""

from __future__ import annotations

import pytest
import torch

from genre_cls import hardware
from genre_cls.settings import validate
from genre_cls.errors import UserError

ONEDNN = "could not create a primitive descriptor for the LSTM forward propagation primitive"


@pytest.fixture
def no_bf16_cpu(monkeypatch):
    """A CPU whose oneDNN refuses bf16 LSTMs (AVX2-only AMD EPYCs), whatever this machine is."""
    monkeypatch.delenv(hardware.FORCE_NO_BF16, raising=False)
    real = hardware._cpu_probe
    monkeypatch.setattr(hardware, "_cpu_probe", lambda dtype, mixed: ONEDNN if dtype == "bfloat16" else real(dtype, mixed))


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.delenv(hardware.FORCE_NO_BF16, raising=False)
    monkeypatch.setattr(hardware, "_cpu_probe", lambda dtype, mixed: None)


@pytest.fixture
def cuda(monkeypatch):
    """Two CUDA GPUs (``bf16`` says whether they run bfloat16), on a machine with or without any."""

    def make(bf16: bool, count: int = 2) -> None:
        # The card decides, not a forcing variable left in the environment (CI may run with it set).
        monkeypatch.delenv(hardware.FORCE_NO_BF16, raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4" if not bf16 else "NVIDIA A100")
        monkeypatch.setattr(hardware, "_mps_available", lambda: False)
        monkeypatch.setattr(hardware, "_tpu_available", lambda: False)

    return make


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "_mps_available", lambda: False)
    monkeypatch.setattr(hardware, "_tpu_available", lambda: False)


# --------------------------------------------------------------------------- the probe


def test_the_cpu_probe_really_runs_an_lstm_step_and_reports_its_error(monkeypatch):
    hardware._cpu_probe.cache_clear()
    calls = []
    real_lstm = torch.nn.LSTM

    class FailingLSTM(real_lstm):
        def forward(self, *args, **kwargs):
            calls.append(torch.is_autocast_enabled("cpu"))
            raise RuntimeError(ONEDNN + "\nmore oneDNN detail")

    monkeypatch.setattr(torch.nn, "LSTM", FailingLSTM)
    try:
        assert hardware._cpu_probe("bfloat16", True) == ONEDNN  # the first line only
        assert calls == [True]  # under autocast
    finally:
        hardware._cpu_probe.cache_clear()  # the failing answer must not outlive the patch


def test_the_forcing_variable_says_no_bf16_on_every_device(monkeypatch, cuda):
    cuda(bf16=True)
    monkeypatch.setenv(hardware.FORCE_NO_BF16, "1")
    assert "GENRE_CLS_FORCE_NO_BF16=1" in hardware.cpu_bf16_problem()
    assert "GENRE_CLS_FORCE_NO_BF16=1" in hardware.cuda_bf16_problem()
    monkeypatch.setenv(hardware.FORCE_NO_BF16, "0")
    assert hardware.cuda_bf16_problem() is None


# --------------------------------------------------------------------------- auto


@pytest.mark.parametrize(
    "machine, accelerator, expected, why",
    [
        ("bf16_cpu", "cpu", "bf16-mixed", "this CPU runs bfloat16"),
        ("no_bf16_cpu", "cpu", "32-true", ONEDNN),
        ("cuda_bf16", "gpu", "bf16-mixed", "NVIDIA A100 runs bfloat16"),
        ("cuda_no_bf16", "gpu", "16-mixed", "Tesla T4 has no bfloat16 support"),
        ("cuda_no_bf16", "auto", "16-mixed", "fp16 mixed precision instead"),
        ("no_bf16_cpu_only", "auto", "32-true", ONEDNN),
    ],
)
def test_auto_precision_is_bf16_only_where_the_device_runs_it(request, cuda, machine, accelerator, expected, why):
    if machine.startswith("cuda"):
        cuda(bf16=machine == "cuda_bf16")
    else:
        request.getfixturevalue(machine.removesuffix("_only"))
        if machine.endswith("_only"):
            request.getfixturevalue("no_accelerator")
    kind, precision, reason = hardware.check_trainer(accelerator, 1, "auto")
    assert (kind, precision) == ("cpu" if "cpu" in machine else "cuda", expected)
    assert reason.startswith("trainer.precision=auto: ") and why in reason


def test_auto_on_the_cpu_gives_bf16_here_exactly_when_the_real_probe_says_so(monkeypatch):
    monkeypatch.delenv(hardware.FORCE_NO_BF16, raising=False)
    _, precision, _ = hardware.check_trainer("cpu", 1, "auto")
    assert precision == ("bf16-mixed" if hardware._cpu_probe("bfloat16", True) is None else "32-true")


# --------------------------------------------------------------------------- explicit values


@pytest.mark.parametrize("precision, full", [("bf16-mixed", "bf16-mixed"), ("bf16", "bf16-mixed"), (32, "32-true"), ("64-true", "64-true")])
def test_an_explicit_precision_the_device_runs_is_honoured(bf16_cpu, precision, full):
    assert hardware.check_trainer("cpu", 1, precision)[1:] == (full, f"trainer.precision={precision} as given")


@pytest.mark.parametrize(
    "machine, precision, message",
    [
        ("no_bf16_cpu", "bf16-mixed", f"trainer.precision=bf16-mixed cannot run here: this CPU cannot train in bfloat16 ({ONEDNN})"),
        ("no_bf16_cpu", "bf16-true", "this CPU cannot train in bfloat16"),
        ("no_bf16_cpu", "bf16", "use trainer.precision=auto (here: 32-true) or trainer.precision=32-true"),
        ("bf16_cpu", "16-mixed", "fp16 mixed precision (autocast) does not run on the CPU"),
        ("bf16_cpu", 16, "trainer.precision=16 cannot run here"),
    ],
)
def test_an_explicit_precision_the_cpu_cannot_run_is_one_line(request, machine, precision, message):
    request.getfixturevalue(machine)
    with pytest.raises(UserError) as err:
        hardware.check_trainer("cpu", 1, precision)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bf16_on_a_gpu_without_it_is_one_line_and_fp16_is_honoured(cuda):
    cuda(bf16=False)
    with pytest.raises(UserError, match=r"the GPU cannot train in bfloat16 \(Tesla T4 has no bfloat16 support\); use trainer.precision=auto \(here: 16-mixed\)"):
        hardware.check_trainer("gpu", 1, "bf16-mixed")
    assert hardware.check_trainer("gpu", 1, "16-mixed")[1] == "16-mixed"


# --------------------------------------------------------------------------- accelerators and devices


@pytest.mark.parametrize(
    "accelerator, message",
    [
        ("tpu", "trainer.accelerator=tpu but this machine has no TPU"),
        ("mps", "trainer.accelerator=mps but this machine has no Apple GPU (MPS)"),
        ("gpu", "trainer.accelerator=gpu but no CUDA GPU is visible: use trainer.accelerator=cpu (or auto)"),
        ("cuda", "trainer.accelerator=cuda but no CUDA GPU is visible"),
    ],
)
def test_an_accelerator_the_machine_lacks_is_one_line_whatever_the_precision(no_accelerator, accelerator, message):
    for precision in ("auto", "32-true"):
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            hardware.check_trainer(accelerator, 1, precision)


@pytest.mark.parametrize(
    "accelerator, devices, message",
    [
        ("cpu", 3, "trainer.devices=3 but this machine has 2 CPU cores: use at most trainer.devices=2 on the CPU"),
        ("cpu", -1, "trainer.devices=-1 means every GPU, but this run is on the CPU"),
        ("cpu", [0, 1], "trainer.devices=[0,1] names GPUs, but this run is on the CPU"),
        ("cpu", "0,1", "trainer.devices=0,1 names GPUs"),
        ("cpu", 0, "trainer.devices=0: give how many devices to use, at least 1"),
        ("gpu", 3, "trainer.devices=3 but this machine has 2 CUDA GPU(s): use at most trainer.devices=2"),
        ("gpu", [0, 3], "trainer.devices=[0,3] names GPU 3, but this machine has 2 (indices 0..1)"),
        ("auto", "1,2", "names GPU 2, but this machine has 2"),
    ],
)
def test_more_devices_than_the_machine_has_is_one_line(monkeypatch, cuda, bf16_cpu, accelerator, devices, message):
    cuda(bf16=True)
    monkeypatch.setattr(hardware, "cpu_cores", lambda: 2)
    with pytest.raises(UserError) as err:
        hardware.check_trainer(accelerator, devices, "32-true")
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("accelerator, devices", [("cpu", 2), ("cpu", "auto"), ("gpu", 2), ("gpu", -1), ("gpu", [1]), ("auto", "0,1"), ("gpu", "auto")])
def test_devices_the_machine_has_pass(monkeypatch, cuda, accelerator, devices):
    cuda(bf16=True)
    monkeypatch.setattr(hardware, "cpu_cores", lambda: 2)
    hardware.check_trainer(accelerator, devices, "32-true")


# --------------------------------------------------------------------------- in the training command


def test_validate_checks_the_trainer_against_this_machine(cfg_factory, no_bf16_cpu, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_cores", lambda: 2)
    cfg = cfg_factory(["trainer=ddp"])  # the factory pins it to the CPU; the preset says auto
    validate(cfg)
    cfg.trainer.precision = "bf16-mixed"
    with pytest.raises(UserError, match="this CPU cannot train in bfloat16"):
        validate(cfg)


def test_train_refuses_a_precision_the_cpu_cannot_run_before_touching_the_data(cfg_factory, monkeypatch, tmp_path):
    import genre_cls.train as train_mod

    monkeypatch.setenv(hardware.FORCE_NO_BF16, "1")
    monkeypatch.setattr(train_mod.hydra.utils, "instantiate", lambda *a, **k: pytest.fail("the data were prepared"))
    cfg = cfg_factory(["trainer.precision=bf16-mixed"], out=tmp_path / "run")
    with pytest.raises(UserError, match="GENRE_CLS_FORCE_NO_BF16=1 is set"):
        train_mod.train(cfg)
    assert not (tmp_path / "run").exists()
