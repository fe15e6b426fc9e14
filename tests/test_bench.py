import re

import pytest
import torch

from genre_cls import gpu_check as gpu_check_mod
from genre_cls.bench import main

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
    ],
)
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
def test_gpu_check_on_cuda_without_a_gpu_says_how_to_run_it_here(capsys):
    assert "--device cpu" in one_error_line(capsys, ["gpu-check", "--device", "cuda"])


def test_gpu_check_quick_on_the_cpu_passes_every_check(synth_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gpu-check", "--device", "cpu", "--quick", "--root", str(synth_root), "--out", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    checks = [CHECK.match(l) for l in out if l.startswith("CHECK ")]
    names = [m.group(1) for m in checks]
    assert names == [
        "train_net1", "train_net2", "train_net3", "train_net4", "train_net5", "train_net6_waveform",
        "train_net6_features", "sweep", "report", "predict",
    ]
    assert all(m.group(2).startswith("ok") for m in checks), out
    assert out[-1] == "gpu-check: 10/10 ok" and exc.value.code == 0
    assert len(list((tmp_path / "sweep").glob("*/metrics.json"))) == 4
    assert (tmp_path / "sweep" / "report.md").is_file()


def test_gpu_check_reports_a_failing_check_and_exits_1(synth_root, tmp_path, capsys, monkeypatch):
    def failing(*args):
        def check():
            raise gpu_check_mod.CheckFailed("forced")
        return check

    monkeypatch.setattr(gpu_check_mod, "_train_check", lambda name, *a: failing() if name == "net2" else (lambda: None))
    for name in ("_sweep_check", "_report_check", "_predict_check"):
        monkeypatch.setattr(gpu_check_mod, name, lambda *a: (lambda: None))
    status = gpu_check_mod.gpu_check(device="cpu", quick=True, root=str(synth_root), out=str(tmp_path))
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert [l for l in out if "FAIL" in l] == [f"CHECK train_net2: FAIL forced (log: {tmp_path / 'logs' / 'train_net2.log'})"]
    assert out[-1] == "gpu-check: 9/10 ok"
