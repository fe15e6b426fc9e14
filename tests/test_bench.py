import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genre_cls.bench import gpu_check as gpu_check_mod
from genre_cls.bench import main
from genre_cls.hardware import FORCE_NO_BF16

REPO = Path(__file__).resolve().parents[1]

LINE = re.compile(r"^(\w+): ours \d+\.\d{3} s, baseline \d+\.\d{3} s, ratio \d+\.\d{2}$")
CHECK = re.compile(r"^CHECK (\w+): (ok \(\d+\.\d s\)|FAIL .+)$")


@pytest.mark.parametrize(
    "mode, args, names",
    [
        ("features", ["--tracks", "3", "--workers", "0"], ["features", "features_warm_cache"]),
        ("loading", ["--tracks", "30"], ["loading"]),
        ("steps", ["--steps", "2", "--warmup", "0", "--batch-size", "2"], ["steps_net3", "steps_net5"]),
        ("render", ["--tracks", "2", "--workers", "0"], ["render"]),
        ("frontend", [], ["frontend"]),
        ("steps-resnet", ["--steps", "1", "--warmup", "0", "--batch-size", "2"], ["steps_resnet"]),
        ("extract", ["--tracks", "4", "--workers", "2"], ["extract_local", "extract_ray"]),
        ("embeddings", ["--tracks", "2", "--workers", "2"], ["embeddings"]),
        ("head", ["--tracks", "3"], ["head"]),
    ],
)
@pytest.mark.slow
def test_each_bench_mode_prints_well_formed_lines(synth_root, capsys, mode, args, names):
    main([mode, "--root", str(synth_root), *args])
    lines = [l for l in capsys.readouterr().out.splitlines() if not l.startswith("#")]
    assert [LINE.match(l).group(1) for l in lines] == names, lines


def one_error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_root_is_one_clear_error(tmp_path, capsys):
    assert one_error_line(capsys, ["features", "--root", str(tmp_path / "nope")]).startswith("error: --root")


@pytest.mark.parametrize("mode", ["features", "loading", "render"])
def test_empty_root_is_one_error_line(tmp_path, capsys, mode):
    assert "no GTZAN tracks under" in one_error_line(capsys, [mode, "--root", str(tmp_path)])


def test_root_without_audio_and_bad_arguments_are_one_error_line(synth_root, tmp_path, capsys):
    (tmp_path / "images_original").symlink_to(synth_root / "images_original")
    assert "holds no usable audio files" in one_error_line(capsys, ["render", "--root", str(tmp_path)])
    assert "--tracks" in one_error_line(capsys, ["render", "--tracks", "0"])
    assert "invalid choice" in one_error_line(capsys, ["gpu-chek"])


def test_sizes_beyond_the_machine_or_the_synthetic_set_are_one_line_before_work(capsys, monkeypatch):
    import os

    import genre_cls.bench.speed as bench

    assert one_error_line(capsys, ["features", "--tracks", "10001"]).startswith(
        "error: --tracks 10001 is more than the synthetic set holds (10000 at most)")
    assert one_error_line(capsys, ["features", "--workers", str(4 * os.cpu_count() + 1)]).startswith(
        f"error: --workers must be between 0 (in this process) and {4 * os.cpu_count()} (4 per core)")
    monkeypatch.setattr(bench, "available_memory", lambda: 10**9)  # 1 GB free
    line = one_error_line(capsys, ["steps", "--steps", "100", "--warmup", "0", "--batch-size", "128"])
    assert line == ("error: --steps 100 x --batch-size 128 need 1.3 GB of data in memory but 1.0 GB are free: "
                    "use fewer steps or a smaller batch")


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


@pytest.mark.slow
def test_library_measures_folder_prediction_memory_and_the_resume(tiny_ckpts, tmp_path, capsys):
    from genre_cls.data.synth.library_tree import make_library_tree

    make_library_tree(tmp_path / "lib", tracks=10, seconds=3.0)
    main(["library", "--root", str(tmp_path / "lib"), "--ckpt", str(tiny_ckpts["features"]), "--long-minutes", "0.5",
          "--workers", "1"])
    out = capsys.readouterr().out.splitlines()
    assert [LINE.match(l).group(1) for l in out if not l.startswith("#")] == ["library"]
    assert any(re.match(r"# decoding only: \d+\.\d{3} s .* the model only: \d+\.\d{3} s \(\d+ units", l) for l in out)
    assert any(re.match(r"# memory on a 0.5-minute file .* raised the peak by \d+ MB; decoded whole .* by \d+ MB", l) for l in out)
    resume = next(l for l in out if l.startswith("# kill and resume"))
    assert resume.startswith("# kill and resume: ok:") and ": 10 records, 0 duplicates, 0 of the first" in resume


def test_library_mistakes_are_one_error_line(tmp_path, capsys):
    assert "--ckpt" in one_error_line(capsys, ["library", "--ckpt", str(tmp_path / "nope.ckpt")])
    assert "--tracks must be at least 7" in one_error_line(capsys, ["library", "--tracks", "3"])
    assert "--long-minutes" in one_error_line(capsys, ["library", "--long-minutes", "0"])
