"""The data set registry: every module of genre_cls/data/datasets/ is found by its name, indexes the
synthetic tree it writes to exactly the tracks that tree's manifest lists, and is what the config
checks and the commands offer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data.datasets import datasets, index_dataset
from genre_cls.data.synth.trees import MANIFEST
from genre_cls.errors import UserError


def write_tone(path, seconds, sr=22050):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * 330 * np.arange(int(seconds * sr)) / sr), sr)


def test_index_dataset_dispatches_by_name_and_rejects_unknown_names_and_options(tmp_path):
    assert list(datasets()) == ["gtzan", "csv", "fma", "folders"]
    folders = datasets()["folders"].write_synthetic(tmp_path / "music", tracks_per_label=1, seconds=2.0)
    assert index_dataset("folders", folders).dataset == "folders"
    write_tone(tmp_path / "gtzan" / "blues" / "blues.00000.wav", 12)
    gtzan = index_dataset("gtzan", tmp_path / "gtzan", min_seconds=10.0)
    assert gtzan.dataset == "gtzan" and [t.track_id for t in gtzan.tracks] == ["blues.00000"]
    with pytest.raises(UserError, match="unknown dataset 'fmaa': choose one of gtzan, csv, fma, folders"):
        index_dataset("fmaa", folders)
    with pytest.raises(UserError, match="takes no option 'subset'"):
        index_dataset("folders", folders, subset="small")


@pytest.mark.parametrize("name", [n for n in datasets() if n != "gtzan"])
def test_each_data_sets_synthetic_tree_indexes_to_the_tracks_it_lists(name, tmp_path):
    """GTZAN's synthetic set has tests of its own (test_synth.py, test_gtzan.py)."""
    root = datasets()[name].write_synthetic(tmp_path / name, tracks_per_label=3, seconds=6.0)
    listed = json.loads(((root if root.is_dir() else root.parent) / MANIFEST).read_text())["tracks"]
    index = index_dataset(name, root)
    assert {t.track_id: t.label for t in index.tracks} == {tid: v["label"] for tid, v in listed.items()}
    assert index.dataset == name and index.classes == sorted({v["label"] for v in listed.values()})


def test_the_config_checks_and_bench_offer_every_registered_data_set(cfg_factory):
    from genre_cls.conf import options
    from genre_cls.settings import validate

    assert sorted(datasets()) == options("data")  # one conf/data/<name>.yaml each
    with pytest.raises(UserError, match="unknown data.dataset 'x': choose one of gtzan, csv, fma, folders"):
        validate(cfg_factory(["data.dataset=x"]))
