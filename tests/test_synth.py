"""The synthetic GTZAN generator: layout, formats, the corrupt wav, determinism, learnability."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from genre_cls import GENRES
from genre_cls.data.synth import (
    corrupt_track_id,
    generate,
    is_complete,
    png_path,
    wav_path,
)

N = 4  # tracks per genre: enough for a nearest-centroid check, small enough to be quick


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "gtzan", tracks_per_genre=N, seed=0, progress=False)


def files(root: Path, pattern: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.glob(pattern))


def test_kaggle_layout_and_names(tree):
    bad = corrupt_track_id(N)
    assert bad == f"jazz.{N - 1:05d}"
    assert corrupt_track_id(100) == "jazz.00054"  # the real Kaggle copy's broken track
    assert files(tree, "genres_original/*/*.wav") == sorted(
        f"genres_original/{g}/{g}.{i:05d}.wav" for g in GENRES for i in range(N)
    )
    assert files(tree, "images_original/*/*.png") == sorted(
        f"images_original/{g}/{g}{i:05d}.png" for g in GENRES for i in range(N) if f"{g}.{i:05d}" != bad
    )
    readme = (tree / "README.txt").read_text()
    assert "ynthetic" in readme and "seed=0" in readme and f"tracks_per_genre={N}" in readme


def test_wav_and_png_formats(tree):
    info = sf.info(str(wav_path(tree, "metal", 0)))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (22050, 1, "PCM_16", 30 * 22050)
    y, _ = sf.read(wav_path(tree, "classical", 1), dtype="float32")
    assert 0.2 < np.abs(y).max() <= 1.0 and np.std(y) > 0.01
    with Image.open(png_path(tree, "blues", 0)) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGBA", (432, 288))


def test_png_is_the_rendering_of_the_stored_wav(tree):
    from genre_cls.data.melimage import render_mel_png

    y, sr = sf.read(wav_path(tree, "reggae", 2), dtype="float32")
    with Image.open(png_path(tree, "reggae", 2)) as im:
        assert np.array_equal(np.asarray(im), np.asarray(render_mel_png(y, sr)))


def test_exactly_one_corrupt_wav_and_it_has_no_png(tree):
    unreadable = []
    for wav in sorted(tree.glob("genres_original/*/*.wav")):
        try:
            sf.info(str(wav))
        except Exception:  # soundfile raises several types for garbage
            unreadable.append(wav.stem)
    assert unreadable == [corrupt_track_id(N)]
    genre, index = unreadable[0].split(".")
    assert not png_path(tree, genre, int(index)).exists()
    # as large as a real clip, so only decoding (not the file size) gives it away
    assert wav_path(tree, genre, int(index)).stat().st_size >= 2 * 30 * 22050


def test_marker_and_skip_when_complete(tree):
    params = json.loads((tree / ".complete").read_text())
    assert params["tracks_per_genre"] == N and params["seed"] == 0
    assert is_complete(tree, tracks_per_genre=N, seed=0)
    assert is_complete(tree, tracks_per_genre=N, seed=0, progress=False, workers=3)  # run options don't count
    assert not is_complete(tree, tracks_per_genre=N, seed=1)
    assert not is_complete(tree, tracks_per_genre=N + 1, seed=0)
    assert not is_complete(tree.parent / "nowhere")
    wav = wav_path(tree, "pop", 0)
    before = wav.stat().st_mtime_ns
    assert generate(tree, tracks_per_genre=N, seed=0, progress=False) == tree
    assert wav.stat().st_mtime_ns == before


def short(root: Path, **kw) -> Path:
    kw = {"tracks_per_genre": 1, "duration": 4.0, "progress": False, "workers": 1, **kw}
    return generate(root, **kw)


def test_deterministic_and_independent_of_workers(tmp_path):
    a = short(tmp_path / "a", seed=3)
    b = short(tmp_path / "b", seed=3, workers=2)
    c = short(tmp_path / "c", seed=4)
    for rel in ("genres_original/rock/rock.00000.wav", "images_original/disco/disco00000.png"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
        assert (a / rel).read_bytes() != (c / rel).read_bytes()
    assert files(a, "**/*") == files(b, "**/*")
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files(a, "**/*.*"))


def test_an_unfinished_tree_is_made_again(tmp_path):
    root = short(tmp_path / "t", tracks_per_genre=2)
    # an interrupted run: the marker is missing, a file was never written
    (root / ".complete").unlink()
    png_path(root, "pop", 1).unlink()
    assert not is_complete(root, tracks_per_genre=2, duration=4.0)
    short(root, tracks_per_genre=2)
    assert png_path(root, "pop", 1).exists() and is_complete(root, tracks_per_genre=2, duration=4.0)
    # killed (kill -9) while it wrote a set with other parameters: still unfinished, so made again
    (root / ".complete").unlink()
    (root / ".generating").write_text(json.dumps({"tracks_per_genre": 5, "pid": 2**22 + 7}))
    short(root, tracks_per_genre=1)
    assert not wav_path(root, "pop", 1).exists() and is_complete(root, tracks_per_genre=1, duration=4.0)
    assert not (root / ".generating").exists()


def listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time: what "nothing touched" compares."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(
    "change, message",
    [
        (["--tracks-per-genre", "2"], "holds a synthetic set made with --tracks-per-genre 1 --seed 0 --duration 2: not replacing it"),
        (["--tracks-per-genre", "1", "--seed", "3"], "made with --tracks-per-genre 1 --seed 0 --duration 2: not replacing it"),
        (["--tracks-per-genre", "1", "--duration", "3"], "made with --tracks-per-genre 1 --seed 0 --duration 2"),
    ],
)
def test_a_set_made_with_other_settings_is_never_replaced(tmp_path, capsys, change, message):
    from genre_cls.data.synth import main

    root = generate(tmp_path / "set", tracks_per_genre=1, seed=0, duration=2.0, progress=False, workers=1)
    before = listing(root)
    with pytest.raises(SystemExit) as exit_:
        main([str(root), *change, "--quiet", "--workers", "1"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert listing(root) == before


def test_a_set_another_process_is_writing_and_a_foreign_readme_are_left_alone(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (busy / ".generating").write_text(json.dumps({"tracks_per_genre": 1, "pid": writer.pid}))
        before = listing(busy)
        with pytest.raises(FileExistsError, match=f"process {writer.pid} is generating a synthetic set in"):
            short(busy, tracks_per_genre=1)
        assert listing(busy) == before
    finally:
        writer.kill()
        writer.wait()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.txt").write_text("my notes")
    with pytest.raises(FileExistsError, match="README.txt that this generator did not write"):
        short(mine, tracks_per_genre=1)
    assert [p.name for p in mine.iterdir()] == ["README.txt"] and (mine / "README.txt").read_text() == "my notes"


@pytest.mark.parametrize("left", [[], ["genres_original"]])
def test_ctrl_c_in_an_existing_folder_removes_what_it_wrote_and_says_what_is_left(tmp_path, capsys, monkeypatch, left):
    import genre_cls.data.synth.gtzan_tree as synth

    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    written = []
    real = synth._write_track

    def write_then_interrupt(job):
        if len(written) == 5:
            raise KeyboardInterrupt
        written.append(real(job))
        return written[-1]

    monkeypatch.setattr(synth, "_write_track", write_then_interrupt)
    if left:  # removing fails: the message must name what stayed
        monkeypatch.setattr(synth, "_remove_partial", lambda out, created: list(left))
    with pytest.raises(SystemExit) as exit_:
        synth.main([str(out), "--tracks-per-genre", "2", "--duration", "2", "--workers", "1", "--quiet"])
    assert exit_.value.code == 130 and len(written) == 5
    (line,) = capsys.readouterr().err.strip().splitlines()
    if left:
        assert line.endswith("could not all be removed: genres_original are left; remove them, then run the same command again")
    else:
        assert line == f"error: interrupted: the partial synthetic set in {out} was removed; run the same command again"
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_train_and_the_index_refuse_a_set_still_being_generated(tmp_path, cfg_factory):
    from genre_cls.settings import validate
    from genre_cls.data.datasets.gtzan import index_gtzan
    from genre_cls.errors import DataRootError, UserError

    root = short(tmp_path / "set", tracks_per_genre=1)
    (root / ".generating").write_text("{}")
    cfg = cfg_factory(["model=net1"])
    cfg.data.root = str(root)
    with pytest.raises(UserError, match="is a synthetic set still being generated, or whose generation was stopped"):
        validate(cfg)
    with pytest.raises(DataRootError, match="still being generated"):
        index_gtzan(root)


def test_refuses_to_overwrite_a_foreign_tree(tmp_path):
    (tmp_path / "real" / "genres_original" / "blues").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        short(tmp_path / "real")


def test_cli(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "genre_cls.data.synth", str(out), "--tracks-per-genre", "1", "--duration", "2",
           "--seed", "5", "--workers", "1", "--quiet"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout and "10 tracks" in result.stdout
    assert is_complete(out, tracks_per_genre=1, seed=5, duration=2.0)
    assert sf.info(str(wav_path(out, "hiphop", 0))).frames == 2 * 22050


def test_genres_are_learnable_from_mean_mfccs(tree):
    """Nearest-centroid (leave one out) on per-track mean MFCCs is far above chance (10%)."""
    import librosa

    feats, labels = [], []
    for g in GENRES:
        for i in range(N):
            try:
                y, sr = sf.read(wav_path(tree, g, i), dtype="float32")
            except Exception:
                continue  # the corrupt one
            feats.append(librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20).mean(axis=1))
            labels.append(g)
    X, labels = np.array(feats), np.array(labels)
    hits = 0
    for j in range(len(X)):
        rest = np.arange(len(X)) != j
        centroids = {g: X[rest & (labels == g)].mean(axis=0) for g in GENRES}
        hits += min(centroids, key=lambda g: np.sum((centroids[g] - X[j]) ** 2)) == labels[j]
    assert hits / len(X) > 0.4


@pytest.mark.parametrize(
    "args, message",
    [
        (["/proc/genre_cls_synth", "--quiet"], "error: cannot write the synthetic set to /proc/genre_cls_synth: "),
        (["OUT", "--duration", "-5", "--quiet"], "error: duration must be between 1 and 600 seconds, got -5"),
        (["OUT", "--tracks-per-genre", "0", "--quiet"], "error: tracks per genre must be a whole number from 1 to 1000 (GTZAN has 100), got 0"),
        (["OUT", "--tracks-per-genre", "1001", "--quiet"], "error: tracks per genre must be a whole number from 1 to 1000"),
        (["OUT", "--workers", "100000", "--quiet"], "error: --workers must be between 0 and "),
        (["OUT", "--workers", "-1", "--quiet"], "error: --workers must be between 0 and "),
        (["OUT", "--seed", "-1", "--quiet"], "error: seed must be a whole number >= 0, got -1"),
        (["FILE", "--tracks-per-genre", "1", "--quiet"], "error: 'FILE' is a file: give a folder to write the synthetic set into"),
    ],
)
def test_cli_mistakes_are_one_line_and_leave_no_folder(tmp_path, capsys, args, message):
    from genre_cls.data.synth import main

    out, file = tmp_path / "out", tmp_path / "song.wav"
    file.write_bytes(b"RIFF")
    with pytest.raises(SystemExit) as exit_:
        main([{"OUT": str(out), "FILE": str(file)}.get(a, a) for a in args])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.replace("FILE", str(file))), lines
    assert not out.exists() and file.read_bytes() == b"RIFF"


def test_builds_left_by_dead_processes_are_removed(tmp_path):
    import os

    from genre_cls.data.synth import remove_stale_builds

    target = tmp_path / "gtzan-synth-n30-s0"
    dead = tmp_path / f"{target.name}.tmp{2**22 + 7}"  # above Linux's pid_max default: no such process
    mine = tmp_path / f"{target.name}.tmp{os.getpid()}"
    other = tmp_path / "gtzan-synth-n10-s0.tmp999999999"
    for folder in (dead, mine, other):
        (folder / "genres_original").mkdir(parents=True)
    remove_stale_builds(target)
    assert not dead.exists() and mine.exists() and other.exists()


def test_a_set_of_an_older_generator_is_not_replaced_either(tmp_path):
    root = short(tmp_path / "old", tracks_per_genre=1)
    marker = json.loads((root / ".complete").read_text())
    (root / ".complete").write_text(json.dumps({**marker, "synth_version": "0"}))
    before = listing(root)
    with pytest.raises(FileExistsError, match="holds a synthetic set made with an older version of this generator"):
        short(root, tracks_per_genre=1)
    assert listing(root) == before


def test_sigterm_removes_the_partial_set_and_exits_143(tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "new"
    proc = subprocess.Popen(
        [sys.executable, "-m", "genre_cls.data.synth", str(out), "--tracks-per-genre", "50", "--duration", "2",
         "--workers", "1", "--quiet"],
        cwd=Path(__file__).resolve().parents[1], stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("genres_original/*/*.wav")):
        assert proc.poll() is None and time.monotonic() < deadline, "no track written in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == f"error: interrupted: the partial synthetic set in {out} was removed; run the same command again"
    assert not out.exists()
