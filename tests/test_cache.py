"""Atomic cache and result files (genre_cls.data.cache): a broken cache is rebuilt, never loaded, and
two processes building one cache agree and leave one file."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from genre_cls.data.cache import atomic_write


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_files_get_the_mode_an_ordinary_file_would(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "metrics.json", lambda fh: fh.write(b"{}\n"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode  # not mkstemp's private 0600
    assert path.read_bytes() == b"{}\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def _pngs(synth_root: Path, n: int = 12) -> list[str]:
    return [str(p) for p in sorted((synth_root / "images_original").rglob("*.png"))[:n]]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_broken_image_cache_is_rebuilt_not_loaded(synth_root, tmp_path, damage):
    from genre_cls.data.imageset import load_images

    paths = _pngs(synth_root)
    fresh = load_images(paths, 180, tmp_path, progress=False)
    (cache,) = (tmp_path / "images").glob("*.npz")
    good = cache.read_bytes()
    broken = {"truncated": good[: len(good) // 2], "garbage": os.urandom(len(good)), "empty": b""}[damage]
    cache.write_bytes(broken)

    again = load_images(paths, 180, tmp_path, progress=False)
    np.testing.assert_array_equal(again, fresh)
    assert cache.read_bytes() == good  # rewritten whole
    assert [p.name for p in (tmp_path / "images").iterdir()] == [cache.name]


def test_two_processes_building_one_cache_agree_and_leave_one_file(synth_root, tmp_path):
    from genre_cls.data.cache import load_npz
    from genre_cls.data.imageset import load_images

    paths = _pngs(synth_root, 30)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        a, b = pool.starmap(load_images, [(paths, 180, str(tmp_path), False)] * 2)
    np.testing.assert_array_equal(a, b)
    files = list((tmp_path / "images").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz", files  # no temporary files left
    np.testing.assert_array_equal(load_images(paths, 180, tmp_path, progress=False), a)
    key = files[0].stem
    assert load_npz(files[0], key) is not None
