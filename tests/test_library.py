"""library.py: many files at once, decoded in worker processes and scored in batches, with the
results of the whole-file path (predict_waveform of load_audio) for every input kind."""

from __future__ import annotations

import os
import signal
import time

import multiprocessing
import numpy as np
import pytest
import soundfile as sf
import torch

from genre_cls import library
from genre_cls.checkpoints import load_classifier
from genre_cls.data.audio import SR, load_audio
from genre_cls.data.audio_stream import decode_blocks
from genre_cls.data.synth import render_clip
from genre_cls.library import PARTS_KEY, predict_many
from genre_cls.predict import predict_waveform

KINDS = ("features", "image", "waveform")


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[str, object]:
    """Files of several formats, rates and lengths, and files that cannot be predicted."""
    d = tmp_path_factory.mktemp("songs")
    rock = render_clip("rock", 0, (1,), 100.0, SR)
    files = {
        "rock30.wav": (rock[: 30 * SR], SR, {"subtype": "PCM_16"}),
        "stereo44k.flac": (render_clip("jazz", 0, (2,), 8.0, 44100, channels=2), 44100, {}),
        "long100.ogg": (rock, SR, {"subtype": "VORBIS"}),
        "clip1s.wav": (rock[:SR], SR, {"subtype": "PCM_16"}),
        "silence.wav": (np.zeros(10 * SR, np.float32), SR, {"subtype": "PCM_16"}),
        "song.mp3": (render_clip("pop", 0, (3,), 12.0, SR), SR, {"format": "MP3"}),
    }
    for name, (y, sr, kw) in files.items():
        with sf.SoundFile(d / name, "w", sr, 1 if y.ndim == 1 else y.shape[1], **kw) as f:
            for i in range(0, len(y), 1 << 16):  # libsndfile's Vorbis encoder fails on long single writes
                f.write(y[i : i + (1 << 16)])
    (d / "notes.wav").write_text("not audio\n")
    order = ["rock30.wav", "notes.wav", "stereo44k.flac", "long100.ogg", "missing.wav", "clip1s.wav", "silence.wav", "song.mp3"]
    return {"dir": d, "paths": [str(d / n) for n in order]}


@pytest.fixture(scope="module")
def models(tiny_ckpts, net5_run) -> dict:
    return {"net5": load_classifier(net5_run), **{k: load_classifier(p) for k, p in tiny_ckpts.items()}}


def _reference(model, path: str) -> dict | None:
    """The whole-file path: the file decoded at once and cut at once (None: it cannot be)."""
    try:
        y = load_audio(path, model.kind.sample_rate(model.input_params))
    except Exception:
        return None
    return predict_waveform(model, y, model.kind.sample_rate(model.input_params))


@pytest.mark.parametrize("name", ["net5", *KINDS])
def test_many_files_in_workers_equal_each_file_decoded_and_cut_whole(models, songs, name, monkeypatch):
    """Every kind: workers, pieces of a file (30 s here, so the 100 s file is cut in several) and
    batches of several files' units give the whole-file path's probabilities, units and flags."""
    monkeypatch.setattr(library, "PIECE_SECONDS", 30.0)
    model = models[name]
    rate = model.kind.sample_rate(model.input_params)
    long = next(p for p in songs["paths"] if "long100" in p)
    assert len(list(model.kind.pieces(decode_blocks(long, rate), model.input_params, int(30.0 * rate)))) >= 2
    got = dict(predict_many(model, songs["paths"], workers=2, batch=7, parts=True))
    assert sorted(got) == list(range(len(songs["paths"])))
    for i, path in enumerate(songs["paths"]):
        r, ref = got[i], _reference(model, path)
        assert r["file"] == path
        if ref is None:
            assert set(r) == {"file", "error"} and path in r["error"]
            continue
        tol = 1e-3 if path.endswith(".mp3") else 1e-5  # libmpg123 rounds other read sizes 1e-7 apart
        assert r["genre"] == ref["genre"] or abs(r["probability"] - ref["probability"]) < tol
        assert list(r["probabilities"]) == list(model.classes)
        assert max(abs(r["probabilities"][c] - ref["probabilities"][c]) for c in model.classes) < tol
        assert (r["duration_s"], r["unit"], r["units"], r["flags"]) == (ref["duration_s"], ref["unit"], ref["units"], ref["flags"])
        key = PARTS_KEY[model.kind.unit]
        strip = lambda parts: [{k: v for k, v in p.items() if k not in ("probabilities", "genre")} for p in parts]  # noqa: E731
        assert strip(r[key]) == strip(ref[key]) and len(r[key]) == r["units"]
    errors = {os.path.basename(got[i]["file"]): got[i]["error"] for i in got if "error" in got[i]}
    assert set(errors) == {"notes.wav", "missing.wav"}
    assert "it is a text file, not audio" in errors["notes.wav"] and "does not exist" in errors["missing.wav"]
    flags = {os.path.basename(got[i]["file"]): sorted(got[i]["flags"]) for i in got if got[i].get("flags")}
    unit_s = {"net5": 3, "features": 3, "waveform": 3, "image": 30}[name]
    expected = {"silence.wav": ["silent"] + (["too_short"] if unit_s == 30 else []), "clip1s.wav": ["too_short"]}
    if unit_s == 30:  # 8 s and 12 s are far shorter than a 30 s window too
        expected.update({"stereo44k.flac": ["too_short"], "song.mp3": ["too_short"]})
    assert flags == expected


def test_workers_or_none_and_any_batch_give_the_same_results(models, songs):
    model = models["net5"]
    a = dict(predict_many(model, songs["paths"], workers=0, batch=64))
    b = dict(predict_many(model, songs["paths"], workers=3, batch=1))
    assert [set(a[i]) for i in sorted(a)] == [set(b[i]) for i in sorted(b)]
    for i in a:
        if "error" in a[i]:
            assert a[i] == b[i]
        else:
            assert max(abs(a[i]["probabilities"][c] - b[i]["probabilities"][c]) for c in model.classes) < 1e-5
            assert "segments" not in a[i]  # parts only when asked for


def test_the_model_uses_one_thread_beside_its_workers_and_gets_its_threads_back(models, songs):
    model = models["features"]
    before = torch.get_num_threads()
    seen = []
    forward = model.forward

    def spy(x):
        seen.append(torch.get_num_threads())
        return forward(x)

    model.forward = spy
    try:
        list(predict_many(model, songs["paths"][:3], workers=os.cpu_count()))
    finally:
        del model.forward
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_a_progress_bar_counts_files_with_their_rate_and_time_left(models, songs, capfd):
    list(predict_many(models["features"], songs["paths"][:3], workers=1, progress=True))
    err = capfd.readouterr().err
    assert "predicting" in err and "3/3" in err and "files/s" in err


def test_a_worker_that_dies_costs_only_the_files_it_held(models, songs, tmp_path):
    """A decoder that crashes its process (here: the worker killed) is the error of the files that
    worker held; a new worker takes the rest, and every file gets its result."""
    paths = [songs["paths"][0]] * 1 + [str(tmp_path / f"copy{i}.wav") for i in range(7)]
    for p in paths[1:]:
        os.link(songs["paths"][0], p)
    results, killed = {}, []
    for i, r in predict_many(models["features"], paths, workers=1):
        results[i] = r
        if not killed:
            killed = [c.pid for c in multiprocessing.active_children()]
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
    assert killed and sorted(results) == list(range(len(paths)))
    lost = [r for r in results.values() if "error" in r]
    assert lost and all("stopped with signal 9" in r["error"] for r in lost)
    assert len(lost) < len(paths) - 1  # the replacement worker predicted the others
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_killed_at_any_moment_again_and_again_never_stop_the_run(models, songs, tmp_path, workers):
    """Each worker has its own pipes: a worker killed while it waits for a file, reads one or sends
    its units leaves nothing the others wait on (a queue shared by every worker could keep the
    lock it held, and its replacement waited for that lock forever). Every file still gets one
    result, a lost one names the signal, and no process is left."""
    import random

    paths = [str(tmp_path / f"copy{i}.wav") for i in range(16)]
    for p in paths:
        os.link(songs["paths"][0], p)
    rand, results, kills = random.Random(workers), {}, 0

    def hung(signum, frame):
        raise TimeoutError(f"predict_many still waits after 120 s: {len(results)} of {len(paths)} results, {kills} kills")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    try:
        for i, r in predict_many(models["features"], paths, workers=workers):
            assert i not in results
            results[i] = r
            children = multiprocessing.active_children()
            if kills < 4 and children:
                os.kill(rand.choice(children).pid, signal.SIGKILL)
                kills += 1
                time.sleep(rand.random() * 0.3)  # killed while deciding, waiting, or sending
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert kills >= 2 and sorted(results) == list(range(len(paths)))  # (a kill after each result, while workers live)
    assert all("stopped with signal 9" in r["error"] for r in results.values() if "error" in r)
    assert sum("error" not in r for r in results.values()) >= 1
    assert not multiprocessing.active_children()


def test_a_file_whose_units_cannot_be_cut_is_its_own_error(models, songs, monkeypatch):
    """One piece that the kind cannot cut (here: a cut that fails on 1 s of audio) fails its file
    alone, also when it was to be cut in one batch with other files' pieces."""
    kind = type(models["features"].kind)
    real_many = kind.cut_many

    def cut_many(self, waves, params, threads=None):
        if any(len(y) == SR for y in waves):
            raise ValueError("a cut that fails")
        return real_many(self, waves, params, threads=threads)

    monkeypatch.setattr(kind, "cut_many", cut_many)
    monkeypatch.setattr(kind, "cut", lambda self, y, params: cut_many(self, [y], params)[0])
    got = dict(predict_many(models["features"], songs["paths"], workers=1))
    errors = {os.path.basename(r["file"]): r["error"] for r in got.values() if "error" in r}
    assert set(errors) == {"notes.wav", "missing.wav", "clip1s.wav"}, errors
    assert errors["clip1s.wav"] == f"cannot score {songs['dir'] / 'clip1s.wav'}: cannot cut it into the model's units: a cut that fails"
    assert all("genre" in r for r in got.values() if os.path.basename(r["file"]) not in errors)
