"""genre_cls/bench/library.py: ``bench library`` (a folder through predict against a loop of
predict_file, memory on a long file, kill and resume) and its mistakes."""

import re

import pytest

from genre_cls.bench import main
from test_bench import LINE, one_error_line


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
