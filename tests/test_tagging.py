"""Tags with no training: ``predict pretrained=NAME`` as a table, JSON and a timeline, equal to the
Tagger's own probabilities, and its mistakes as one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR
from genre_cls.data.audio import load_audio
from genre_cls.errors import UserError
from genre_cls.models.musicnn import SAMPLE_RATE
from genre_cls.predict import run
from genre_cls.pretrained import WEIGHTS_DIR, pretrained
from genre_cls.pretrained.tagger import PATCH_SECONDS, Tagger

REPO = Path(__file__).resolve().parents[1]
PROVENANCE = json.loads((WEIGHTS_DIR / "musicnn.json").read_text())["models"]


def _cfg(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("predict", overrides=overrides)


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    """A 10 s, 44.1 kHz stereo song: a chord over a beat (decoded and resampled to 16 kHz for tagging)."""
    sr = 44100
    t = np.arange(10 * sr) / sr
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    beat = (np.sin(2 * np.pi * 2 * t) > 0.95) * np.random.default_rng(0).standard_normal(len(t))
    y = (0.3 * chord + 0.2 * beat).astype(np.float32)
    path = tmp_path_factory.mktemp("tags") / "My Song (live).wav"
    sf.write(path, np.stack([y, 0.5 * y], axis=1), sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def msd() -> Tagger:
    return Tagger("msd")


def _inputs(*paths) -> str:
    return "inputs=[" + ",".join(f'"{p}"' for p in paths) + "]"


def _json(capsys, overrides) -> dict:
    assert run(_cfg(overrides + ["format=json"])) == 0
    return json.loads(capsys.readouterr().out)


def _check_against_tagger(record: dict, tagger: Tagger, path: Path) -> None:
    """Every probability of the record (the file's and each patch's) is the Tagger's, by tag name."""
    expected = tagger(load_audio(path, sr=SAMPLE_RATE), SAMPLE_RATE)
    names = list(tagger.entry.tags)
    assert list(record["tags"]) == names
    np.testing.assert_allclose([record["tags"][t] for t in names], expected.probabilities, atol=1e-6)
    assert [t["tag"] for t in record["top"]] == [t for t, _ in expected.top(5)]
    assert len(record["patches"]) == len(expected.patch_probabilities)
    for patch, probs, (start, end) in zip(record["patches"], expected.patch_probabilities, expected.spans):
        np.testing.assert_allclose([patch["tags"][t] for t in names], probs, atol=1e-6)
        assert patch["start_s"] == pytest.approx(start, abs=1e-3) and patch["end_s"] == pytest.approx(end, abs=1e-3)
        assert patch["top"] == [names[i] for i in np.argsort(-probs, kind="stable")[:5]]


def test_json_gives_the_50_tags_by_name_equal_to_the_tagger(song, msd, capsys):
    doc = _json(capsys, ["pretrained=msd", _inputs(song)])
    assert doc["pretrained"] == "msd" and "Million Song Dataset" in doc["model"] and doc["errors"] == []
    assert doc["tags"] == PROVENANCE["msd"]["tags"] and len(doc["tags"]) == 50
    assert {"rock", "jazz", "Hip-Hop", "female vocalists"} <= set(doc["tags"])
    (record,) = doc["results"]
    assert record["file"] == str(song) and record["duration_s"] == pytest.approx(10.0, abs=1e-3)
    assert record["unit"] == f"{PATCH_SECONDS:g} s patch" and len(record["patches"]) == 3  # 10 s: 3 whole patches, 1 s left
    _check_against_tagger(record, msd, song)


@pytest.mark.parametrize("name", ["mtt", "msd_vgg"])
def test_the_other_taggers_name_their_own_tags(name, song, capsys):
    doc = _json(capsys, [f"pretrained={name}", _inputs(song)])
    assert doc["tags"] == PROVENANCE[name]["tags"]
    _check_against_tagger(doc["results"][0], Tagger(name), song)
    if name == "mtt":
        assert {"guitar", "classical", "techno"} <= set(doc["tags"]) and "Hip-Hop" not in doc["tags"]


def test_real_metal_clip_is_tagged_metal(gtzan_sample, msd, capsys):
    path = gtzan_sample / "genres_original" / "metal" / "metal.00000.wav"
    record = _json(capsys, ["pretrained=msd", _inputs(path)])["results"][0]
    assert record["top"][0]["tag"] == "metal" and len(record["patches"]) == 10
    assert {"heavy metal", "hard rock", "rock"} & {t["tag"] for t in record["top"]}
    _check_against_tagger(record, msd, path)


def test_table_names_the_top_tags_then_all_50_by_file(song, msd, capsys, tmp_path):
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.zeros(5 * 16000, np.float32), 16000)
    assert run(_cfg(["pretrained=msd", _inputs(song, quiet)])) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = msd(load_audio(song, sr=SAMPLE_RATE), SAMPLE_RATE)
    top = ", ".join(f"{t} {p:.3f}" for t, p in expected.top(5))
    assert lines[0] == f"{song} (10 s): {top}"
    assert lines[1].startswith(f"{quiet} (5 s): ") and lines[2] == ""
    assert lines[3].split() == ["tag", "My", "Song", "(live).wav", "quiet.wav"]
    rows = {line[:18].strip(): line[18:].split() for line in lines[4:]}
    assert len(lines) == 4 + 50 and set(rows) == set(msd.entry.tags)
    for tag, p in zip(msd.entry.tags, expected.probabilities):
        assert float(rows[tag][0]) == pytest.approx(p, abs=5e-4)


def test_plot_draws_one_tag_timeline_per_file(song, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "tags.png"
    again = tmp_path / "again.wav"
    shutil.copy(song, again)  # a second file (one path given twice is one file)
    assert run(_cfg(["pretrained=msd", _inputs(song, again), f"plot={out}"])) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] == 1200 and im.size[1] > 2 * 300


def test_timeline_figure_rows_are_the_top_tags_and_columns_the_patches(song, msd, capsys):
    from genre_cls.plots import tag_timeline_figure

    record = _json(capsys, ["pretrained=msd", _inputs(song)])["results"][0]
    fig = tag_timeline_figure(record, k=5)
    heat, bars = fig.axes
    assert [t.get_text() for t in heat.get_yticklabels()] == [t["tag"] for t in record["top"]]
    mesh = heat.collections[0].get_array().reshape(5, -1)
    np.testing.assert_allclose(mesh, [[p["tags"][t["tag"]] for p in record["patches"]] for t in record["top"]], atol=1e-6)
    np.testing.assert_allclose([b.get_width() for b in bars.patches], [t["probability"] for t in record["top"]], atol=1e-6)


def test_a_bad_file_is_an_error_line_and_the_others_are_tagged(song, tmp_path, capsys):
    notes = tmp_path / "notes.wav"
    notes.write_text("not audio\n")
    status = run(_cfg(["pretrained=msd", _inputs(notes, song, tmp_path / "missing.wav"), "format=json"]))
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert status == 1 and [r["file"] for r in doc["results"]] == [str(song)]
    assert [e["file"] for e in doc["errors"]] == [str(notes), str(tmp_path / "missing.wav")]
    assert [ln.startswith("error: ") for ln in err.splitlines()] == [True, True]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["pretrained=nope", "inputs=[a.wav]"], r"unknown pretrained=nope: .*msd, mtt, msd_vgg, mtt_vgg"),
        (["pretrained=msd", "ckpt=x.ckpt", "inputs=[a.wav]"], "give ckpt= .* or pretrained= .*, not both"),
        (["pretrained=msd"], "no input files given"),
        (["inputs=[a.wav]"], "no checkpoint given: .* or pretrained=msd"),
    ],
)
def test_command_mistakes_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        run(_cfg(overrides))


def test_damaged_weights_are_one_user_error(song, tmp_path, monkeypatch):
    import dataclasses

    import genre_cls.pretrained as registry

    damaged = tmp_path / "musicnn_msd.pt"
    data = bytearray(pretrained("msd").weights.read_bytes())
    data[-100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    entries = {**registry._registry(), "msd": dataclasses.replace(pretrained("msd"), weights=damaged)}
    monkeypatch.setattr(registry, "_registry", lambda: entries)
    with pytest.raises(UserError, match="damaged .*reinstall genre_cls") as exc:
        run(_cfg(["pretrained=msd", _inputs(song)]))
    assert "\n" not in str(exc.value)


@pytest.mark.slow
def test_cli_tags_a_file(song, tmp_path):
    """The command, as a process (an unknown tagger's one line is checked in this process above)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    good = subprocess.run([sys.executable, "-m", "genre_cls.predict", "pretrained=msd", _inputs(song)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[0].startswith(f"{song} (10 s): ") and len(good.stdout.splitlines()) == 3 + 50
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran
