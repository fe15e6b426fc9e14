"""A model on many files at once: decoding in worker processes, scoring in batches (:func:`predict_many`).

Worker processes decode files block by block (:func:`genre_cls.data.audio_stream.decode_blocks`)
and cut them into the model's units the way :meth:`~genre_cls.data.kinds.base.InputKind.cut`
cuts a whole file, piece by piece (:meth:`~genre_cls.data.kinds.base.InputKind.pieces`), several
files' pieces in one go (one batched feature extraction for segment models). This process runs
the model on batches of units from several files (segments, chunks or windows, up to ``batch``
per forward pass) on the model's device, and adds each file's unit probabilities up as they come.
A file's result is ready when its last unit is scored; results are yielded as files finish.

Memory is bounded whatever the number of files and their lengths: a few files are queued per
worker, a worker holds at most two pieces of a file (about :data:`PIECE_SECONDS` of audio each),
a worker waits for this process to read its last message before it sends the next (each worker
has its own pipes), and a file's running sum is all that is kept of its units (unless ``parts``
asks for the per-unit probabilities, as ``predict format=json`` prints them).

The result of a file equals :func:`genre_cls.predict.predict_file`'s (the tests hold them equal
within float rounding: batches of other sizes round differently), with ``flags``
(:func:`genre_cls.data.audio_stream.audio_flags`) and ``units`` (the units it was judged on).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genre_cls.data.audio import AudioDecodeError
from genre_cls.data.audio_stream import AudioStats, audio_flags, decode_blocks
from genre_cls.data.kinds import kind_of
from genre_cls.data.processes import mp_context, one_blas_thread_worker, progress_bar
from genre_cls.errors import one_line
from genre_cls.systems.classifier import GenreClassifier

#: The key of a result's parts, by the unit of the model's input kind.
PARTS_KEY = {"window": "windows", "segment": "segments", "chunk": "chunks"}
#: Units per forward pass.
BATCH = 64
#: The shortest audio classified: shorter is nearly all padding, and a genre for it would mean nothing.
MIN_SECONDS = 1.0
#: Seconds of audio a worker cuts at a time: a file is cut in pieces of about this length, and
#: short files are gathered until their audio reaches it (one batched extraction for them all).
PIECE_SECONDS = 120.0
#: Files queued per worker beyond the one it decodes.
QUEUED_PER_WORKER = 4
#: How often (seconds) this process looks whether its workers still live while it waits.
POLL_S = 1.0
#: The most worker processes chosen without ``workers=``.
MAX_AUTO_WORKERS = 8


def input_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be predicted before it is opened (``None``: try it): a folder, or nothing there."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        return f"{path} is a folder: pass the audio files in it, e.g. inputs=[{path}/song.wav]"
    if not p.exists():
        return f"input file {path} does not exist: pass existing audio files, inputs=[song.mp3,...]"
    return None


def named(probs: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Probabilities by class name, rounded to 6 decimals (the results' precision)."""
    return {c: round(float(p), 6) for c, p in zip(classes, probs)}


def non_finite_error() -> str:
    return ("the model gives non-finite probabilities (NaN) for this audio: its weights are not finite "
            "(a run that diverged?); predict with the best.ckpt of a run that trained normally")


def track_result(model: GenreClassifier, track: np.ndarray, samples: int, rate: int, units: int,
                 flags: dict[str, str], parts: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One file's result: its duration, top class and its probability, every class's probability,
    the unit it was judged by and how many, its :func:`~genre_cls.data.audio_stream.audio_flags`
    and, with ``parts``, each unit's probabilities (under ``windows``, ``segments`` or ``chunks``)."""
    classes = list(model.classes)
    top = int(track.argmax())
    out = {
        "duration_s": round(samples / rate, 3),
        "genre": classes[top],
        "probability": round(float(track[top]), 6),
        "probabilities": named(track, classes),
        "unit": model.kind.unit_text(model.input_params),
        "units": int(units),
        "flags": flags,
    }
    if parts is not None:
        out[PARTS_KEY[model.kind.unit]] = parts
    return out


def unit_seconds(model: GenreClassifier) -> float:
    """The length of the model's unit in seconds (0 when its kind has none: nothing is too short)."""
    n = model.kind.unit_samples(model.input_params)
    return 0.0 if n is None else n / model.kind.sample_rate(model.input_params)


def file_flags(model: GenreClassifier, stats: AudioStats) -> dict[str, str]:
    """:func:`~genre_cls.data.audio_stream.audio_flags` of a file decoded for ``model``."""
    return audio_flags(stats, unit_seconds(model), model.kind.unit_text(model.input_params))


# --------------------------------------------------------------------------- cutting (in the workers)


@dataclass
class _Cutter:
    """Decodes files and cuts them into a kind's units, a batch of pieces at a time.

    :meth:`take` decodes a file into pieces; :meth:`flush` cuts the pieces held (one
    :meth:`~genre_cls.data.kinds.base.InputKind.cut_many` for all) and returns the messages for
    the scoring side, in order: ``("units", file, x, padding, spans, labels)`` for each piece,
    then ``("done", file, stats)`` or ``("error", file, message)`` for each file.
    """

    kind_name: str
    input_params: dict[str, Any]
    parts: bool
    piece_samples: int
    threads: int | None = 1
    held: list[tuple] = field(default_factory=list)
    held_samples: int = 0
    #: Files whose pieces could not be cut: their error is sent, the rest of them dropped.
    failed: set[int] = field(default_factory=set)
    paths: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = kind_of(self.kind_name)
        self.rate = self.kind.sample_rate(self.input_params)

    def take(self, fid: int, path: str) -> list[tuple]:
        """Decode ``path`` into pieces; returns the messages of what had to be cut meanwhile."""
        sent: list[tuple] = []
        if (why := input_problem(path)) is not None:
            self.held.append(("error", fid, why))
            return sent
        stats = AudioStats(sample_rate=self.rate)
        self.paths[fid] = path
        try:
            for offset, piece in self.kind.pieces(decode_blocks(path, self.rate, stats), self.input_params, self.piece_samples):
                self.held.append(("piece", fid, offset, piece))
                self.held_samples += len(piece)
                if self.held_samples >= self.piece_samples:
                    sent += self.flush()
                    if fid in self.failed:
                        return sent
        except AudioDecodeError as exc:
            self._fail(fid, str(exc))
            return sent
        except Exception as exc:  # a decoder's own failure: this file's error, never the others'
            self._fail(fid, f"cannot decode audio file {path}: {one_line(exc)}")
            return sent
        self.held.append(("done", fid, stats))
        return sent

    def _fail(self, fid: int, message: str) -> None:
        """``fid`` failed while decoding: its pieces held are dropped, its error takes their place
        (pieces already sent are dropped by the scoring side when the error reaches it)."""
        self.held = [item for item in self.held if item[1] != fid]
        self.held_samples = sum(len(item[3]) for item in self.held if item[0] == "piece")
        self.held.append(("error", fid, message))
        self.paths.pop(fid, None)

    def flush(self) -> list[tuple]:
        """Cut every piece held and return the messages of everything held, in order. A file whose
        piece cannot be cut gets one error message; what comes of it later is dropped."""
        held, self.held, self.held_samples = self.held, [], 0
        cut = iter(self._cut([item[3] for item in held if item[0] == "piece"]))
        out = []
        for item in held:
            fid = item[1]
            units = next(cut) if item[0] == "piece" else None
            if fid in self.failed:
                if item[0] != "piece":  # its last message: nothing more of it will come
                    self.failed.discard(fid)
                continue
            if isinstance(units, str):
                self.failed.add(fid)
                out.append(("error", fid, f"cannot score {self.paths.pop(fid, 'this file')}: {units}"))
            elif units is not None:
                units = self.kind.place(units, item[2], self.input_params)
                out.append(("units", fid, np.ascontiguousarray(units.x.numpy()), np.asarray(units.padding, dtype=bool),
                            units.spans if self.parts else None, units.labels if self.parts else None))
            else:
                self.paths.pop(fid, None)
                out.append(item)
        return out

    def _cut(self, waves: list[np.ndarray]) -> list:
        """The units of each wave; a wave whose cut fails gets the reason instead."""
        if not waves:
            return []
        try:
            return self.kind.cut_many(waves, self.input_params, threads=self.threads)
        except Exception:  # find the piece that fails, and cut the others
            out = []
            for y in waves:
                try:
                    out.append(self.kind.cut(y, self.input_params))
                except Exception as exc:
                    out.append(f"cannot cut it into the model's units: {one_line(exc)}")
            return out


def _work(kind_name: str, input_params: dict[str, Any], parts: bool, piece_samples: int, tasks, results, parent: int) -> None:
    """A worker process: decode and cut the files it is sent on ``tasks`` (its own pipe: ``(file,
    path)``; ``None`` ends it) and send what comes of them on ``results`` (its own pipe). While
    more files wait it gathers their pieces before cutting them; when none waits, what it holds is
    cut and sent at once."""
    one_blas_thread_worker(parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)
    # Decoders (libmpg123) print their complaints about damaged files straight to stderr; the
    # file's record says what matters, and the progress bar stays readable.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    cutter = _Cutter(kind_name, input_params, parts, piece_samples)
    while True:
        if cutter.held and not tasks.poll(0):
            for message in cutter.flush():
                results.send(message)
            continue
        try:
            task = tasks.recv()
        except EOFError:  # this process's driver is gone
            return
        if task is None:
            for message in cutter.flush():
                results.send(message)
            return
        results.send(("start", task[0]))
        for message in cutter.take(*task):
            results.send(message)


def auto_workers(files: int) -> int:
    """Worker processes for ``files`` files: one per core (at most :data:`MAX_AUTO_WORKERS`), none
    (this process decodes) for a single file."""
    return 0 if files <= 1 else max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS, files))


@dataclass
class _File:
    """What the scoring side keeps of a file in flight: its running sum of unit probabilities."""

    path: str
    sums: np.ndarray
    scored: int = 0
    units: int = 0
    queued: int = 0
    finite: bool = True
    stats: AudioStats | None = None
    parts: list[dict[str, Any]] | None = None


class _Worker:
    """One worker process and its own two pipes. Nothing is shared between workers: a process
    killed while it reads or writes a queue that others share can leave that queue's lock taken,
    or a message cut in half in it, and every other process waiting on it forever."""

    def __init__(self, ctx, args: tuple) -> None:
        tasks, self.tasks = ctx.Pipe(duplex=False)
        self.results, results = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_work, args=(*args, tasks, results, os.getpid()), daemon=True)
        self.proc.start()
        tasks.close()  # this process's copies of the worker's ends: its death ends the pipe (EOF)
        results.close()
        self.files: dict[int, str] = {}  # files sent to it and not finished, in order
        self.started: set[int] = set()  # of those, the ones it has begun to decode
        self.ended = False  # told to end once its files are done
        self.gone = False  # its pipe has ended: it exited or died

    def send(self, fid: int, path: str) -> None:
        self.files[fid] = path
        self._tell((fid, path))

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self._tell(None)

    def _tell(self, task: tuple | None) -> None:
        try:
            self.tasks.send(task)
        except OSError:  # it has died: its results pipe ends too, and its replacement takes its files
            pass

    def receive(self) -> tuple | None:
        """Its next message (``None``: its pipe ended). What it sent before it died still comes."""
        try:
            message = self.results.recv()
        except (EOFError, OSError):
            self.gone = True
            self.proc.join(timeout=5)
            return None
        if message[0] == "start":
            self.started.add(message[1])
        elif message[0] in ("done", "error"):
            self.files.pop(message[1], None)
            self.started.discard(message[1])
        return message

    def close(self) -> None:
        for conn in (self.tasks, self.results):
            conn.close()


class _Workers:
    """The worker processes. A worker that dies is replaced: the files it had begun are reported
    to the caller as errors, the ones it had not begun go to its replacement."""

    def __init__(self, count: int, args: tuple) -> None:
        self.ctx = mp_context()
        self.args = args
        self.workers = [_Worker(self.ctx, args) for _ in range(count)]
        self.ended = False

    def send(self, fid: int, path: str) -> None:
        """Give file ``fid`` to the live worker with the fewest files."""
        min((w for w in self.workers if not w.gone), key=lambda w: len(w.files)).send(fid, path)

    def end(self) -> None:
        """Every file is sent: each worker ends once its files are done."""
        self.ended = True
        for worker in self.workers:
            if not worker.gone:
                worker.end()

    def messages(self, timeout: float) -> Iterator[tuple]:
        """The messages the workers have sent, waiting up to ``timeout`` seconds for the first."""
        live = {w.results: w for w in self.workers if not w.gone}
        for conn in wait_for(list(live), timeout):
            message = live[conn].receive()
            if message is not None:
                yield message

    def dead(self) -> list[tuple[int, int | None]]:
        """``(file, exit code)`` of the files begun by workers that died since the last look (a
        worker that ran out of files ends with status 0). Each dead worker is replaced and its
        files not begun are sent to the replacement, told to end as well when every file is sent."""
        lost = []
        for i, worker in enumerate(self.workers):
            # Not before its pipe has ended: the files it finished before it died are still coming.
            if not worker.gone or (worker.proc.exitcode == 0 and not worker.files):
                continue
            code = worker.proc.exitcode
            lost += [(fid, code) for fid in worker.files if fid in worker.started]
            worker.close()
            self.workers[i] = replacement = _Worker(self.ctx, self.args)
            for fid, path in worker.files.items():
                if fid not in worker.started:
                    replacement.send(fid, path)
            if self.ended:
                replacement.end()
        return lost

    def stop(self) -> None:
        for worker in self.workers:
            if worker.proc.is_alive():
                worker.proc.terminate()
        for worker in self.workers:
            worker.proc.join(timeout=5)
            worker.close()


def predict_many(model: GenreClassifier, files: Sequence[str | os.PathLike], workers: int | None = None,
                 batch: int = BATCH, parts: bool = False, progress: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Predict every file of ``files`` with ``model``; yields ``(index in files, result)`` as files finish.

    A result is :func:`track_result` with ``"file"`` first (the path as given), or ``{"file", "error"}``
    for a file that cannot be predicted (missing, not audio, damaged before any audio, non-finite
    probabilities). ``workers`` decode and cut the files (``None``: :func:`auto_workers`; 0: this
    process does); the model scores up to ``batch`` units per forward pass on its device; ``parts``
    adds each unit's probabilities; ``progress`` shows a bar with the files per second and an ETA.
    """
    files = [str(f) for f in files]
    workers = auto_workers(len(files)) if workers is None else max(0, int(workers))
    params = dict(model.input_params)
    rate = model.kind.sample_rate(params)
    cut_args = (model.input_kind, params, bool(parts), int(PIECE_SECONDS * rate))
    bar = progress_bar(len(files), progress, "predicting", " files")
    state: dict[int, _File] = {}
    buffer: list[tuple[int, np.ndarray, np.ndarray, list | None, list | None]] = []
    classes = len(model.classes)

    def score() -> None:
        """Run the model on the units buffered and add each file's probabilities up."""
        if not buffer:
            return
        x = torch.from_numpy(np.concatenate([b[1] for b in buffer]))
        probs = probabilities(model, x, batch)
        first = 0
        for fid, xs, padding, spans, labels in buffer:
            p = probs[first : first + len(xs)]
            first += len(xs)
            f = state.get(fid)
            if f is None:
                continue
            f.queued -= len(xs)
            f.finite &= bool(np.isfinite(p).all())
            f.sums += p[~padding].sum(0)
            f.scored += int((~padding).sum())
            f.units += len(xs)
            if f.parts is not None:
                f.parts += unit_parts(model, p, spans, labels, padding)
        buffer.clear()

    def finished() -> Iterator[tuple[int, dict[str, Any]]]:
        for fid in [fid for fid, f in state.items() if f.stats is not None and f.queued == 0]:
            f = state.pop(fid)
            bar.update(1)
            yield fid, _result(model, f)

    def handle(message: tuple) -> Iterator[tuple[int, dict[str, Any]]]:
        what, fid = message[0], message[1]
        if what == "units":
            f = state.get(fid)
            if f is not None:
                buffer.append((fid, *message[2:]))
                f.queued += len(message[2])
            if sum(len(b[1]) for b in buffer) >= batch:
                score()
                yield from finished()
        elif what == "done":
            if fid in state:
                state[fid].stats = message[2]
                yield from finished()
        elif what == "error":
            if state.pop(fid, None) is not None:
                bar.update(1)
                yield fid, {"file": files[fid], "error": message[2]}

    def new(fid: int) -> None:
        state[fid] = _File(files[fid], np.zeros(classes, dtype=np.float64), parts=[] if parts else None)

    threads = torch.get_num_threads()
    if workers and model.device.type == "cpu":
        # The workers keep the cores busy decoding; the model's own threads would only wait on them
        # (torch's threads spin while they wait: on a busy machine a tiny model gets many times slower).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
    try:
        if workers == 0:
            cutter = _Cutter(*cut_args, threads=None)
            for fid, path in enumerate(files):
                new(fid)
                for message in cutter.take(fid, path):
                    yield from handle(message)
                if fid == len(files) - 1 or cutter.held_samples >= cutter.piece_samples:
                    for message in cutter.flush():
                        yield from handle(message)
            score()
            yield from finished()
            return
        pool = _Workers(workers, cut_args)
        try:
            yield from _drive(pool, files, workers, state, buffer, new, handle, score, finished)
        finally:
            pool.stop()
    finally:
        bar.close()
        torch.set_num_threads(threads)


def _drive(pool: _Workers, files, workers, state, buffer, new, handle, score, finished):
    """Feed ``pool`` the files a few at a time and handle what comes back until every file is done."""
    next_file = 0
    limit = workers * (1 + QUEUED_PER_WORKER)
    while next_file < len(files) or state:
        while next_file < len(files) and len(state) < limit:
            new(next_file)
            pool.send(next_file, files[next_file])
            next_file += 1
        if next_file == len(files) and not pool.ended:
            pool.end()
        got = False
        for message in pool.messages(timeout=0 if buffer else POLL_S):
            got = True
            if message[0] != "start":
                yield from handle(message)
        if not got and buffer:  # nothing else to do now: score what is there rather than wait for a full batch
            score()
            yield from finished()
        for fid, code in pool.dead():
            how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            yield from handle(("error", fid, f"cannot decode audio file {files[fid]}: the worker decoding it "
                                            f"stopped with {how} (a crash in the decoder?); check the file"))


@torch.inference_mode()
def probabilities(model: GenreClassifier, x: torch.Tensor, batch: int = BATCH) -> np.ndarray:
    """Softmax of the model's logits, in batches on the model's device: (N, classes) float64."""
    chunks = [model(x[i : i + batch].to(model.device)).softmax(-1).double().cpu() for i in range(0, len(x), batch)]
    return torch.cat(chunks).numpy()


def unit_parts(model: GenreClassifier, probs: np.ndarray, spans, labels, padding) -> list[dict[str, Any]]:
    """Each unit's entry in a result's ``windows``, ``segments`` or ``chunks``: its labels, its span
    in seconds, whether it is padding (voted kinds), its top class and every class's probability."""
    classes = list(model.classes)
    rate = model.kind.sample_rate(model.input_params)
    voted = model.kind.voted
    return [
        {**label, "start_s": round(int(start) / rate, 3), "end_s": round(int(end) / rate, 3),
         **({"padding": bool(pad)} if voted else {}), "genre": classes[int(p.argmax())], "probabilities": named(p, classes)}
        for label, (start, end), pad, p in zip(labels, spans, padding, probs)
    ]


def too_short_error(samples: int, rate: int) -> str | None:
    """Why audio of ``samples`` at ``rate`` is too short to classify (``None``: it is not)."""
    if samples >= MIN_SECONDS * rate:
        return None
    return (f"it is {samples / rate:.2f} s of audio, too short to classify (at least {MIN_SECONDS:g} s): a damaged file, "
            "or one whose header says more than it holds")


def _result(model: GenreClassifier, f: _File) -> dict[str, Any]:
    if (why := too_short_error(f.stats.samples, f.stats.sample_rate)) is not None:
        return {"file": f.path, "error": f"cannot score {f.path}: {why}"}
    if not f.finite:
        return {"file": f.path, "error": f"cannot score {f.path}: {non_finite_error()}"}
    track = f.sums / max(1, f.scored)
    return {"file": f.path, **track_result(model, track, f.stats.samples, f.stats.sample_rate, f.units,
                                            file_flags(model, f.stats), f.parts)}


def print_results(results: Sequence[dict[str, Any]], as_json: Callable[[Sequence[dict]], str] | None,
                  as_table: Callable[[Sequence[dict]], str], draw: Callable[[Sequence[dict], Path], None],
                  plot: Path | None, what: str) -> int:
    """What ``predict`` prints for ``results`` (one per file, in order; ``{"file", "error"}`` for a
    file that failed): the JSON document of all (``as_json``, when given) or the table of those that
    worked (``as_table``) on stdout, one ``error:`` line per failed file on stderr, and with ``plot``
    the timeline of those that worked (``draw``; ``what`` says what none of them could be, e.g.
    ``classified``). Returns the exit status: 0, or 1 when a file failed."""
    good = [r for r in results if "error" not in r]
    if as_json is not None:
        print(as_json(results))
    elif good:
        print(as_table(good))
    sys.stdout.flush()
    for r in results:
        if "error" in r:
            print(f"error: {r['error']}", file=sys.stderr)
    if plot is not None:
        if good:
            draw(good, plot)
        else:
            print(f"error: no timeline written to {plot}: no input could be {what}", file=sys.stderr)
    return 0 if len(good) == len(results) else 1
