"""On-disk caches: content fingerprints, atomic writes, stale-cache detection.

Every cache file is an ``.npz`` written to a temporary name in the same folder and
renamed into place, so a killed run never leaves a file that loads, and two runs that
build the same cache at once each produce a complete file (the last rename wins).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

import numpy as np


def default_cache_dir() -> Path:
    """The user cache directory: ``$GENRE_CLS_CACHE``, else ``$XDG_CACHE_HOME/genre_cls``."""
    env = os.environ.get("GENRE_CLS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "genre_cls"


def fingerprint(params: dict[str, Any], files: Iterable[str | os.PathLike] = ()) -> str:
    """A hash of ``params`` and each file's absolute path, size and mtime.

    Anything that changes a cached result must be in ``params`` (code version included);
    touching, replacing, adding or removing a file changes the fingerprint.
    """
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _umask() -> int:
    """The process's umask, read without changing it where the platform allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (the only portable way to read it)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    Readers see the old file or the complete new one, never a partial one; concurrent
    writers each write their own temporary file (the last rename wins). The file gets the
    mode an ordinary ``open()`` would give it (0644 under the usual umask 022), not
    ``mkstemp``'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def can_write_in(folder: str | os.PathLike) -> bool:
    """Whether a file can be created in ``folder``, found by creating one (a temporary file, gone at
    once): permissions do not tell for root, /proc or a read-only mount."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` to ``path`` through a temporary file and an atomic rename."""
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_npz(path: str | os.PathLike, key: str) -> dict[str, np.ndarray] | None:
    """Load a cache written with a ``_key`` entry; ``None`` when absent, stale, truncated or
    otherwise broken (the caller rebuilds it)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "_key" not in npz.files or str(npz["_key"]) != key:
                return None
            return {k: npz[k] for k in npz.files if k != "_key"}
    except Exception:  # zipfile.BadZipFile, zlib errors, a member cut short...: a miss
        return None


def save_npz_cache(path: str | os.PathLike, key: str, **arrays: np.ndarray) -> Path:
    """Atomically write ``arrays`` with ``key`` so that :func:`load_npz` can check staleness."""
    return atomic_save_npz(path, _key=np.array(key), **arrays)
