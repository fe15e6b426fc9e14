"""genre_cls/bench: every mode's lines, and its mistakes (gpu-check: test_gpu_check.py; library:
test_bench_library.py)."""

import re

import pytest

from genre_cls.bench import main

LINE = re.compile(r"^(\w+): ours \d+\.\d{3} s, baseline \d+\.\d{3} s, ratio \d+\.\d{2}$")


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
