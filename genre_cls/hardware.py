"""What this machine can run: which accelerators it has, how many devices, which precisions.

A run's trainer settings are checked here before any work starts (:func:`check_trainer`), and
``trainer.precision=auto`` (the ``gpu`` and ``ddp`` presets) becomes a precision the device
runs (:func:`resolve_precision`): ``bf16-mixed`` where the device runs bfloat16, else
``16-mixed`` on a CUDA GPU and ``32-true`` on a CPU.

Whether a CPU runs bfloat16 is tried, not guessed from its model: a tiny LSTM and linear layer
take one step under bf16 autocast (oneDNN refuses bf16 LSTMs on CPUs without AVX512-BF16/AMX,
e.g. many AMD EPYCs: "could not create a primitive descriptor for the LSTM forward propagation
primitive"). ``GENRE_CLS_FORCE_NO_BF16=1`` makes every device say it has no bfloat16, so the
fallback path can be tested on any machine.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import torch

from genre_cls.errors import UserError
from genre_cls.schema import setting

FORCE_NO_BF16 = "GENRE_CLS_FORCE_NO_BF16"

# Lightning's short precision names and their full ones.
_CANONICAL = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}


def canonical_precision(value: Any) -> str:
    """``16`` -> ``16-mixed``, ``"bf16"`` -> ``bf16-mixed``: Lightning's full precision name."""
    text = str(value)
    return _CANONICAL.get(text, text)


def bf16_forced_off() -> bool:
    """Whether ``GENRE_CLS_FORCE_NO_BF16`` is set (to anything but ``""`` or ``0``)."""
    return os.environ.get(FORCE_NO_BF16, "") not in ("", "0")


@lru_cache(maxsize=None)
def _cpu_probe(dtype_name: str, mixed: bool) -> str | None:
    """Run one forward and backward step of a tiny LSTM + linear layer on the CPU in ``dtype``
    (under autocast when ``mixed``, else with the weights cast); the error's first line, or
    ``None`` when it ran and gave finite results."""
    dtype = getattr(torch, dtype_name)
    try:
        with torch.random.fork_rng(devices=[]):  # the probe must not move the run's random stream
            torch.manual_seed(0)
            lstm, linear = torch.nn.LSTM(8, 8, batch_first=True), torch.nn.Linear(8, 3)
            x = torch.randn(2, 4, 8)
            if mixed:
                with torch.autocast("cpu", dtype=dtype):
                    y = linear(lstm(x)[0][:, -1])
            else:
                lstm, linear = lstm.to(dtype), linear.to(dtype)
                y = linear(lstm(x.to(dtype))[0][:, -1])
            y.float().sum().backward()
        if y.dtype != dtype or not torch.isfinite(y.float()).all():
            return f"the step gave {y.dtype} results{'' if torch.isfinite(y.float()).all() else ' that are not finite'}"
    except Exception as exc:  # oneDNN's RuntimeError, a missing kernel's NotImplementedError
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return None


def cpu_bf16_problem() -> str | None:
    """Why this CPU cannot train in bfloat16 (``None`` when it can): the probe's error, or the
    forcing variable."""
    if bf16_forced_off():
        return f"{FORCE_NO_BF16}=1 is set"
    return _cpu_probe("bfloat16", True)


def cuda_bf16_problem() -> str | None:
    """Why the CUDA GPU cannot train in bfloat16 (``None`` when it can)."""
    if bf16_forced_off():
        return f"{FORCE_NO_BF16}=1 is set"
    if not torch.cuda.is_bf16_supported():
        return f"{torch.cuda.get_device_name()} has no bfloat16 support"
    return None


def _tpu_available() -> bool:
    if importlib.util.find_spec("torch_xla") is None:
        return False
    from lightning.pytorch.accelerators import XLAAccelerator

    return XLAAccelerator.is_available()


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def device_kind(accelerator: Any) -> str:
    """The device a run with ``trainer.accelerator=<accelerator>`` uses here: ``cuda``, ``cpu``,
    ``mps`` or ``tpu`` (``auto`` picks as Lightning does). An accelerator this machine lacks is
    one :class:`UserError`."""
    name = str(accelerator or "auto")
    if name == "auto":
        if _tpu_available():
            return "tpu"
        if _mps_available():
            return "mps"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"trainer.accelerator={name} but no CUDA GPU is visible: use trainer.accelerator=cpu (or auto)")
        return "cuda"
    if name == "mps" and not _mps_available():
        raise UserError("trainer.accelerator=mps but this machine has no Apple GPU (MPS): use trainer.accelerator=cpu (or auto)")
    if name == "tpu" and not _tpu_available():
        raise UserError("trainer.accelerator=tpu but this machine has no TPU (torch_xla finds none): use trainer.accelerator=cpu (or auto)")
    return name


def _device_list(devices: Any) -> list[int] | None:
    """GPU indices named by ``devices`` (``[0, 2]`` or ``"0,2"``); ``None`` for a count."""
    if isinstance(devices, str):
        return [int(d) for d in devices.split(",") if d.strip()] if "," in devices else None
    return None if isinstance(devices, int) else [int(d) for d in devices]


def check_devices(kind: str, devices: Any) -> None:
    """``trainer.devices`` must name devices this machine has for ``kind``: a count up to the
    GPUs (or CPU cores, one process each) there are, GPU indices that exist."""
    listed = _device_list(devices)
    count = None if listed is not None or str(devices) in ("auto", "-1") else int(str(devices))
    shown = str(devices) if isinstance(devices, (str, int)) else "[" + ",".join(map(str, listed or [])) + "]"
    if count is not None and count < 1:
        raise UserError(f"trainer.devices={shown}: give how many devices to use, at least 1 (or auto)")
    if kind == "cpu":
        if listed is not None or str(devices) == "-1":
            what = "means every GPU" if listed is None else "names GPUs"
            raise UserError(
                f"trainer.devices={shown} {what}, but this run is on the CPU: give a number of processes "
                f"(e.g. trainer.devices=2) or use a GPU"
            )
        if count is not None and count > cpu_cores():
            raise UserError(
                f"trainer.devices={count} but this machine has {cpu_cores()} CPU cores: use at most "
                f"trainer.devices={cpu_cores()} on the CPU"
            )
    elif kind == "cuda":
        have = torch.cuda.device_count()
        if count is not None and count > have:
            raise UserError(f"trainer.devices={count} but this machine has {have} CUDA GPU(s): use at most trainer.devices={have}")
        absent = sorted({i for i in listed or [] if i >= have})
        if absent:
            raise UserError(
                f"trainer.devices={shown} names GPU {', '.join(map(str, absent))}, but this machine has {have} "
                f"(indices 0..{have - 1}): name GPUs that exist"
            )
    elif kind == "mps" and count is not None and count > 1:
        raise UserError(f"trainer.devices={count} but an Apple GPU (MPS) is one device: use trainer.devices=1")


def precision_problem(kind: str, precision: str) -> str | None:
    """Why ``kind`` cannot train in ``precision`` (a full name), or ``None`` when it can."""
    if kind == "cpu":
        if precision == "16-mixed":
            # Lightning would quietly train in bf16-mixed instead: not what was asked.
            return "fp16 mixed precision (autocast) does not run on the CPU"
        if precision.startswith("bf16"):
            why = cpu_bf16_problem()
            if why is None and precision == "bf16-true":
                why = _cpu_probe("bfloat16", False)
            return None if why is None else f"this CPU cannot train in bfloat16 ({why})"
        if precision == "16-true":
            why = _cpu_probe("float16", False)
            return None if why is None else f"this CPU cannot train in float16 ({why})"
    if kind == "cuda" and precision.startswith("bf16"):
        why = cuda_bf16_problem()
        return None if why is None else f"the GPU cannot train in bfloat16 ({why})"
    return None


def choose_precision(kind: str) -> tuple[str, str]:
    """The precision ``trainer.precision=auto`` means on ``kind``, and why."""
    if kind == "cuda":
        why = cuda_bf16_problem()
        if why is None:
            return "bf16-mixed", f"{torch.cuda.get_device_name()} runs bfloat16"
        return "16-mixed", f"no bfloat16 on the GPU ({why}): fp16 mixed precision instead"
    if kind == "cpu":
        why = cpu_bf16_problem()
        if why is None:
            return "bf16-mixed", "this CPU runs bfloat16 (checked with a small LSTM step)"
        return "32-true", f"this CPU cannot train in bfloat16 ({why}): 32-bit instead"
    return "32-true", f"mixed precision is chosen automatically only on CUDA GPUs and CPUs, not on {kind}"


def check_trainer(accelerator: Any, devices: Any, precision: Any) -> tuple[str, str, str]:
    """Check the trainer's accelerator, devices and precision against this machine: a setting
    it cannot run is one :class:`UserError`. Returns ``(device kind, precision, why)``, with
    ``auto`` resolved to the precision the run will use."""
    kind = device_kind(accelerator)
    check_devices(kind, devices if devices is not None else 1)
    if str(precision) == "auto":
        chosen, why = choose_precision(kind)
        return kind, chosen, f"trainer.precision=auto: {why}"
    full = canonical_precision(precision)
    problem = precision_problem(kind, full)
    if problem is not None:
        fallback, _ = choose_precision(kind)
        raise UserError(
            f"trainer.precision={precision} cannot run here: {problem}; use trainer.precision=auto "
            f"(here: {fallback}) or trainer.precision=32-true"
        )
    return kind, full, f"trainer.precision={precision} as given"


# Lightning's precision names (lightning.fabric.connector._PRECISION_INPUT) and their short forms;
# auto: the best one this machine runs (choose_precision).
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "32", "16", "bf16", "64", 32, 16, 64, "auto")
_FRACTION_OR_COUNT = ({"kind": float, "le": 1.0}, {"kind": int})


def _strategies() -> list[str]:
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


@dataclass
class TrainerSettings:
    """The ``trainer`` group (``conf/trainer/*.yaml``): arguments of Lightning's ``Trainer``; what
    this machine runs of them is checked by :func:`check_trainer`. Keys not listed here must be
    ``Trainer`` arguments."""

    __extra__ = "lightning.pytorch.Trainer"
    __owner__ = "Trainer"
    max_epochs: int = setting(50, ge=1)
    min_epochs: Optional[int] = setting(None, ge=0)
    accelerator: str = setting("auto", choices=("auto", "cpu", "gpu", "cuda", "mps", "tpu"))
    devices: Any = setting(1, alternatives=(
        {"kind": int, "ge": 1}, {"choices": (-1, "auto")}, {"kind": list[int], "item": {"ge": 0}},
        {"expect": "a text like '0,1'", "ok": lambda v: isinstance(v, str) and re.fullmatch(r"\d+(,\d+)*,?", v) is not None},
    ))
    num_nodes: int = setting(1, ge=1)
    strategy: str = setting("auto", choices=_strategies)
    precision: Any = setting("32-true", choices=PRECISIONS)
    log_every_n_steps: int = setting(50, ge=1)
    deterministic: Any = setting(None, kind=bool, null=True, also=("warn",))
    benchmark: Optional[bool] = setting(None)
    enable_progress_bar: bool = setting(True)
    enable_model_summary: bool = setting(True)
    fast_dev_run: Any = setting(False, alternatives=({"kind": bool}, {"kind": int}))
    overfit_batches: Any = setting(0.0, alternatives=_FRACTION_OR_COUNT)
    limit_train_batches: Any = setting(None, null=True, alternatives=_FRACTION_OR_COUNT)
    limit_val_batches: Any = setting(None, null=True, alternatives=_FRACTION_OR_COUNT)
    limit_test_batches: Any = setting(None, null=True, alternatives=_FRACTION_OR_COUNT)
    gradient_clip_val: Optional[float] = setting(None, ge=0.0)
    sync_batchnorm: bool = setting(False)
    check_val_every_n_epoch: Optional[int] = setting(1, ge=1)
    accumulate_grad_batches: int = setting(1, ge=1)
