"""The extraction engine: the local pool and Ray write the same caches, and a crashed build resumes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genre_cls.data import shards as E
from genre_cls.data import featureset as F
from genre_cls.data.cache import load_npz
from genre_cls.data.shards import EngineError, run_shards
from genre_cls.data.featureset import extract_dataset
from genre_cls.data.imageset import build_images
from genre_cls.data.synth import synth_track
from genre_cls.errors import UserError
from genre_cls.data.context import BuildContext

SR = 22050


@pytest.fixture(scope="module")
def tracks(tmp_path_factory) -> list[str]:
    """Six 4 s tracks of three styles, one of them corrupt (skipped the same way by both engines)."""
    folder = tmp_path_factory.mktemp("engine")
    paths = []
    for i, style in enumerate(("rock", "jazz", "classical", "rock", "disco")):
        path = folder / f"t{i} #{i}.wav"
        sf.write(str(path), synth_track(style, np.random.default_rng(i), 4.0, SR), SR)
        paths.append(str(path))
    bad = folder / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    paths.insert(2, str(bad))
    return paths


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray with 2 CPUs for the whole session (a start takes seconds)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Functions of this test module travel to the Ray workers by value (tests/ is no package).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def cached(cache: Path, kind: str) -> dict[str, np.ndarray]:
    (file,) = (cache / kind).glob("*.npz")
    return load_npz(file, str(np.load(file)["_key"]))


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert np.array_equal(a[name], b[name]), name  # bit for bit: no tolerance


def test_features_on_ray_are_cached_bit_for_bit_as_on_the_local_pool(tracks, tmp_path, ray_local):
    local = extract_dataset(tracks, context=BuildContext(cache_dir=tmp_path / "local", workers=2, progress=False))
    on_ray = extract_dataset(tracks, context=BuildContext(cache_dir=tmp_path / "ray", workers=2, progress=False, engine="ray"))
    assert local.paths == on_ray.paths and len(local.paths) == 5 and list(on_ray.skipped) == [tracks[2]]
    assert_same_arrays(cached(tmp_path / "local", "features"), cached(tmp_path / "ray", "features"))
    assert not (tmp_path / "ray" / "shards").exists() or not any((tmp_path / "ray" / "shards").iterdir())


def test_rendered_images_on_ray_are_cached_bit_for_bit_as_on_the_local_pool(tracks, tmp_path, ray_local):
    items = [("render", p) for p in tracks[:4]]
    local = build_images(items, 48, context=BuildContext(cache_dir=tmp_path / "local", workers=2, progress=False))
    on_ray = build_images(items, 48, context=BuildContext(cache_dir=tmp_path / "ray", workers=2, progress=False, engine="ray"))
    assert local.ok == on_ray.ok == [0, 1, 3]
    assert_same_arrays(cached(tmp_path / "local", "images"), cached(tmp_path / "ray", "images"))


def test_waveforms_on_ray_are_cached_bit_for_bit_as_on_the_local_pool(tracks, tmp_path, ray_local):
    from genre_cls.data.waveformset import build_waveforms

    local = build_waveforms(tracks, context=BuildContext(clip_seconds=3.0, clip="middle", cache_dir=tmp_path / "local", workers=2, progress=False))
    on_ray = build_waveforms(tracks, context=BuildContext(clip_seconds=3.0, clip="middle", cache_dir=tmp_path / "ray", workers=2, progress=False, engine="ray"))
    assert local.paths == on_ray.paths and len(local) == 5 and list(on_ray.skipped) == [tracks[2]]
    assert np.array_equal(np.asarray(local.audio), np.asarray(on_ray.audio)) and local.audio.dtype == on_ray.audio.dtype
    assert np.array_equal(local.offsets, on_ray.offsets) and np.array_equal(local.lengths, on_ray.lengths)
    assert not any((tmp_path / "ray" / "shards").glob("*/*.npz"))  # cleared once published


def test_streamed_shards_come_in_order_with_a_bounded_number_ahead(tmp_path, monkeypatch):
    submitted: list[int] = []
    real_submit = E._Inline.submit
    monkeypatch.setattr(E._Inline, "submit", lambda self, i: submitted.append(i) or real_submit(self, i))
    shards = [[i] for i in range(6)]
    seen = []
    for out in E.iter_shards(_square_failing_once, [[1], [3], [5], [7], [9], [11]], {"folder": str(tmp_path)},
                             workers=0, progress=False):
        seen.append(int(out[0][0][0]))
        assert len(submitted) <= len(seen) + 1  # never more than the window (1 in this process) ahead
    assert seen == [1, 9, 25, 49, 81, 121] and submitted == list(range(len(shards)))


def test_a_failed_shard_leaves_the_others_on_disk_and_the_rerun_computes_only_it(tracks, tmp_path, monkeypatch):
    real = F._extract_chunk
    calls: list[list[str]] = []
    failed: list[bool] = []

    def fail_once_on_the_last_track(paths, params, threads=1):
        calls.append(list(paths))
        if tracks[-1] in paths and not failed:
            failed.append(True)
            raise RuntimeError("worker lost")
        return real(paths, params, threads=threads)

    monkeypatch.setattr(F, "_extract_chunk", fail_once_on_the_last_track)
    monkeypatch.setattr(F, "_chunks", lambda items, size: [list(items[i : i + 2]) for i in range(0, len(items), 2)])
    with pytest.raises(RuntimeError, match="worker lost"):
        extract_dataset(tracks, context=BuildContext(cache_dir=tmp_path, workers=0, progress=False))
    shards = sorted(p.name for p in (tmp_path / "shards").glob("features-*/*.npz"))
    assert shards == ["000000.npz", "000001.npz"]  # the two shards done before the failure
    assert not (tmp_path / "features").exists()

    calls.clear()
    resumed = extract_dataset(tracks, context=BuildContext(cache_dir=tmp_path, workers=0, progress=False))
    assert calls == [tracks[4:6]]  # only the missing shard
    fresh = extract_dataset(tracks, context=BuildContext(workers=0, progress=False))
    assert resumed.paths == fresh.paths and np.array_equal(resumed.features, fresh.features)
    assert list(resumed.skipped) == [tracks[2]]
    assert not any((tmp_path / "shards").iterdir())  # cleared once the whole result is cached


_REAL_EXTRACT = F._extract_chunk


def _extract_or_die(paths, params, threads=1):
    """The pool's workers run this (by name, so it lives at module level): the last track kills its worker."""
    if any(Path(p).name == "t4 #4.wav" for p in paths):
        os._exit(1)  # killed (out of memory, SIGKILL): the pool breaks
    return _REAL_EXTRACT(paths, params, threads=threads)


def test_a_dead_local_worker_is_one_line_that_says_how_to_resume(tracks, tmp_path, monkeypatch):
    assert Path(tracks[-1]).name == "t4 #4.wav"
    monkeypatch.setattr(F, "_extract_chunk", _extract_or_die)
    monkeypatch.setattr(F, "_chunks", lambda items, size: [list(items[i : i + 2]) for i in range(0, len(items), 2)])
    with pytest.raises(EngineError) as exc:
        extract_dataset(tracks, context=BuildContext(cache_dir=tmp_path, workers=2, progress=False))
    msg = str(exc.value)
    assert "worker process died" in msg and "\n" not in msg
    # The shards finished before the pool broke (the one running beside the dead one may be lost).
    kept = len(list((tmp_path / "shards").glob("features-*/*.npz")))
    assert kept >= 1 and f"the {kept} finished shards are kept in" in msg and "run the same command again" in msg


# Ray tasks: module-level functions that leave a file per call, so calls are counted across processes.
def _record(folder: str, shard: list[int]) -> int:
    n = len(list(Path(folder).glob(f"call-{shard[0]}-*")))
    Path(folder, f"call-{shard[0]}-{n}").touch()
    return n


def _square_dying_once(shard, folder):
    if _record(folder, shard) == 0 and shard[0] == 4:
        os._exit(1)  # the worker process dies the first time: Ray runs the task again
    return [(np.array([x * x]), f"item {x}") for x in shard]


def _square_failing_once(shard, folder):
    if _record(folder, shard) == 0 and shard[0] == 2:
        import time

        time.sleep(1.0)  # let the other shards finish first (they are kept whenever they finish)
        raise ValueError("bad shard")
    return [(np.array([x * x]), None) for x in shard]


def test_ray_retries_a_task_whose_worker_died(tmp_path, ray_local):
    shards = [[0, 1], [2, 3], [4, 5]]
    out = run_shards(_square_dying_once, shards, {"folder": str(tmp_path)}, engine="ray", progress=False)
    assert [[(int(a[0]), s) for a, s in shard] for shard in out] == [
        [(0, "item 0"), (1, "item 1")], [(4, "item 2"), (9, "item 3")], [(16, "item 4"), (25, "item 5")]
    ]
    assert len(list(tmp_path.glob("call-4-*"))) == 2 and len(list(tmp_path.glob("call-0-*"))) == 1


def test_ray_resumes_from_the_shards_a_failed_run_kept(tmp_path, ray_local):
    shards, store = [[0, 1], [2, 3], [4, 5]], tmp_path / "store"
    kwargs = {"folder": str(tmp_path)}
    with pytest.raises(ValueError, match="bad shard"):
        run_shards(_square_failing_once, shards, kwargs, engine="ray", store=store, key="k", progress=False)
    kept = sorted(p.name for p in store.iterdir())
    assert kept and "000001.npz" not in kept
    out = run_shards(_square_failing_once, shards, kwargs, engine="ray", store=store, key="k", progress=False)
    assert [[(int(a[0]), s) for a, s in shard] for shard in out] == [[(x * x, None) for x in s] for s in shards]
    # the rerun computed the failed shard and those not finished before, never a kept one (a shard
    # the failure cancelled before a CPU was free for it, on a busy machine, runs only in the rerun)
    runs = {i: len(list(tmp_path.glob(f"call-{s[0]}-*"))) for i, s in enumerate(shards)}
    assert runs[1] == 2 and all(runs[i] == 1 for i in (0, 2) if f"{i:06d}.npz" in kept)
    assert all(runs[i] in (1, 2) for i in (0, 2))
    # another key (changed inputs) does not reuse them
    run_shards(_square_failing_once, shards, kwargs, engine="ray", store=store, key="other", progress=False)
    assert len(list(tmp_path.glob("call-0-*"))) == 2


def test_unknown_engine_and_missing_ray_are_one_line(tracks, monkeypatch):
    with pytest.raises(UserError, match="unknown data.engine 'spark': choose one of local, ray"):
        extract_dataset(tracks[:1], context=BuildContext(engine="spark", progress=False))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install genre_cls\[ray\]") as exc:
        run_shards(_square_failing_once, [[0]], {"folder": "."}, engine="ray", progress=False)
    assert "\n" not in str(exc.value)
    assert E.RAY_MISSING in str(exc.value)


def test_unreachable_ray_address_is_a_quick_one_line_error(monkeypatch):
    """Ray retries an unreachable cluster for minutes: the address is tried first, in seconds."""
    import socket
    import time

    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: pytest.fail("ray.init was reached with an unreachable address"))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    for address, match in [
        (f"127.0.0.1:{port}", "cannot reach the Ray cluster at '127.0.0.1:"),
        (f"ray://127.0.0.1:{port}", "cannot reach the Ray cluster at 'ray://127.0.0.1:"),
        ("bogus.invalid:1234", "cannot reach the Ray cluster at 'bogus.invalid:1234'"),
        ("nonsense", "data.ray_address 'nonsense' is not host:port"),
    ]:
        with pytest.raises(UserError, match=match) as info:
            E.start_ray(address)
        assert "\n" not in str(info.value)
    assert time.monotonic() - start < 30


def test_ray_init_failure_is_a_one_line_error(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(E, "check_ray_address", lambda address: None)

    def refuse(**kw):
        raise ConnectionError("Could not find any running Ray instance")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(UserError, match="cannot connect to the Ray cluster at 'auto' .*Could not find"):
        E.start_ray("auto")
