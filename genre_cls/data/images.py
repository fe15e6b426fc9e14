"""Spectrogram images for Net1-Net4: PNG -> RGB -> 180x180 uint8, decoded once and cached.

The cache holds ``(N, 3, size, size)`` uint8 arrays (about 97 kB a track at 180x180); models
convert to float in [0, 1] on the device, so batches travel as uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from genre_cls.data.cache import fingerprint, load_npz, save_npz_cache

IMAGE_VERSION = "1"


def decode_image(path: str | Path, size: int = 180) -> np.ndarray:
    """One PNG as ``(3, size, size)`` uint8: alpha dropped, bilinear resize, no other change."""
    with Image.open(path) as im:
        rgb = im.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_images(
    paths: Sequence[str | Path],
    size: int = 180,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Decode ``paths`` into one ``(N, 3, size, size)`` uint8 array, through an on-disk cache.

    The cache is keyed by the image size, this module's version and every file's path,
    size and mtime; it is written atomically and rebuilt when stale.
    """
    key = fingerprint({"kind": "images", "size": size, "version": IMAGE_VERSION}, paths)
    cache = Path(cache_dir) / "images" / f"{key}.npz" if cache_dir is not None else None
    if cache is not None and (hit := load_npz(cache, key)) is not None:
        return hit["images"]
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, path in enumerate(tqdm(paths, desc="decoding images", unit="img", disable=not progress)):
        out[i] = decode_image(path, size)
    if cache is not None:
        save_npz_cache(cache, key, images=out)
    return out
