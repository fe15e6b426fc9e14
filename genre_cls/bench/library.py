"""``bench library``: a model on a whole music library, measured (:func:`bench_library`).

On a synthetic library (:func:`genre_cls.data.synth.library_tree.make_library_tree`: ``--tracks``
30 s files in nested folders, mp3 and wav mixed, three broken; generated once into the cache) or
``--root``:

* ``library``: folder prediction into a results file as the command does it (worker processes
  decode and cut, the model scores batches of several files' units; :func:`genre_cls.predict.run_to_files`)
  against a plain loop of :func:`genre_cls.predict.predict_file` over the same files in one process,
  each the best of ``--repeat`` runs; beside them the time of only decoding the files (one
  process) and of only running the model on their units (batches of 64);
* the memory of both on one long file (``--long-minutes`` of 44.1 kHz stereo, resampled to the
  model's rate), each in a fresh process (peak resident set size, workers included);
* the acceptance check of ``predict ... out=``: the command killed (SIGKILL) once about half the
  files have a record, run again, and every file recorded exactly once without the first half
  being predicted again.

The model is ``--ckpt``, or an untrained ``--model`` (its speed is a trained one's). The load
average of the machine is printed before and after: the CPU may be shared.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from genre_cls.errors import UserError

#: What the synthetic library's cache folder is keyed by besides its size (bump when it changes).
LIBRARY_VERSION = 1
TRACK_SECONDS = 30.0


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def library_root(args) -> Path:
    """``--root``, or the synthetic library of ``--tracks`` files, written once into the cache."""
    from genre_cls.data.cache import default_cache_dir
    from genre_cls.data.synth.library_tree import make_library_tree

    if args.root:
        return Path(args.root).expanduser()
    target = default_cache_dir() / "library" / f"tracks{args.tracks}-s{TRACK_SECONDS:g}-seed0-v{LIBRARY_VERSION}"
    if (target / ".complete").is_file():
        return target
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    print(f"# writing a synthetic library of {args.tracks} files into {target} (once)", flush=True)
    make_library_tree(tmp, tracks=args.tracks, seconds=TRACK_SECONDS, workers=args.workers if args.workers is not None else os.cpu_count() or 1)
    (tmp / ".complete").write_text("")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    print(f"# written in {time.perf_counter() - started:.0f} s", flush=True)
    return target


def untrained_checkpoint(name: str, folder: Path) -> Path:
    """A checkpoint of an untrained ``conf/model/<name>.yaml`` model on GTZAN's classes, as
    ``python -m genre_cls.train`` writes one (``load_classifier`` reads it)."""
    from omegaconf import OmegaConf

    from genre_cls import GENRES
    from genre_cls.conf import CONF_DIR
    from genre_cls.data.kinds import InputDatasets, kind_of
    from genre_cls.systems.classifier import CHECKPOINT_FORMAT, GenreClassifier

    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown --model {name!r}: choose a conf/model/ name, e.g. net5 or mel_resnet")
    conf = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    model = conf.get("model", conf)  # presets are `# @package _global_` files with a model: key
    kind = kind_of(model["input_kind"])
    params = kind.input_params({"image_size": 180, "split": "track", **(model.get("input") or {})},
                               InputDatasets([], {}, {}))
    system = GenreClassifier.from_config(model, None, list(GENRES), params)
    ckpt = folder / f"untrained_{name}.ckpt"
    torch.save({"genre_cls": CHECKPOINT_FORMAT, "hyper_parameters": dict(system.hparams),
                "state_dict": system.state_dict(), "epoch": 0}, ckpt)
    return ckpt


def _growth_mb(setup: str, work: str) -> float:
    """Run ``setup`` then ``work`` in a fresh Python; how far ``work`` raised the process's peak
    resident memory above what it held before (MB): the kernel's high-water mark is reset between them."""
    probe = (f"{setup}\n"
             "def rss(key):\n"
             "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith(key))\n"
             "open('/proc/self/clear_refs', 'w').write('5')\n"
             "before = rss('VmRSS:')\n"
             f"{work}\n"
             "print('GROWTH', rss('VmHWM:') - before)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("GROWTH")), None)
    if line is None:
        raise SystemExit(f"error: the memory probe failed: {' '.join(out.stderr.strip().splitlines()[-1:])}")
    return int(line.split()[1]) / 1024


@contextlib.contextmanager
def _quiet_stderr():
    """Decoders (libmpg123) print warnings about mp3 frames straight to file descriptor 2: not here."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def bench_library(args, _root=None) -> Iterator[str]:
    """The lines of ``bench library``, each as soon as it is measured (the whole takes minutes)."""
    from genre_cls.checkpoints import load_classifier
    from genre_cls.data.audio_files import find_audio_files
    from genre_cls.data.audio_stream import decode_blocks
    from genre_cls.library import BATCH, auto_workers, probabilities
    from genre_cls.predict import predict_file, run_to_files
    from genre_cls.bench.speed import line

    root = library_root(args)
    files = [str(f) for f in find_audio_files([root]).files]
    scratch = Path(tempfile.mkdtemp(prefix="genre_cls_bench_library_"))
    try:
        ckpt = Path(args.ckpt).expanduser() if args.ckpt else untrained_checkpoint(args.model, scratch)
        model = load_classifier(str(ckpt))
        name = model.hparams.get("model_name") or model.hparams.get("arch")
        workers = auto_workers(len(files)) if args.workers is None else args.workers
        yield (f"# library: {len(files)} files under {root}, model {name} ({'untrained' if not args.ckpt else ckpt}), "
               f"{workers} workers, batch {BATCH}, best of {args.repeat}; {load()}")
        rate = model.kind.sample_rate(model.input_params)

        def ours() -> None:
            results = scratch / "results.jsonl"
            results.unlink(missing_ok=True)
            run_to_files(model, str(ckpt), files, [results], workers, BATCH, progress=False)

        def plain() -> None:
            for path in files:
                try:
                    predict_file(model, path)
                except UserError:
                    pass

        stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # run_to_files' summary lines
        try:
            t_ours = min(_timed(ours) for _ in range(args.repeat))
        finally:
            sys.stderr.close()
            sys.stderr = stderr
        with _quiet_stderr():
            t_plain = min(_timed(plain) for _ in range(args.repeat))
        yield line("library", t_ours, t_plain)
        yield (f"# library: ours {len(files) / t_ours:.1f} files/s ({workers} workers, torch threads in this process "
               f"{max(1, (os.cpu_count() or 1) - workers)}), plain predict_file loop {len(files) / t_plain:.1f} files/s "
               f"(torch threads {torch.get_num_threads()}); {load()}")

        def decoded() -> Iterator[np.ndarray]:
            for path in files:
                try:
                    y = np.concatenate(list(decode_blocks(path, rate)))
                except ValueError:  # the broken files (AudioDecodeError), as in the other two
                    continue
                yield y

        with _quiet_stderr():
            t_decode = min(_timed(lambda: sum(1 for _ in decoded())) for _ in range(args.repeat))
            # Cutting and the model, each timed alone, a batch at a time (the units of 1,000 files
            # of a waveform model are their whole audio: never all held at once).
            t_cut = t_model = 0.0
            units, held, decodable = 0, [], 0
            for y in decoded():
                decodable += 1
                took, cut = _timed_value(lambda: model.kind.cut(y, model.input_params))
                t_cut += took
                held.append(cut.x)
                if sum(len(x) for x in held) >= BATCH or decodable == len(files):
                    x = torch.cat(held)
                    t_model += _timed(lambda: probabilities(model, x, BATCH))
                    units, held = units + len(x), []
            if held:
                x = torch.cat(held)
                t_model += _timed(lambda: probabilities(model, x, BATCH))
                units += len(x)
        yield (f"# decoding only: {t_decode:.3f} s ({decodable / t_decode:.1f} files/s, one process); cutting into units "
               f"only: {t_cut:.3f} s; the model only: {t_model:.3f} s ({units} units in batches of {BATCH}, "
               f"{torch.get_num_threads()} torch threads)")
        yield _memory(args, ckpt, scratch, rate)
        yield _kill_and_resume(ckpt, root, len(files), scratch)
        yield f"# {load()}"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _timed(fn) -> float:
    return _timed_value(fn)[0]


def _timed_value(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _memory(args, ckpt: Path, scratch: Path, rate: int) -> str:
    """How much memory predicting one long file takes: block by block as predict decodes it (the
    path its workers run, here in one process), and decoded whole, each in a fresh process."""
    import soundfile as sf

    from genre_cls.data.synth import render_clip

    minutes = args.long_minutes
    long = scratch / "long.wav"
    clip = render_clip("rock", 0, (0,), 30.0, 44100, channels=2)
    with sf.SoundFile(long, "w", 44100, 2, subtype="PCM_16") as fh:
        for _ in range(int(math.ceil(minutes * 2))):
            fh.write(clip)
    setup = (f"from genre_cls.checkpoints import load_classifier\nfrom genre_cls.library import predict_many\n"
             f"from genre_cls.predict import predict_waveform\nfrom genre_cls.data.audio import load_audio\n"
             f"import numpy as np\nmodel = load_classifier({str(ckpt)!r})\n"
             # First use (imports, filter banks, the model's first pass) is not the file's: done before.
             f"predict_waveform(model, np.full({rate * 30}, 1e-3, dtype=np.float32), {rate})\n")
    ours = _growth_mb(setup, f"list(predict_many(model, [{str(long)!r}], workers=0))")
    whole = _growth_mb(setup, f"predict_waveform(model, load_audio({str(long)!r}, {rate}), {rate})")
    size = long.stat().st_size / 2**20
    long.unlink()
    mono = minutes * 60 * rate * 4 / 2**20
    return (f"# memory on a {minutes:g}-minute file (44.1 kHz stereo wav, {size:.0f} MB; {mono:.0f} MB as float32 mono at "
            f"{rate} Hz): predict's block-by-block decoding raised the peak by {ours:.0f} MB; decoded whole (load_audio + "
            f"predict_waveform) by {whole:.0f} MB")


def _kill_and_resume(ckpt: Path, root: Path, files: int, scratch: Path) -> str:
    """``predict inputs=[root] out=...`` killed once about half the files have a record, then run
    again: every file must end with exactly one record, the first half not predicted again."""
    results = scratch / "resume.jsonl"
    command = [sys.executable, "-m", "genre_cls.predict", f"ckpt={ckpt}", f"inputs=[{root}]", f"out={results}", "progress=false"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 3600
    while first.poll() is None and time.monotonic() < deadline:
        if results.is_file() and results.read_bytes().count(b"\n") >= files // 2:
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    first.wait()
    before = [json.loads(ln) for ln in results.read_bytes().splitlines(keepends=True) if ln.endswith(b"\n")]
    started = time.perf_counter()
    second = subprocess.run(command, capture_output=True, text=True, env=env)
    took = time.perf_counter() - started
    after = [json.loads(ln) for ln in results.read_text().splitlines()]
    names = [r["file"] for r in after]
    kept = {r["file"]: r for r in after}
    again = [r for r in before if kept.get(r["file"]) != r]
    ok = len(names) == len(set(names)) == files and not again and second.returncode in (0, 1)
    verdict = "ok" if ok else "FAILED"
    text = (f"# kill and resume: {verdict}: predict killed (SIGKILL) with {len(before)} of {files} files recorded; the same "
            f"command then recorded {len(after) - len(before)} more in {took:.1f} s (start-up included): {len(after)} records, "
            f"{len(names) - len(set(names))} duplicates, {len(again)} of the first {len(before)} predicted again")
    if not ok:
        raise SystemExit(f"error: {text[2:]}; its stderr: {second.stderr.strip()[-500:]}")
    return text
