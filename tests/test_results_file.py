"""results_file.py and ``predict out=``: one record per file, written as each file finishes, resumed
without predicting a recorded file again, refused when it is another checkpoint's."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_checkpoint
from genre_cls import GENRES
from genre_cls import predict as predict_module
from genre_cls.checkpoints import load_classifier
from genre_cls.data.synth.library_tree import make_library_tree
from genre_cls.errors import UserError
from genre_cls.predict import run_to_files
from genre_cls.results_file import CheckpointId, ResultsFile, csv_fields, file_state, results_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("results") / "lib"
    manifest = make_library_tree(root, tracks=14, seconds=4.0)
    from genre_cls.data.audio_files import find_audio_files

    return {"root": root, "manifest": manifest, "files": [str(p) for p in find_audio_files([root]).files]}


@pytest.fixture(scope="module")
def ckpt(tiny_ckpts) -> Path:
    return tiny_ckpts["features"]


@pytest.fixture(scope="module")
def model(ckpt):
    return load_classifier(ckpt)


def _run(model, ckpt, files, outs, capsys=None, workers=2) -> int:
    return run_to_files(model, str(ckpt), list(files), [Path(o) for o in outs], workers, 64, progress=False)


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _spy(monkeypatch) -> list[str]:
    """The files predict hands to predict_many, from now on."""
    seen: list[str] = []
    real = predict_module.predict_many

    def spy(model, files, *args, **kwargs):
        seen.extend(files)
        return real(model, files, *args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_many", spy)
    return seen


def test_each_file_gets_one_record_with_its_result_and_what_resuming_needs(model, ckpt, library, tmp_path, capsys):
    status = _run(model, ckpt, library["files"], [tmp_path / "r.jsonl", tmp_path / "r.csv"])
    assert status == 1  # three broken files
    err = capsys.readouterr().err
    assert "14 files in" in err and ": 11 predicted (3 flagged), 3 errors" in err
    records = _jsonl(tmp_path / "r.jsonl")
    by_name = {str(Path(r["file"]).relative_to(library["root"])): r for r in records}
    assert len(records) == len(by_name) == 14 and set(by_name) == {str(Path(f).relative_to(library["root"])) for f in library["files"]}
    sha = CheckpointId.of(ckpt, "x").sha256
    for name, r in by_name.items():
        assert r["checkpoint"] == str(ckpt) and r["checkpoint_sha256"] == sha and r["model"] == "tiny_net5"
        assert (r["size"], r["mtime_ns"]) == file_state(library["root"] / name)
        if name in library["manifest"]["broken"]:
            assert set(r) == {"file", "error", "size", "mtime_ns", "model", "checkpoint", "checkpoint_sha256"}
            continue
        assert list(r["probabilities"]) == list(GENRES) and r["genre"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["probability"] == r["probabilities"][r["genre"]] and r["unit"] == "3 s segment"
        expected = library["manifest"]["flagged"].get(name)
        assert list(r["flags"]) == ([expected] if expected else [])
        seconds = {"too_short": 1.0, "length_mismatch": 2.0}.get(expected, 4.0)
        assert r["duration_s"] == pytest.approx(seconds, abs=0.01)
        assert r["units"] == 10  # one 30 s window of 3 s segments, whatever the length
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert list(rows[0]) == csv_fields(GENRES) and len(rows) == 14
    for row in rows:
        r = next(x for x in records if x["file"] == row["file"])
        if "error" in r:
            assert row["error"] == r["error"] and row["genre"] == "" and row["p_rock"] == ""
        else:
            assert float(row["probability"]) == r["probability"] and float(row["p_jazz"]) == r["probabilities"]["jazz"]
            assert row["flags"] == ";".join(r["flags"]) and int(row["units"]) == 10 and row["error"] == ""
        assert int(row["size"]) == r["size"] and row["checkpoint_sha256"] == sha


def test_running_again_predicts_only_what_has_no_record_or_changed(model, ckpt, library, tmp_path, monkeypatch, capsys):
    files = library["files"]
    out = tmp_path / "r.jsonl"
    _run(model, ckpt, files[:6], [out])
    first = {r["file"]: r for r in _jsonl(out)}
    capsys.readouterr()
    seen = _spy(monkeypatch)
    _run(model, ckpt, files, [out])
    assert seen == files[6:]  # the first six were not predicted again
    assert "6 of 14 files already done" in capsys.readouterr().err
    records = _jsonl(out)
    assert len(records) == 14 and all(first[f] == r for f, r in ((r["file"], r) for r in records) if f in first)
    changed = files[1]
    st = os.stat(changed)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    seen.clear()
    _run(model, ckpt, files, [out])
    assert seen == [changed]
    assert "13 of 14 files already done (1 changed since, predicted again)" in capsys.readouterr().err
    records = _jsonl(out)
    assert len(records) == 14 and [r["mtime_ns"] for r in records if r["file"] == changed] == [st.st_mtime_ns + 5_000_000_000]
    seen.clear()
    _run(model, ckpt, files, [out, tmp_path / "r.csv"])  # a new .csv beside the complete .jsonl
    assert seen == files and len(_jsonl(out)) == 14  # the jsonl gets no second record of any file
    assert len(list(csv.DictReader(open(tmp_path / "r.csv")))) == 14


def test_a_line_cut_short_by_a_crash_is_dropped_and_its_file_predicted_again(model, ckpt, library, tmp_path, monkeypatch):
    files = library["files"][:4]
    out = tmp_path / "r.jsonl"
    _run(model, ckpt, files, [out])
    text = out.read_text()
    last = text.splitlines()[-1]
    out.write_text(text[: len(text) - len(last) // 2 - 1])  # the last record half written, no newline
    seen = _spy(monkeypatch)
    _run(model, ckpt, files, [out])
    assert seen == [json.loads(last)["file"]]
    assert sorted(r["file"] for r in _jsonl(out)) == sorted(files) and out.read_text().endswith("\n")


def test_another_checkpoints_file_or_a_file_that_is_not_ours_is_refused_before_any_work(model, ckpt, library, tmp_path,
                                                                                          monkeypatch):
    out = tmp_path / "r.jsonl"
    _run(model, ckpt, library["files"][:2], [out])
    other = tiny_checkpoint(tmp_path / "other", "waveform")
    seen = _spy(monkeypatch)
    before = out.read_bytes()
    with pytest.raises(UserError, match=r"holds the results of another checkpoint .*tiny_features.ckpt, sha256 [0-9a-f]{12}"):
        _run(load_classifier(other), other, library["files"], [out])
    (tmp_path / "notes.jsonl").write_text('{"a": 1}\n')
    with pytest.raises(UserError, match="is not a genre_cls results file .line 1 is no record of a file"):
        _run(model, ckpt, library["files"], [tmp_path / "notes.jsonl"])
    (tmp_path / "table.csv").write_text("name,value\nx,1\n")
    with pytest.raises(UserError, match="is not a genre_cls results file .its header is not file,genre,probability"):
        _run(model, ckpt, library["files"], [tmp_path / "table.csv"])
    assert seen == [] and out.read_bytes() == before and (tmp_path / "notes.jsonl").read_text() == '{"a": 1}\n'


def test_a_second_writer_of_one_results_file_is_refused(ckpt, tmp_path):
    checkpoint = CheckpointId.of(ckpt, "tiny")
    with ResultsFile(tmp_path / "r.jsonl", GENRES, checkpoint) as first:
        first.open([], [])
        with pytest.raises(UserError, match="is being written by another predict command now"):
            ResultsFile(tmp_path / "r.jsonl", GENRES, checkpoint).open([], [])
    with ResultsFile(tmp_path / "r.jsonl", GENRES, checkpoint) as again:  # released with the first
        assert again.open(["a.wav"], [(None, None)]) == [0]


@pytest.mark.parametrize("value, words", [
    ("{tmp}/no/such/folder/r.jsonl", "the folder of out=.* does not exist"),
    ("{tmp}/r.txt", "must be a .jsonl or .csv file"),
    ("{tmp}", "is a folder: name a file in it"),
])
def test_out_mistakes_are_one_line(tmp_path, value, words):
    with pytest.raises(UserError, match=words):
        results_path(value.format(tmp=tmp_path))


@pytest.mark.slow
def test_killed_halfway_and_run_again_each_file_is_predicted_once(ckpt, library, tmp_path):
    """The command itself, killed with SIGKILL once several files have a record, then started
    again: it says how many are done, predicts the rest, and every file ends with one record; the
    records written before the kill are kept byte for byte."""
    out = tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "genre_cls.predict", f"ckpt={ckpt}", f"inputs=[{library['root']}]", f"out={out}",
               "progress=false", "workers=1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300
    while first.poll() is None and time.monotonic() < deadline:
        if out.is_file() and out.read_bytes().count(b"\n") >= 4:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, first.stderr.read()
    kept = [line for line in out.read_bytes().split(b"\n")[:-1]]
    assert 4 <= len(kept) < 14
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 1  # the three broken files
    assert f"{len(kept)} of 14 files already done" in second.stderr
    lines = out.read_bytes().split(b"\n")[:-1]
    assert lines[: len(kept)] == kept
    names = [json.loads(line)["file"] for line in lines]
    assert len(names) == len(set(names)) == 14
