"""The spectrogram images of a whole data set for Net1-Net4: RGB -> size x size uint8, made once
and cached (:class:`ImageSet`, :func:`build_images`).

An image comes from one of two sources:

* ``png``: a Kaggle ``images_original`` PNG, decoded (alpha dropped, bilinear resize, no other
  change: :func:`genre_cls.data.melimage.decode_image`);
* ``render``: the track's audio drawn as a Kaggle-style mel PNG and turned into pixels the same
  way (:func:`genre_cls.data.melimage.render_image`). This is what ``predict`` does with a user's
  file, so a rendered training image and ``predict``'s input for the same file are the same
  pixels: the first 30 s window of the audio (a clip within 1% of 30 s whole, as GTZAN's), see
  :func:`genre_cls.data.melimage.image_window`.

:func:`build_images` makes the images of a whole data set, rendering in worker processes with
a progress bar, and caches them as one ``(N, 3, size, size)`` uint8 array (about 97 kB a track
at 180x180) in ``<cache_dir>/images/<key>.npz``. The key covers everything that changes the
pixels: the image size, this module's :data:`IMAGE_VERSION`, the renderer's
:data:`~genre_cls.data.melimage.MEL_IMAGE_VERSION`, the source of each image and every file's
path, size and mtime; the cache is written atomically and rebuilt when stale. Audio that
cannot be decoded is skipped with a warning naming it. Models convert the uint8 pixels to
float in [0, 1] on the device, so batches travel as uint8.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genre_cls.data.audio import SR, AudioDecodeError, clip_audio, load_audio
from genre_cls.data.cache import fingerprint, load_npz, save_npz_cache
from genre_cls.data.context import BuildContext
from genre_cls.data.shards import clear_store, run_shards
from genre_cls.data.melimage import MEL_IMAGE_VERSION, decode_image, image_window, render_image, render_mel_png
from genre_cls.data.processes import progress_bar

log = logging.getLogger(__name__)

IMAGE_VERSION = "2"
# data.images: where the images of Net1-Net4 come from.
IMAGE_MODES = ("auto", "kaggle", "render")
SOURCES = ("png", "render")


@dataclass
class ImageSet:
    """Images of the items that worked, in input order, where each came from, and why the
    others were skipped."""

    images: np.ndarray  # (N_ok, 3, size, size) uint8
    ok: list[int]  # positions in the input of the rows of ``images``
    sources: list[str]  # "png" or "render" for each row
    skipped: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """How many images were read from PNGs and how many rendered from audio."""
        return {"from_png": self.sources.count("png"), "rendered": self.sources.count("render")}


def _make_chunk(
    items: Sequence[tuple[str, str]], size: int, clip: str = "first", clip_seconds: float | None = None
) -> list[tuple[np.ndarray | None, str]]:
    """(pixels or None, reason) for each ``(source, path)``; audio is cut to its clip first."""
    out: list[tuple[np.ndarray | None, str]] = []
    for source, path in items:
        try:
            if source == "png":
                out.append((decode_image(path, size), ""))
            else:
                y = clip_audio(load_audio(path, SR), SR, clip_seconds, clip)
                out.append((render_image(image_window(y), size), ""))
        except AudioDecodeError as exc:
            out.append((None, f"cannot decode audio ({exc.reason})"))
        except Exception as exc:  # one bad file must not cost the data set
            out.append((None, f"{type(exc).__name__}: {exc}"))
    return out


def _cache_key(items: Sequence[tuple[str, str]], size: int, clip: dict | None = None) -> str:
    params = {
        **({"clip": clip} if clip else {}),  # whole tracks keep the keys made before clips existed
        "kind": "images",
        "size": size,
        "version": IMAGE_VERSION,
        "mel_image_version": MEL_IMAGE_VERSION,
        "sources": [source for source, _ in items],
    }
    return fingerprint(params, [path for _, path in items])


def build_images(
    items: Sequence[tuple[str, str | os.PathLike]],
    size: int = 180,
    context: BuildContext = BuildContext(),
) -> ImageSet:
    """The images of many tracks, made once and cached.

    Args:
        items: ``(source, path)`` per track: ``("png", image file)`` or ``("render", audio file)``.
        size: side of the square images.
        context: where and how (:class:`~genre_cls.data.context.BuildContext`): the cache is
            ``<cache_dir>/images/<key>.npz`` (no ``cache_dir``: no caching); audio is rendered by
            ``workers`` processes on the ``engine`` (0: in this process; PNGs are decoded here, a
            few ms each), the same cache either way; the ``clip`` of a longer track is rendered.
    """
    # The part of a longer track that is rendered (data.clip); none: the track from its start.
    clip_opts = context.clip_key()
    cache_dir, engine = context.cache_dir, context.engine
    items = [(str(source), os.fspath(path)) for source, path in items]
    if bad := sorted({s for s, _ in items} - set(SOURCES)):
        raise ValueError(f"unknown image source {bad[0]!r}: choose one of {', '.join(SOURCES)}")
    cache = key = None
    if cache_dir is not None:
        key = _cache_key(items, size, clip_opts)
        cache = Path(cache_dir) / "images" / f"{key}.npz"
        if (hit := _from_cache(_load_cache(cache, key), items, size)) is not None:
            _warn_skipped(hit.skipped)
            return hit

    results: list[tuple[np.ndarray | None, str]] = [(None, "")] * len(items)
    pngs = [i for i, (s, _) in enumerate(items) if s == "png"]
    renders = [i for i, (s, _) in enumerate(items) if s == "render"]
    workers = min(context.worker_count(), len(renders))
    if engine == "local" and workers == 1:
        workers = 0  # one worker process would only add its start-up
    bar = progress_bar(len(pngs), context.progress and bool(pngs), "images", "img")
    for i in pngs:  # a few ms each: decoded here
        results[i] = _make_chunk([items[i]], size)[0]
        bar.update(1)
    bar.close()
    store = None
    if renders:
        render_mel_png(np.zeros(SR, dtype=np.float32), SR)  # librosa's lazy imports, once, before forking
        chunk = 1 if workers == 0 and engine == "local" else max(1, min(8, -(-len(renders) // (max(workers, 1) * 4))))
        parts = [renders[k : k + chunk] for k in range(0, len(renders), chunk)]
        store = Path(cache_dir) / "shards" / f"images-{key}" if cache is not None else None
        done = run_shards(
            _make_chunk, [[items[i] for i in part] for part in parts], {"size": size, **clip_opts}, engine=engine,
            workers=workers, address=context.ray_address, store=store, key=key or "", progress=context.progress,
            desc="images", unit="img",
        )
        for part, part_results in zip(parts, done):
            for i, result in zip(part, part_results):
                results[i] = result

    ok = [i for i, (pixels, _) in enumerate(results) if pixels is not None]
    images = (np.stack([results[i][0] for i in ok]) if ok else np.zeros((0, 3, size, size), dtype=np.uint8))
    skipped = {items[i][1]: why for i, (pixels, why) in enumerate(results) if pixels is None}
    out = ImageSet(images=images, ok=ok, sources=[items[i][0] for i in ok], skipped=skipped)
    _warn_skipped(skipped)
    if cache is not None:
        try:
            save_npz_cache(
                cache, key, images=images, ok=np.array(ok, dtype=np.int64),
                skipped_paths=np.array(list(skipped), dtype=str), reasons=np.array(list(skipped.values()), dtype=str),
            )
        except OSError as exc:
            warnings.warn(f"could not write the image cache {cache}: {exc}", stacklevel=2)
        else:
            clear_store(store)
    return out


def load_images(
    paths: Sequence[str | Path],
    size: int = 180,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Decode PNG ``paths`` into one ``(N, 3, size, size)`` uint8 array, through the cache."""
    return build_images([("png", p) for p in paths], size, BuildContext(cache_dir=cache_dir, workers=0, progress=progress)).images


def _load_cache(path: Path, key: str) -> dict | None:
    """``load_npz`` that treats any damaged file (truncated zip, zlib errors) as a miss."""
    try:
        return load_npz(path, key)
    except Exception:
        return None


def _from_cache(hit: dict | None, items: list[tuple[str, str]], size: int) -> ImageSet | None:
    if hit is None:
        return None
    try:
        images, ok = hit["images"], [int(i) for i in hit["ok"]]
        skipped = dict(zip((str(p) for p in hit["skipped_paths"]), (str(r) for r in hit["reasons"])))
    except KeyError:
        return None
    if images.dtype != np.uint8 or images.shape != (len(ok), 3, size, size) or any(not 0 <= i < len(items) for i in ok):
        return None
    return ImageSet(images=images, ok=ok, sources=[items[i][0] for i in ok], skipped=skipped)


def _warn_skipped(skipped: dict[str, str]) -> None:
    for path, why in skipped.items():
        warnings.warn(f"skipping {path}: no image ({why})", stacklevel=3)

