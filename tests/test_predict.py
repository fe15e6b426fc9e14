"""predict: anyone's audio through a trained checkpoint, as a table or JSON, and clear errors."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR, make_cfg
from genre_cls import GENRES
from genre_cls.errors import UserError
from genre_cls.data.audio import SR, load_audio
from genre_cls.predict import check_args, load_classifier, predict_file, predict_files, run
from genre_cls.systems.classifier import CHECKPOINT_FORMAT
from genre_cls.train import train

REPO = Path(__file__).resolve().parents[1]
HAS_NET5 = (Path(CONF_DIR) / "model" / "net5.yaml").is_file()
needs_net5 = pytest.mark.skipif(not HAS_NET5, reason="conf/model/net5.yaml not there yet")


def _train(overrides, out, synth_root, cache_dir) -> Path:
    train(make_cfg(overrides, out, synth_root, cache_dir))
    return out / "checkpoints"


NET1_IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def net1_ckpts(synth_root, cache_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict") / "net1"
    # 64 x 64 images (the checkpoint carries the size, predict reads it): a quarter of the work at 180.
    return _train(["model=net1", "model.arch_kwargs.hidden=32", "epochs=1", f"data.image_size={NET1_IMAGE_SIZE}"],
                  out, synth_root, cache_dir)


@pytest.fixture(scope="module")
def net5_ckpts(net5_run) -> Path:
    return net5_run / "checkpoints"


@pytest.fixture(scope="module")
def net1(net1_ckpts):
    return load_classifier(net1_ckpts / "best.ckpt")


@pytest.fixture(scope="module")
def net5(net5_ckpts):
    return load_classifier(net5_ckpts / "best.ckpt")


@pytest.fixture(scope="module")
def clip(synth_root) -> tuple[Path, np.ndarray]:
    """A synthetic training wav (30 s, 22,050 Hz) and its samples."""
    path = next(p for p in sorted((synth_root / "genres_original" / "blues").glob("*.wav")))
    return path, load_audio(path)


@pytest.fixture(scope="module")
def files(clip, tmp_path_factory) -> dict[str, Path]:
    """The clip written in other shapes and formats; plus files that are not audio."""
    import librosa

    _, y = clip
    d = tmp_path_factory.mktemp("inputs")
    y44 = librosa.resample(y, orig_sr=SR, target_sr=44100)
    out = {
        "stereo44k.wav": (np.stack([y44, 0.5 * y44], axis=1), 44100, {}),
        "short5s.flac": (y[: 5 * SR], SR, {}),
        "long3min.ogg": (np.tile(y, 6)[: 180 * SR], SR, {"subtype": "VORBIS"}),
        "clip.au": (y, SR, {"subtype": "PCM_16"}),
    }
    if "MP3" in sf.available_formats():
        out["clip.mp3"] = (y, SR, {"format": "MP3"})
    paths = {}
    for name, (data, sr, kw) in out.items():
        # In blocks: libsndfile's Vorbis encoder crashes on a 3-minute write in one call.
        with sf.SoundFile(d / name, "w", sr, data.ndim if data.ndim == 1 else data.shape[1], **kw) as f:
            for i in range(0, len(data), 1 << 16):
                f.write(data[i : i + (1 << 16)])
        paths[name] = d / name
    (d / "notes.wav").write_text("these are my notes, not audio\n")
    paths["notes.wav"] = d / "notes.wav"
    paths["missing.wav"] = d / "missing.wav"
    return paths


def _check_probs(probs: dict[str, float]) -> None:
    assert list(probs) == list(GENRES)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)


def _check_result(r: dict) -> None:
    _check_probs(r["probabilities"])
    assert r["genre"] == max(r["probabilities"], key=r["probabilities"].get)
    assert r["probability"] == r["probabilities"][r["genre"]]
    for part in r.get("windows", []) + r.get("segments", []):
        _check_probs(part["probabilities"])


# --------------------------------------------------------------------------- the checkpoint


def test_load_classifier_rebuilds_the_trained_model(net1_ckpts, net1):
    assert not net1.training and net1.input_kind == "image"
    assert net1.hparams.arch_kwargs == {"hidden": 32}
    full = load_classifier(net1_ckpts / "last.ckpt")  # the full training state (one epoch: same weights)
    for k, v in net1.state_dict().items():
        assert torch.equal(v, full.state_dict()[k]), k
    assert load_classifier(net1_ckpts.parent).hparams == net1.hparams  # a run directory


class Foreign:
    """An arbitrary object: weights_only loading refuses it."""


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist"),
        ("empty", "is not a genre_cls checkpoint"),
        ("random bytes", "is not a genre_cls checkpoint"),
        ("another project", "no genre_cls format marker"),
        ("arbitrary objects", "refuses to load"),
        ("other format", "checkpoint format"),
        ("folder", "without checkpoints/best.ckpt"),
    ],
)
def test_anything_but_our_checkpoint_is_one_clear_error(kind, message, tmp_path):
    p = tmp_path / "model.ckpt"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "random bytes":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "another project":
        torch.save({"state_dict": {}}, p)
    elif kind == "arbitrary objects":
        torch.save({"genre_cls": CHECKPOINT_FORMAT, "path": pathlib.PurePosixPath("x"), "obj": Foreign()}, p)
    elif kind == "other format":
        torch.save({"genre_cls": "genre_cls.classifier/0", "state_dict": {}}, p)
    elif kind == "folder":
        p = tmp_path
    with pytest.raises(UserError, match=message) as info:
        load_classifier(p)
    assert "\n" not in str(info.value)
    assert "ckpt=" in str(info.value) or "retrain" in str(info.value)


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("name", ["stereo44k.wav", "clip.au", "clip.mp3", "short5s.flac", "long3min.ogg"])
def test_image_model_reads_any_format_rate_channels_and_length(net1, files, name):
    if name not in files:
        pytest.skip("no MP3 encoder in this libsndfile")
    r = predict_file(net1, files[name])
    _check_result(r)
    assert r["file"] == str(files[name])
    expected = {"short5s.flac": 5.0, "long3min.ogg": 180.0}.get(name, 30.0)
    assert r["duration_s"] == pytest.approx(expected, abs=0.1)  # mp3 adds a few ms of padding
    assert len(r["windows"]) == (6 if name == "long3min.ogg" else 1)
    assert "segments" not in r


@needs_net5
@pytest.mark.parametrize("name", ["stereo44k.wav", "short5s.flac", "long3min.ogg"])
def test_segment_model_sees_every_3s_segment_of_every_window(net5, files, name):
    r = predict_file(net5, files[name])
    _check_result(r)
    n_windows = 6 if name == "long3min.ogg" else 1
    segs = r["segments"]
    assert len(segs) == n_windows * 10
    assert [(s["window"], s["segment"]) for s in segs] == [(w, k) for w in range(n_windows) for k in range(10)]
    # A 5 s file: two segments hold audio; the eight of padding are reported, not averaged.
    padded = [s["padding"] for s in segs]
    assert padded == ([False] * 2 + [True] * 8 if name == "short5s.flac" else [False] * len(segs))
    held = np.array([list(s["probabilities"].values()) for s in segs if not s["padding"]])
    np.testing.assert_allclose(list(r["probabilities"].values()), held.mean(0), atol=2e-6)


def test_bad_inputs_are_reported_per_file(net1, files):
    results = predict_files(net1, [files["notes.wav"], files["clip.au"], files["missing.wav"]], skip_errors=True)
    assert [("error" in r) for r in results] == [True, False, True]
    assert "cannot decode audio file" in results[0]["error"] and "notes.wav" in results[0]["error"]
    assert "does not exist" in results[2]["error"]
    assert all("\n" not in r.get("error", "") for r in results)
    with pytest.raises(UserError, match="cannot decode"):
        predict_files(net1, [files["notes.wav"]])


# --------------------------------------------------------------------------- consistency with training


def _training_rows(synth_root, cache_dir, input_kind, track_id, **options):
    """The rows the data module serves for one track: (x, label) as training and testing see them."""
    from genre_cls.data import GenreDataModule

    dm = GenreDataModule(root=str(synth_root), input=input_kind, cache_dir=str(cache_dir), progress=False, workers=0,
                         **options)
    dm.setup("fit")
    index = dm.track_ids.index(track_id)
    for part in ("train", "val", "test"):
        x, y, t = dm.datasets[part].tensors
        if (t == index).any():
            return x[t == index]
    raise AssertionError(f"{track_id} is in no split")


def test_predict_matches_the_data_module_path_for_images(net1, clip, synth_root, cache_dir):
    path, _ = clip
    x = _training_rows(synth_root, cache_dir, "image", path.stem, image_size=NET1_IMAGE_SIZE)
    with torch.no_grad():
        expected = net1(x).softmax(-1)[0].numpy()
    r = predict_file(net1, path)
    np.testing.assert_allclose(list(r["probabilities"].values()), expected, atol=1e-6)


@needs_net5
def test_predict_matches_the_data_module_path_for_features(net5, clip, synth_root, cache_dir):
    path, _ = clip
    x = _training_rows(synth_root, cache_dir, "features", path.stem)
    assert x.shape == (10, 16, 33)
    with torch.no_grad():
        expected = net5(x).softmax(-1).numpy()
    r = predict_file(net5, path)
    got = np.array([list(s["probabilities"].values()) for s in r["segments"]])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(list(r["probabilities"].values()), expected.mean(0), atol=1e-6)


# --------------------------------------------------------------------------- the command


def _cfg(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("predict", overrides=overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["inputs=[a.wav]"], "no checkpoint given"),
        (["ckpt=x.ckpt"], "no input files given"),
        (["ckpt=x.ckpt", "inputs=[a.wav]", "format=csv"], "unknown format 'csv': choose one of table, json"),
        (["ckpt=x.ckpt", "inputs=[a.wav]", "device=gpu7"], "unknown device"),
        (["ckpt=/no/such.ckpt", "inputs=[a.wav]"], "does not exist"),
        (["ckpt=x.ckpt", "inputs=[a.wav]", "out=/no/such/folder/r.jsonl"], "the folder of out=/no/such/folder/r.jsonl does not exist"),
        (["ckpt=x.ckpt", "inputs=[a.wav]", "out=r.txt"], "out=r.txt must be a .jsonl or .csv file"),
        (["ckpt=x.ckpt", "inputs=[a.wav]", "out=[r.jsonl,./r.jsonl]"], "out= names one file twice"),
        (["ckpt=x.ckpt", "inputs=[a.wav]", "workers=-1"], "workers must be a whole number >= 0"),
        (["ckpt=x.ckpt", "inputs=[a.wav]", "batch=0"], "batch must be a whole number >= 1"),
        (["ckpt=x.ckpt", "inputs=[a.wav]", "progress=sometimes"], "progress must be auto, true or false"),
        (["ckpt=x.ckpt", "inputs=[/]", "out=[]"], None),
    ],
)
def test_command_mistakes_are_user_errors(overrides, message):
    if message is None:  # a folder is walked before the checkpoint loads: the root's files are fine, the checkpoint is not
        message = "checkpoint x.ckpt does not exist"
    with pytest.raises(UserError, match=message):
        run(_cfg(overrides))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["song.mp3"], "not a key=value setting"),
        (["input=[a.wav]"], "unknown setting 'input': use batch=, ckpt=, device=, format=, inputs=, out="),
        (["inputs=[My Song (live).mp3]"], "cannot parse"),
        (["inputs=a.wav,b.wav"], "write lists in brackets"),
    ],
)
def test_arguments_hydra_would_reject_get_one_line(argv, message):
    with pytest.raises(UserError, match=message):
        check_args(argv)
    check_args(["ckpt=a.ckpt", 'inputs=["My Song (live).mp3",b.wav]', "format=json", "--cfg", "job", "hydra.verbose=true"])


@pytest.fixture(scope="module")
def library_tree(tmp_path_factory) -> dict:
    from genre_cls.data.synth.library_tree import make_library_tree

    root = tmp_path_factory.mktemp("predict_library") / "lib"
    return {"root": root, "manifest": make_library_tree(root, tracks=12, seconds=3.0)}


def test_a_folder_is_predicted_file_by_file_with_flags_in_the_table(tiny_ckpts, library_tree, capsys):
    root, manifest = library_tree["root"], library_tree["manifest"]
    status = run(_cfg([f"ckpt={tiny_ckpts['features']}", f"inputs=[{root}]", "progress=false"]))
    out, err = capsys.readouterr()
    assert status == 1  # the broken files
    head, *rows = out.strip().splitlines()
    assert head.split() == ["file", "genre", "prob", *GENRES, "flags"]
    shown = {str(Path(r.split("  ")[0].strip()).relative_to(root)): r.split()[-1] for r in rows}
    assert set(shown) == set(manifest["music"]) | set(manifest["flagged"])
    assert {name: flag for name, flag in shown.items() if flag != "-"} == manifest["flagged"]
    lines = err.strip().splitlines()
    skipped = manifest["skipped"]
    assert lines[0] == (f"found 12 audio files in 4 folders (skipped: {skipped['hidden']} hidden, 2 links to a folder "
                        f"already read, {skipped['not_audio']} not audio)")
    assert all(line.startswith("error: cannot decode audio file ") for line in lines[1:])
    assert sorted(Path(re.match(r"error: cannot decode audio file (.+?): ", line).group(1)).name for line in lines[1:]) == sorted(
        Path(b).name for b in manifest["broken"])


def test_the_json_of_a_folder_says_each_files_flags_units_and_parts(tiny_ckpts, library_tree, capsys):
    root = library_tree["root"]
    assert run(_cfg([f"ckpt={tiny_ckpts['waveform']}", f"inputs=[{root / 'Odd files'}]", "format=json"])) == 1
    doc = json.loads(capsys.readouterr().out)
    by_name = {Path(r["file"]).name: r for r in doc["results"]}
    assert sorted(by_name) == ["cut short.wav", "one second.wav", "silence.wav"]
    assert sorted(Path(e["file"]).name for e in doc["errors"]) == ["empty.mp3", "noise.wav", "readme.wav"]
    assert list(by_name["silence.wav"]["flags"]) == ["silent"] and by_name["silence.wav"]["units"] == 1
    assert list(by_name["one second.wav"]["flags"]) == ["too_short"]
    mismatch = by_name["cut short.wav"]
    assert list(mismatch["flags"]) == ["length_mismatch"] and "header announces 3.00 s" in mismatch["flags"]["length_mismatch"]
    assert mismatch["duration_s"] == pytest.approx(1.5, abs=0.01) and len(mismatch["chunks"]) == mismatch["units"] == 1


def test_a_folder_without_audio_is_one_error_before_the_model_loads(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"no audio files under .*docs \(found 1 not audio\)"):
        run(_cfg(["ckpt=/no/such.ckpt", f"inputs=[{tmp_path / 'docs'}]"]))


def test_table_in_process(net1_ckpts, files, capsys):
    status = run(_cfg([f"ckpt={net1_ckpts / 'best.ckpt'}", f"inputs=[{files['clip.au']},{files['missing.wav']}]"]))
    out, err = capsys.readouterr()
    assert status == 1
    head, row = out.strip().splitlines()
    assert head.split() == ["file", "genre", "prob", *GENRES]
    assert row.split()[0] == str(files["clip.au"]) and len(row.split()) == 13
    assert err.strip().startswith("error: input file") and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def cli(net1_ckpts, net5_ckpts, files, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """``python -m genre_cls.predict`` three ways, run at once (each mostly imports torch), each in
    an empty folder: its result and that folder."""
    foreign = tmp_path_factory.mktemp("foreign") / "other.ckpt"
    torch.save({"state_dict": {}}, foreign)
    good, bad, missing = files["stereo44k.wav"], files["notes.wav"], files["missing.wav"]
    commands = {
        "table": [f"ckpt={net1_ckpts / 'best.ckpt'}", f"inputs=[{good},{bad},{missing}]"],
        "json": [f"ckpt={net5_ckpts / 'best.ckpt'}", f"inputs=[{files['long3min.ogg']},{files['short5s.flac']}]", "format=json"],
        "foreign": [f"ckpt={foreign}", f"inputs=[{files['clip.au']}]"],
    }
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    running = {}
    for name, args in commands.items():
        cwd = tmp_path_factory.mktemp(f"cli_{name}")
        proc = subprocess.Popen([sys.executable, "-m", "genre_cls.predict", *args], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running[name] = (proc, cwd)
    done = {}
    for name, (proc, cwd) in running.items():
        out, err = proc.communicate(timeout=300)
        done[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), cwd)
    return done


@pytest.mark.slow
def test_cli_table_with_some_bad_inputs(cli, files):
    proc, cwd = cli["table"]
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith(str(files["stereo44k.wav"]))
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == 2 and all(ln.startswith("error: ") for ln in errors), proc.stderr
    assert "notes.wav" in errors[0] and "missing.wav" in errors[1]
    assert list(cwd.iterdir()) == []  # no outputs/, no .hydra/, no log file


@pytest.mark.slow
@needs_net5
def test_cli_json_for_a_segment_model(cli, files):
    proc, _ = cli["json"]
    long, short = files["long3min.ogg"], files["short5s.flac"]
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["model"] == "net5" and doc["classes"] == list(GENRES) and doc["errors"] == []
    first, second = doc["results"]
    assert first["file"] == str(long) and len(first["segments"]) == 6 * 10
    assert second["file"] == str(short) and len(second["segments"]) == 10
    for r in doc["results"]:
        _check_result(r)


@pytest.mark.slow
def test_cli_foreign_checkpoint_is_one_error_line(cli):
    proc, _ = cli["foreign"]
    assert proc.returncode == 2
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert line.startswith("error: ") and "not a genre_cls checkpoint" in line and "ckpt=" in line


# --------------------------------------------------------------------------- the timeline figure


def _png(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.format, im.size


@needs_net5
def test_plot_writes_one_timeline_panel_per_input(net5_ckpts, files, tmp_path, capsys):
    plot = tmp_path / "new folder" / "timeline.png"  # the folder is made
    inputs = f"inputs=[{files['long3min.ogg']},{files['short5s.flac']},{files['missing.wav']}]"
    status = run(_cfg([f"ckpt={net5_ckpts / 'best.ckpt'}", inputs, f"plot={plot}"]))
    out, err = capsys.readouterr()
    assert status == 1 and len(out.strip().splitlines()) == 3  # the header and the two good files
    assert err.count("error:") == 1 and "missing.wav" in err
    fmt, (width, height) = _png(plot)
    assert fmt == "PNG" and width == 1200 and height == 2 * 340  # 12 x 3.4 inches per file at 100 dpi


@needs_net5
def test_timeline_draws_every_3s_segment_of_a_long_song(net5, files):
    from genre_cls.plots import timeline_data, timeline_figure

    r = predict_file(net5, files["long3min.ogg"])
    starts, ends, probs = timeline_data(r, GENRES)
    assert probs.shape == (60, 10)
    np.testing.assert_allclose(starts, np.arange(60) * 66_000 / SR, atol=1e-3)
    np.testing.assert_allclose(probs, [list(s["probabilities"].values()) for s in r["segments"]])
    fig = timeline_figure(r, GENRES)
    timeline, bars = fig.axes
    assert len(timeline.containers) == 10  # one stacked layer per genre ...
    for j, layer in enumerate(timeline.containers):
        assert len(layer.patches) == 60  # ... with one column per segment, as high as its probability
        np.testing.assert_allclose([b.get_height() for b in layer.patches], probs[:, j])
        np.testing.assert_allclose([b.get_x() for b in layer.patches], starts)
    np.testing.assert_allclose([b.get_width() for b in bars.patches], list(r["probabilities"].values()))
    assert timeline.get_title(loc="left") == f"long3min.ogg: {r['genre']} ({r['probability']:.0%})"
    assert timeline.get_xlim() == pytest.approx((0, 60 * 66_000 / SR))  # 6 windows of 660,000 samples


@needs_net5
def test_timeline_leaves_out_the_padding_after_a_short_file(net5, files):
    from genre_cls.plots import timeline_data

    _, ends, probs = timeline_data(predict_file(net5, files["short5s.flac"]), GENRES)
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(ends, [66_000 / SR, 5.0], atol=1e-3)


def test_timeline_of_an_image_model_has_one_column_per_30s_window(net1, files):
    from genre_cls.plots import timeline_figure

    r = predict_file(net1, files["long3min.ogg"])
    fig = timeline_figure(r, GENRES)
    layers = fig.axes[0].containers
    assert len(layers) == 10 and all(len(layer.patches) == 6 for layer in layers)
    np.testing.assert_allclose([b.get_width() for b in layers[0].patches], 660_000 / SR, atol=1e-3)
    assert fig.axes[0].get_title(loc="right") == "6 \u00d7 30 s windows"


def test_timeline_draws_non_finite_probabilities_as_zero(net1, files, tmp_path):
    from genre_cls.plots import save_figure, timeline_figure

    r = json.loads(json.dumps(predict_file(net1, files["clip.au"])))
    r["windows"][0]["probabilities"].update(blues=float("nan"), jazz=float("inf"), rock=-float("inf"))
    r["probabilities"]["blues"], r["probability"] = float("nan"), float("nan")
    del r["windows"][0]["probabilities"]["pop"]
    fig = timeline_figure(r, GENRES)
    heights = {g: layer.patches[0].get_height() for g, layer in zip(GENRES, fig.axes[0].containers)}
    assert heights["blues"] == 0 and heights["jazz"] == 1 and heights["rock"] == 0 and heights["pop"] == 0
    save_figure(fig, tmp_path / "odd.png")
    assert _png(tmp_path / "odd.png")[0] == "PNG"


@pytest.mark.parametrize(
    "plot, message",
    [
        ("song.jpg", "must be a .png file"),
        ("{tmp}", "must be a .png file"),
        ("{tmp}/dir.png", "is a folder"),
        ("{tmp}/file.txt/song.png", "is a file"),
        ("/proc/timeline.png", "cannot write plot=/proc/timeline.png: /proc is not writable"),  # even for root
    ],
)
def test_plot_mistakes_are_one_line_before_any_work(plot, message, tmp_path):
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "file.txt").write_text("x")
    # The checkpoint does not exist either: the plot is checked first, before the model loads.
    with pytest.raises(UserError, match=message) as info:
        run(_cfg(["ckpt=/no/such.ckpt", "inputs=[a.wav]", f"plot={plot.format(tmp=tmp_path)}"]))
    assert "\n" not in str(info.value)
    check_args([f"plot={tmp_path}/song.png"])


def test_plot_of_no_good_input_is_an_error_line_and_no_file(net1_ckpts, files, tmp_path, capsys):
    plot = tmp_path / "none.png"
    status = run(_cfg([f"ckpt={net1_ckpts / 'best.ckpt'}", f"inputs=[{files['notes.wav']}]", f"plot={plot}"]))
    err = capsys.readouterr().err
    assert status == 1 and not plot.exists()
    assert err.strip().splitlines()[-1] == f"error: no timeline written to {plot}: no input could be classified"


def test_audio_too_short_to_classify_is_refused_by_predict_and_serve(net5, net5_ckpts, tmp_path):
    import io

    from genre_cls.serve import UploadError, UploadPredictor

    sf.write(tmp_path / "blip.wav", np.zeros(SR // 10, dtype=np.float32), SR)  # 0.1 s
    with pytest.raises(UserError, match=r"cannot score .*blip.wav: it is 0.10 s of audio, too short to classify "
                                        r"\(at least 1 s\)"):
        predict_file(net5, tmp_path / "blip.wav")
    uploads = UploadPredictor(net5, str(net5_ckpts / "best.ckpt"))
    with pytest.raises(UploadError) as err:
        uploads.classify_upload(io.BytesIO((tmp_path / "blip.wav").read_bytes()), "blip.wav")
    assert err.value.status == 422 and "blip.wav: it is 0.10 s of audio" in str(err.value)
    header = bytearray((tmp_path / "blip.wav").read_bytes())
    header[24:28] = (4_000_000_000).to_bytes(4, "little")
    with pytest.raises(UploadError) as err:
        uploads.classify_upload(io.BytesIO(bytes(header)), "ghz.wav")
    assert err.value.status == 415 and "its header claims a sample rate of 4,000,000,000 Hz" in str(err.value)


def test_a_label_or_file_name_with_a_newline_stays_one_row_of_the_table():
    from genre_cls.predict import format_table

    classes = ["Hip\nHop", "メタル"]
    results = [{"file": "two\nlines.wav", "genre": "Hip\nHop", "probability": 0.75,
                "probabilities": {"Hip\nHop": 0.75, "メタル": 0.25}}]
    lines = format_table(results, classes).splitlines()
    assert len(lines) == 2
    assert lines[0].split() == ["file", "genre", "prob", "Hip\\nHop", "メタル"]
    assert lines[1].split() == ["two\\nlines.wav", "Hip\\nHop", "0.750", "0.750", "0.250"]


def test_a_checkpoint_whose_class_list_does_not_fit_its_network_says_both_counts(tmp_path):
    import torch

    from genre_cls.systems.classifier import GenreClassifier

    trained = GenreClassifier(arch="net5", arch_kwargs={"hidden": 8}, input_kind="features")
    hparams = dict(trained.hparams)
    hparams["classes"] = list(hparams["classes"])[:7]
    torch.save({"genre_cls": CHECKPOINT_FORMAT, "hyper_parameters": hparams, "state_dict": trained.state_dict()},
               tmp_path / "best.ckpt")
    with pytest.raises(UserError) as err:
        load_classifier(tmp_path / "best.ckpt")
    assert str(err.value).startswith(f"{tmp_path / 'best.ckpt'} names 7 classes but its network classifies 10: the "
                                     "checkpoint was altered or damaged")
