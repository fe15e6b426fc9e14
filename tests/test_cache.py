"""Atomic cache and result files (genre_cls.data.cache)."""

from __future__ import annotations

import os
import stat

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
