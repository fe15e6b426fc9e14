import re

import pytest

from genre_cls.bench import main

LINE = re.compile(r"^(\w+): ours \d+\.\d{3} s, baseline \d+\.\d{3} s, ratio \d+\.\d{2}$")


@pytest.mark.parametrize(
    "mode, args, names",
    [
        ("features", ["--tracks", "3", "--workers", "0"], ["features", "features_warm_cache"]),
        ("loading", ["--tracks", "30"], ["loading"]),
        ("steps", ["--steps", "2", "--batch-size", "2"], ["steps_net3", "steps_net5"]),
    ],
)
def test_each_bench_mode_prints_well_formed_lines(synth_root, capsys, mode, args, names):
    main([mode, "--root", str(synth_root), *args])
    lines = [l for l in capsys.readouterr().out.splitlines() if not l.startswith("#")]
    assert [LINE.match(l).group(1) for l in lines] == names, lines


def test_missing_root_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["features", "--root", str(tmp_path / "nope")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: --root")
