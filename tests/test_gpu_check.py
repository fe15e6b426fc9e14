"""genre_cls/bench/gpu_check.py: ``bench gpu-check`` on this machine's CPU (the GPU path with
the GPU preset's settings), its report of a failing check, and its refusal without a GPU."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genre_cls.bench import gpu_check as gpu_check_mod
from test_bench import one_error_line
from genre_cls.hardware import FORCE_NO_BF16

REPO = Path(__file__).resolve().parents[1]

CHECK = re.compile(r"^CHECK (\w+): (ok \(\d+\.\d s\)|FAIL .+)$")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
def test_gpu_check_on_cuda_without_a_gpu_says_how_to_run_it_here(capsys):
    assert "--device cpu" in one_error_line(capsys, ["gpu-check", "--device", "cuda"])


@pytest.mark.slow
def test_gpu_check_quick_on_a_cpu_without_bf16_passes_every_check_and_prints_only_its_lines(synth_root, tmp_path):
    # A fresh process (Lightning imported by the check itself, as from the shell), on the path of
    # a CPU without bf16 (forced, whatever this CPU has): the GPU preset's precision=auto is 32-true.
    env = {**os.environ, "PYTHONPATH": str(REPO), FORCE_NO_BF16: "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "genre_cls.bench", "gpu-check", "--device", "cpu", "--quick", "--root", str(synth_root),
         "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout.splitlines()
    assert proc.stderr == "", proc.stderr[-3000:]  # no Lightning tips, GPU/TPU lines or warnings
    assert out[0].startswith("# gpu-check on cpu, quick sizes")
    assert out[1] == f"# precision 32-true (trainer.precision=auto: this CPU cannot train in bfloat16 ({FORCE_NO_BF16}=1 is set): 32-bit instead)"
    checks = [CHECK.match(l) for l in out[2:-1]]
    assert all(checks), out  # nothing but CHECK lines between the header and the tally
    assert [m.group(1) for m in checks] == [
        "train_net1", "train_net2", "train_net3", "train_net4", "train_net5", "train_net6_waveform",
        "train_net6_features", "train_mel_resnet", "train_musicnn_finetune", "train_musicnn_head", "sweep", "report",
        "predict", "tags",
    ]
    assert all(m.group(2).startswith("ok") for m in checks), out
    assert out[-1] == "gpu-check: 14/14 ok" and proc.returncode == 0
    assert json.loads((tmp_path / "runs" / "net5" / "metrics.json").read_text())["precision"] == "32-true"
    assert len(list((tmp_path / "sweep").glob("*/metrics.json"))) == 4
    assert (tmp_path / "sweep" / "report.md").is_file()


def test_gpu_check_reports_a_failing_check_and_exits_1(synth_root, tmp_path, capsys, monkeypatch):
    def failing(*args):
        def check():
            raise gpu_check_mod.CheckFailed("forced")
        return check

    monkeypatch.setattr(gpu_check_mod, "_train_check", lambda name, *a: failing() if name == "net2" else (lambda: None))
    for name in ("_sweep_check", "_report_check", "_predict_check", "_tags_check"):
        monkeypatch.setattr(gpu_check_mod, name, lambda *a: (lambda: None))
    status = gpu_check_mod.gpu_check(device="cpu", quick=True, root=str(synth_root), out=str(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert [l for l in out if "FAIL" in l] == [f"CHECK train_net2: FAIL forced (log: {tmp_path / 'logs' / 'train_net2.log'})"]
    assert out[-1] == "gpu-check: 13/14 ok"
