"""The multi-device and mixed-precision paths, as far as a CPU shows them: DDP over gloo
(``trainer=ddp trainer.accelerator=cpu trainer.devices=2``, with bf16 forced off: the path of
every CPU without it) and bf16 autocast at test time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genre_cls.hardware import FORCE_NO_BF16

REPO = Path(__file__).resolve().parents[1]


def run_ddp(model_args: list[str], root: Path, tmp_path: Path) -> tuple[Path, str]:
    """``python -m genre_cls.train trainer=ddp trainer.accelerator=cpu trainer.devices=2`` with
    ``model_args``, quiet, one epoch, bf16 forced off (the preset's precision=auto: 32-true on
    any CPU); its run folder and everything it printed, once it exited 0."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "GENRE_CLS_CACHE": str(tmp_path / "cache"), FORCE_NO_BF16: "1"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run(
        [sys.executable, "-m", "genre_cls.train", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
         *model_args, f"data.root={root}", "epochs=1", "data.progress=false", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "callbacks.last_checkpoint=null", f"hydra.run.dir={run}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return run, output


@pytest.mark.slow
def test_net6_with_ddp_on_two_cpu_processes_without_bf16_trains_the_cgan_once_and_tests_once(small_root, tmp_path):
    run, output = run_ddp(["model=net6", "cgan.domain=features", "cgan.epochs=1", "model.arch_kwargs.hidden=16"], small_root, tmp_path)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output  # two processes really trained
    # Rank 0 trained the CGAN before rank 1 started; rank 1 loaded it instead of training its own.
    assert output.count("reusing the trained CGAN generator") == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["cgan/reused"] is False and metrics["cgan/generated_segments"] == metrics["cgan/real_train_segments"] > 0
    assert metrics["epochs_trained"] == 1
    assert metrics["precision"] == "32-true"
    # One line says which precision and why, from rank 0 only.
    assert output.count("precision 32-true (trainer.precision=auto: this CPU cannot train in bfloat16 "
                        f"({FORCE_NO_BF16}=1 is set): 32-bit instead)") == 1
    assert 0.0 <= metrics["test/acc"] <= 1.0
    test_tracks = json.loads((run / "splits.json").read_text())["test"]
    # Tested once, on one device: every test segment counted exactly once.
    assert sum(map(sum, metrics["confusion_matrix"])) == 10 * len(test_tracks)
    assert sum(map(sum, metrics["test_track/confusion_matrix"])) == len(test_tracks)


def test_test_probabilities_under_bf16_autocast_are_float32(monkeypatch):
    import torch

    from genre_cls import hardware
    from genre_cls.systems import GenreClassifier

    monkeypatch.delenv(FORCE_NO_BF16, raising=False)
    if (why := hardware.cpu_bf16_problem()) is not None:
        pytest.skip(f"this CPU cannot run the LSTM in bfloat16 ({why}); a run here trains in 32-true")

    torch.manual_seed(0)
    system = GenreClassifier(arch="net5", arch_kwargs={"hidden": 8}).eval()
    x = torch.randn(6, 16, 33)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert system(x).dtype == torch.bfloat16  # the condition the cast is for
        system.on_test_epoch_start()
        system.test_step((x, torch.zeros(6, dtype=torch.long), torch.arange(6)), 0)
    probs = system._test_outputs[0][0]
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(6), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "rank, kwargs, cuda, expected",
    [
        (None, {"accelerator": "gpu", "devices": 1}, True, ("gpu", [0])),
        ("1", {"accelerator": "gpu", "devices": 2}, True, ("gpu", [1])),  # not GPU 0
        ("1", {"accelerator": "auto", "devices": [2, 3]}, True, ("gpu", [3])),
        ("1", {"accelerator": "cpu", "devices": 2}, True, ("cpu", 1)),
        ("1", {"accelerator": "auto", "devices": 2}, False, ("auto", 1)),
    ],
)
def test_each_rank_runs_the_cgan_on_one_device_of_its_own(monkeypatch, rank, kwargs, cuda, expected):
    import torch

    from genre_cls.systems.cgan_augment import cgan_device

    monkeypatch.delenv("SLURM_LOCALID", raising=False)
    if rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", rank)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert cgan_device(kwargs) == expected


@pytest.mark.slow
def test_mel_resnet_with_ddp_on_two_cpu_processes_turns_sync_batchnorm_off_and_tests_every_chunk_once(small_root, tmp_path):
    run, output = run_ddp(["model=mel_resnet", "model.arch_kwargs.width=4", "model.arch_kwargs.depth=2", "model.arch_kwargs.stem_pool=2",
                           "model.input.crops_per_track=1"], small_root, tmp_path)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output
    # The preset asks for SyncBatchNorm, which torch runs on GPUs only: said once, then off.
    assert output.count("sync_batchnorm off: torch's SyncBatchNorm needs GPUs") == 1
    metrics = json.loads((run / "metrics.json").read_text())
    test_tracks = json.loads((run / "splits.json").read_text())["test"]
    # Every 3 s chunk of every 30 s test track counted once (10 per track), and each track voted once.
    assert sum(map(sum, metrics["confusion_matrix"])) == 10 * len(test_tracks)
    assert sum(map(sum, metrics["test_track/confusion_matrix"])) == len(test_tracks)


@pytest.mark.slow
def test_musicnn_head_with_ddp_on_two_cpu_processes_tests_every_chunk_once(small_root, tmp_path):
    run, output = run_ddp(["model=musicnn_head", "model.input.max_chunks=2"], small_root, tmp_path)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output
    metrics = json.loads((run / "metrics.json").read_text())
    test_tracks = json.loads((run / "splits.json").read_text())["test"]
    # Both ranks read the one embedding cache; every chunk of every test track counted once.
    assert len(list((tmp_path / "cache" / "embeddings").glob("*.npz"))) == 1
    assert sum(map(sum, metrics["confusion_matrix"])) == 2 * len(test_tracks)
    assert sum(map(sum, metrics["test_track/confusion_matrix"])) == len(test_tracks)
