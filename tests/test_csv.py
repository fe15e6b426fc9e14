"""data=csv: a manifest of path,label[,split] rows, with data=folders' guarantees (every file looked
at, the unusable ones skipped with their reason, copies read once, one-line errors) and its own
split column for data.split=official."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_cfg
from genre_cls.data.datasets.csv_manifest import CSV_LABELS, index_csv, make_csv_tree
from genre_cls.data.splits import make_splits
from genre_cls.data.synth.trees import MANIFEST
from genre_cls.errors import DataRootError, UserError


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return make_csv_tree(tmp_path_factory.mktemp("csv") / "collection", tracks_per_label=3, seconds=3.0)


def listed(manifest: Path) -> dict:
    return json.loads((manifest.parent / MANIFEST).read_text())


def test_every_usable_row_is_a_track_with_its_label_and_split_and_the_rest_say_why(manifest):
    index = index_csv(manifest)
    expected = listed(manifest)
    assert {t.track_id: (t.label, t.split) for t in index.tracks} == {
        tid: (v["label"], v["split"]) for tid, v in expected["tracks"].items()}
    assert index.classes == sorted(CSV_LABELS) and index.dataset == "csv" and index.root == manifest
    # relative paths are the manifest's folder's; an absolute one is read where it is
    assert all(t.audio.is_file() for t in index.tracks)
    assert any(t.track_id.startswith("/") for t in index.tracks) and any("," in t.track_id for t in index.tracks)
    reasons = {Path(p).name: why for p, why in index.skipped.items()}
    assert set(reasons) == {"missing.wav", "empty.wav", "short.wav"}
    assert "does not exist" in reasons["missing.wav"] and "empty" in reasons["empty.wav"] and "too short" in reasons["short.wav"]
    assert len(index.tracks) == len({t.audio for t in index.tracks})  # the row listed twice is one track
    summary = index.summary()
    assert summary["tracks_per_class"] == {label: 3 + (label == "Rock, live") for label in CSV_LABELS}
    parts = make_splits([t.track_id for t in index.tracks], "official", labels={t.track_id: t.label for t in index.tracks},
                        predefined={t.track_id: t.split for t in index.tracks})
    assert {p: len(ids) for p, ids in parts.items()} == {"train": 4, "val": 3, "test": 3}


def test_copies_in_two_formats_are_one_track_and_the_first_usable_wins(tmp_path):
    import shutil

    source = make_csv_tree(tmp_path / "src", tracks_per_label=3, seconds=2.0, splits=False)
    song = source.parent / "audio" / "Rock, live" / "song 1.wav"
    shutil.copy(song, tmp_path / "a.wav")
    (tmp_path / "a.flac").write_bytes(b"not audio")  # the first copy is broken: the second is used
    shutil.copy(song, tmp_path / "b.wav")
    shutil.copy(song, tmp_path / "b.ogg")
    shutil.copy(song, tmp_path / "c.wav")
    (tmp_path / "m.csv").write_text("a.flac,x\na.wav,x\nb.wav,y\nb.ogg,y\nc.wav,y\n")
    index = index_csv(tmp_path / "m.csv")
    assert [(t.track_id, t.audio.name) for t in index.tracks] == [("a", "a.wav"), ("b", "b.wav"), ("c", "c.wav")]
    assert index.duplicates == {str(tmp_path / "b.ogg"): str(tmp_path / "b.wav")}
    assert index.skipped[str(tmp_path / "a.flac")] == f"it is a text file, not audio; {tmp_path / 'a.wav'} is used instead"


@pytest.mark.parametrize("text, match", [
    ("a.wav\n", "line 1: expected path,label or path,label,split"),
    ("path,label\na.wav,rock,train,extra\n", "line 2: expected path,label"),
    ("a.wav,rock,later\n", "line 1: split 'later' is not one of train, val, test"),
    ("a.wav,rock,train\nb.wav,pop\n", "some rows have a split and some do not"),
    ("a.wav,rock\na.wav,pop\n", "line 2: a.wav is listed on line 1 with label 'rock', here with 'pop'"),
    ("path,label\n\n", "lists no track"),
    (b"a.wav,r\xe9ck\n", "is not UTF-8 text"),
])
def test_a_malformed_manifest_is_one_line_naming_the_row(tmp_path, text, match):
    path = tmp_path / "m.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataRootError, match=match) as err:
        index_csv(path)
    assert "\n" not in str(err.value)


def test_data_root_must_be_the_manifest(tmp_path, cfg_factory):
    from genre_cls.settings import validate

    with pytest.raises(DataRootError, match="is a folder: set data.root to a CSV manifest"):
        index_csv(tmp_path)
    cfg = cfg_factory(["data=csv"])
    cfg.data.root = None
    with pytest.raises(UserError, match=r"^data=csv needs data.root: a CSV manifest of path,label\[,split\] rows"):
        validate(cfg)
    cfg.data.root = str(tmp_path)
    with pytest.raises(UserError, match="is a folder, not a file: point it at a CSV manifest"):
        validate(cfg)
    cfg.data.root = str(tmp_path / "nowhere.csv")
    with pytest.raises(UserError, match="does not exist: point it at a CSV manifest"):
        validate(cfg)


@pytest.mark.slow
def test_a_model_trains_on_the_manifests_own_split(manifest, tmp_path):
    from genre_cls.bench.gpu_check import QUICK
    from genre_cls.train import train

    cfg = make_cfg(["data=csv", "model=net5", "data.split=official", *QUICK], tmp_path / "run", manifest, tmp_path / "cache")
    metrics = train(cfg)
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    expected = listed(manifest)["tracks"]
    assert splits["split"] == "official" and metrics["dataset"] == "csv" and metrics["classes"] == sorted(CSV_LABELS)
    for part in ("train", "val", "test"):
        assert sorted(splits[part]) == sorted(t for t, v in expected.items() if v["split"] == part), part


def test_rows_reaching_one_file_through_a_link_are_one_track_or_one_line_when_they_disagree(tmp_path):
    import shutil

    source = make_csv_tree(tmp_path / "src", tracks_per_label=3, seconds=2.0, splits=False)
    shutil.copy(source.parent / "audio" / "Rock, live" / "song 1.wav", tmp_path / "a.wav")
    shutil.copy(source.parent / "audio" / "Rock, live" / "song 1.wav", tmp_path / "b.wav")  # a copy is another file
    (tmp_path / "alias.wav").symlink_to(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text("a.wav,x\nalias.wav,x\nb.wav,y\n")
    index = index_csv(tmp_path / "m.csv")
    assert [t.track_id for t in index.tracks] == ["a", "b"]
    assert index.duplicates == {str(tmp_path / "alias.wav"): str(tmp_path / "a.wav")}
    (tmp_path / "m.csv").write_text("a.wav,x\nalias.wav,y\nb.wav,y\n")
    with pytest.raises(DataRootError, match=r"alias.wav and .*a.wav are one file \(through a link\) listed with another "
                                            "label or split") as err:
        index_csv(tmp_path / "m.csv")
    assert "\n" not in str(err.value)


def test_a_bad_row_is_named_by_its_first_line_when_a_quoted_field_spans_two(tmp_path):
    (tmp_path / "m.csv").write_text('path,label,split\na.wav,x,train\n"two\nlines.wav",y,tset\nc.wav,z,test\n')
    with pytest.raises(DataRootError, match=r"m.csv line 3: split 'tset' is not one of train, val, test"):
        index_csv(tmp_path / "m.csv")
