"""The synthetic GTZAN on disk, in the Kaggle layout: ``python -m genre_cls.data.synth OUT``.

No data set can be downloaded on the build machines, so the quick start and the test
suite run on this stand-in::

    out/genres_original/<genre>/<genre>.000NN.wav    16-bit PCM, 22,050 Hz, mono, 30 s
    out/images_original/<genre>/<genre>000NN.png     432x288 RGBA mel spectrogram
    out/README.txt                                   what this is and how it was made
    out/.complete                                    the parameters (JSON), written last

Like the real Kaggle copy (whose ``jazz.00054.wav`` cannot be decoded), one jazz wav is
corrupt: a RIFF/WAVE header followed by random bytes, with no png. Its index is 54 when
there are enough tracks, else the last jazz track (:func:`corrupt_track_id`). The music is
:func:`genre_cls.data.synth.music.synth_track`'s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal as posix_signal
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
from threadpoolctl import threadpool_limits  # installed with librosa (via scikit-learn)

from genre_cls import GENRES, MAX_SYNTH_TRACKS_PER_GENRE
from genre_cls.data.melimage import MEL_IMAGE_VERSION, render_mel_png
from genre_cls.data.synth.music import SYNTH_VERSION, synth_track
from genre_cls.data.processes import max_workers, process_alive, process_pool
from genre_cls.errors import ArgumentParser, UserError, exit_with, one_line, user_errors

#: The file the generator keeps in a set while it writes it (the parameters and the writer's
#: pid): a set holding it is not finished, and nothing reads it.
GENERATING = ".generating"
CORRUPT_GENRE = "jazz"
_CORRUPT_INDEX = 54  # the real Kaggle copy's broken track
_MARKER = ".complete"
_IN_PROGRESS = GENERATING
_README_HEAD = "Synthetic GTZAN (genre_cls.data.synth)"


def track_id(genre: str, index: int) -> str:
    """``("jazz", 54)`` -> ``"jazz.00054"``."""
    return f"{genre}.{index:05d}"


def corrupt_track_id(tracks_per_genre: int) -> str:
    """The id of the deliberately corrupt wav: ``jazz.00054`` as in the real set, else the last jazz."""
    return track_id(CORRUPT_GENRE, min(_CORRUPT_INDEX, tracks_per_genre - 1))


def wav_path(out: Path, genre: str, index: int) -> Path:
    """``out/genres_original/<genre>/<genre>.000NN.wav``."""
    return Path(out) / "genres_original" / genre / f"{track_id(genre, index)}.wav"


def png_path(out: Path, genre: str, index: int) -> Path:
    """``out/images_original/<genre>/<genre>000NN.png`` (no dot before the number, as in Kaggle's copy)."""
    return Path(out) / "images_original" / genre / f"{genre}{index:05d}.png"


def _params(tracks_per_genre: int, seed: int, duration: float, sr: int, corrupt: bool) -> dict:
    return {
        "generator": "genre_cls.data.synth",
        "synth_version": SYNTH_VERSION,
        "mel_image_version": MEL_IMAGE_VERSION,
        "tracks_per_genre": int(tracks_per_genre),
        "seed": int(seed),
        "duration": float(duration),
        "sr": int(sr),
        "corrupt": bool(corrupt),
    }


def _track_rng(seed: int, genre: str, index: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), GENRES.index(genre), int(index), salt])


def _write_track(job: tuple[Path, str, int, int, float, int, bool]) -> str:
    """Render and write one track (wav + png), or the corrupt wav. Returns the track id."""
    out, genre, index, seed, duration, sr, corrupt = job
    wav = wav_path(out, genre, index)
    wav.parent.mkdir(parents=True, exist_ok=True)
    if corrupt:
        # A RIFF/WAVE header that promises a format chunk, then noise: nothing decodes it.
        rng = _track_rng(seed, genre, index, salt=1)
        body = rng.integers(0, 256, 2 * int(round(duration * sr)) + 32, dtype=np.uint8).tobytes()
        body = body.replace(b"fmt ", b"fmt\0").replace(b"data", b"dat\0")  # no chunk a reader could use
        wav.write_bytes(b"RIFF" + struct.pack("<I", len(body) + 4) + b"WAVE" + body)
        return track_id(genre, index)
    y = synth_track(genre, _track_rng(seed, genre, index), duration, sr)
    pcm = np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)
    sf.write(wav, pcm, sr, subtype="PCM_16")
    # The image is rendered from the samples as they are stored, as a reader of the wav would.
    render_mel_png(pcm.astype(np.float32) / 32768.0, sr, png_path(out, genre, index))
    return track_id(genre, index)


def is_complete(
    out: str | os.PathLike, tracks_per_genre: int = 30, seed: int = 0, duration: float = 30.0, sr: int = 22050,
    corrupt: bool = True, progress: bool = True, workers: int | None = None,
) -> bool:
    """Whether ``out`` holds a finished tree generated with these parameters (and this generator version).

    ``progress`` and ``workers`` do not change the output and are accepted only so that the
    keyword arguments of :func:`generate` can be passed straight through.
    """
    marker = Path(out) / _MARKER
    try:
        return json.loads(marker.read_text()) == _params(tracks_per_genre, seed, duration, sr, corrupt)
    except (OSError, ValueError):
        return False


def _is_ours(out: Path) -> bool:
    """Whether ``out`` holds a tree (complete or not) that this generator wrote."""
    readme = out / "README.txt"
    return (
        (out / _MARKER).exists()
        or (out / _IN_PROGRESS).exists()
        or (readme.exists() and readme.read_text(errors="replace").startswith(_README_HEAD))
    )


def _settings(params: dict) -> str:
    """Parameters as the command line sets them: ``--tracks-per-genre 30 --seed 0 --duration 30``."""
    return f"--tracks-per-genre {params.get('tracks_per_genre')} --seed {params.get('seed')} --duration {params.get('duration'):g}"


def check_replaceable(out: Path, params: dict) -> None:
    """Raise ``FileExistsError`` (one line) unless generating into ``out`` loses nothing: it may
    hold nothing of ours, or a synthetic tree whose generation was stopped (an unfinished tree is
    made again). A finished tree made with other parameters, a tree another process is writing
    now and anything this generator did not write are never replaced or mixed with."""
    if not out.is_dir():
        return
    readme = out / "README.txt"
    layout = [out / "genres_original", out / "images_original"]
    if not _is_ours(out):
        if any(p.exists() for p in layout):
            raise FileExistsError(f"{out} holds a GTZAN tree that this generator did not write; not overwriting it")
        if readme.exists():
            raise FileExistsError(f"{out} holds a README.txt that this generator did not write; give another folder")
        return
    try:
        made = json.loads((out / _MARKER).read_text())
    except (OSError, ValueError):
        made = None
    if isinstance(made, dict) and made != params:
        same = {k: made.get(k) for k in ("tracks_per_genre", "seed", "duration")} == {
            k: params[k] for k in ("tracks_per_genre", "seed", "duration")
        }
        how = "an older version of this generator" if same else _settings(made)
        raise FileExistsError(
            f"{out} holds a synthetic set made with {how}: not replacing it; give another folder for "
            f"{_settings(params)}, or remove {out} first"
        )
    try:
        writer = int(json.loads((out / _IN_PROGRESS).read_text()).get("pid", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        writer = 0
    if writer and writer != os.getpid() and process_alive(writer):
        raise FileExistsError(f"process {writer} is generating a synthetic set in {out} now: wait for it, or give another folder")


def _clear(out: Path) -> None:
    """Remove a previous (unfinished) synthetic tree from ``out``; refuse to touch anything else."""
    layout = [out / "genres_original", out / "images_original"]
    if not _is_ours(out):
        if any(p.exists() for p in layout):
            raise FileExistsError(f"{out} holds a GTZAN tree that this generator did not write; not overwriting it")
        return
    for p in layout:
        shutil.rmtree(p, ignore_errors=True)
    for name in ("README.txt", _MARKER):
        (out / name).unlink(missing_ok=True)


def _remove_partial(out: Path, created: bool) -> list[str]:
    """After a stopped generation: remove what it wrote into ``out`` (all of ``out`` when it
    made the folder). Returns the names of what could not be removed."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return [out.name] if out.exists() else []
    for name in ("genres_original", "images_original"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("README.txt", _MARKER, _IN_PROGRESS):
        try:
            (out / name).unlink(missing_ok=True)
        except OSError:
            pass
    return [n for n in ("genres_original", "images_original", "README.txt", _MARKER, _IN_PROGRESS) if (out / n).exists()]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`generate`; ``left`` names what of the partial set is still in the folder."""

    def __init__(self, out: Path, left: list[str]) -> None:
        super().__init__(str(out))
        self.out, self.left = out, left


def generate(
    out: str | os.PathLike, tracks_per_genre: int = 30, seed: int = 0, duration: float = 30.0, sr: int = 22050,
    corrupt: bool = True, progress: bool = True, workers: int | None = None,
) -> Path:
    """Write the synthetic GTZAN tree into ``out`` (see the module docstring) and return its path.

    A tree already complete with the same parameters is left as it is, and an unfinished one
    is made again; anything else already in ``out`` is never replaced (:func:`check_replaceable`).
    A generation stopped by an error or Ctrl-C removes what it wrote (Ctrl-C raises
    :class:`Interrupted`, which names anything left). The result is identical for any
    ``workers`` (default: ``min(cpus, 4)``; ``0`` or ``1`` renders in this process).
    """
    out = Path(out)
    check_params(tracks_per_genre, seed, duration, sr)
    if is_complete(out, tracks_per_genre, seed, duration, sr, corrupt):
        return out
    check_replaceable(out, _params(tracks_per_genre, seed, duration, sr, corrupt))
    created = not out.exists()
    try:
        return _generate(out, tracks_per_genre, seed, duration, sr, corrupt, progress, workers)
    except KeyboardInterrupt:
        raise Interrupted(out, _remove_partial(out, created)) from None
    except BaseException:
        _remove_partial(out, created)
        raise


#: The longest clip the generator writes (memory grows with it; GTZAN's are 30 s).
MAX_DURATION = 600.0


def check_params(tracks_per_genre: int, seed: int, duration: float, sr: int) -> None:
    """Raise ``ValueError`` (one line) for parameters that cannot make a tree, before any file is written."""
    if not isinstance(tracks_per_genre, int) or not 1 <= tracks_per_genre <= MAX_SYNTH_TRACKS_PER_GENRE:
        raise ValueError(f"tracks per genre must be a whole number from 1 to {MAX_SYNTH_TRACKS_PER_GENRE} "
                         f"(GTZAN has 100), got {tracks_per_genre}")
    if not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a whole number >= 0, got {seed}")
    if not (isinstance(duration, (int, float)) and 1.0 <= duration <= MAX_DURATION):
        raise ValueError(f"duration must be between 1 and {MAX_DURATION:g} seconds, got {duration:g}")
    if not isinstance(sr, int) or not 8000 <= sr <= 192000:
        raise ValueError(f"sample rate must be between 8000 and 192000 Hz, got {sr}")


def remove_stale_builds(target: str | os.PathLike) -> None:
    """Remove ``<target>.tmp<pid>`` folders that processes which no longer run left behind
    (a synthetic set built aside and renamed into place; see ``GenreDataModule.prepare_data``)."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    for tmp in target.parent.glob(f"{target.name}.tmp*"):
        pid = tmp.name[len(target.name) + 4 :]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _generate(
    out: Path, tracks_per_genre: int, seed: int, duration: float, sr: int, corrupt: bool, progress: bool, workers: int | None
) -> Path:
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    params = _params(tracks_per_genre, seed, duration, sr, corrupt)
    (out / _IN_PROGRESS).write_text(json.dumps({**params, "pid": os.getpid()}))

    bad = corrupt_track_id(tracks_per_genre) if corrupt else None
    jobs = [(out, g, i, seed, duration, sr, track_id(g, i) == bad) for g in GENRES for i in range(tracks_per_genre)]
    if workers is None:
        workers = min(os.cpu_count() or 1, 4)
    bar = tqdm(total=len(jobs), desc="synthetic GTZAN", unit="track", disable=not progress)
    # One BLAS thread per renderer: faster with a process per core, and the same numbers
    # whatever the number of workers.
    if workers > 1 and len(jobs) > workers:
        render_mel_png(np.zeros(sr, dtype=np.float32), sr)  # load librosa's lazy modules once, before forking
        with process_pool(workers) as pool:
            for _ in pool.map(_write_track, jobs, chunksize=2):
                bar.update()
    else:
        with threadpool_limits(1):
            for job in jobs:
                _write_track(job)
                bar.update()
    bar.close()

    lines = [
        _README_HEAD + ": generated audio, not music recordings.",
        "",
        "Kaggle layout: genres_original/<genre>/<genre>.000NN.wav (16-bit PCM, mono),",
        "images_original/<genre>/<genre>000NN.png (432x288 RGBA mel spectrograms).",
        f"Genres: {', '.join(GENRES)}.",
        f"Parameters: seed={seed}, tracks_per_genre={tracks_per_genre}, duration={duration:g} s, sr={sr} Hz,"
        f" synth_version={SYNTH_VERSION}, mel_image_version={MEL_IMAGE_VERSION}.",
        f"Corrupt on purpose (like the real jazz.00054.wav): {bad}.wav, which has no png." if bad else
        "No corrupt file.",
        "",
        f"Regenerate with: python -m genre_cls.data.synth OUT --tracks-per-genre {tracks_per_genre} --seed {seed}"
        f" --duration {duration:g}",
    ]
    (out / "README.txt").write_text("\n".join(lines) + "\n")
    (out / _MARKER).write_text(json.dumps(params, indent=2) + "\n")
    (out / _IN_PROGRESS).unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> None:
    """``python -m genre_cls.data.synth OUT [--tracks-per-genre N] [--seed S] [--duration SEC]``."""
    parser = ArgumentParser(
        prog="python -m genre_cls.data.synth", description="Write a deterministic synthetic GTZAN (Kaggle layout)."
    )
    parser.add_argument("out", type=Path, help="folder to write (genres_original/, images_original/, README.txt)")
    parser.add_argument("--tracks-per-genre", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per clip")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: min(cpus, 4))")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    received: list[int] = []

    def stop(signum: int, frame) -> None:  # SIGTERM (kill, a scheduler) stops it like Ctrl-C
        received.append(signum)
        raise KeyboardInterrupt

    previous = posix_signal.signal(posix_signal.SIGTERM, stop)
    with user_errors():
        if args.out.exists() and not args.out.is_dir():
            raise UserError(f"{str(args.out)!r} is a file: give a folder to write the synthetic set into")
        if args.workers is not None and not 0 <= args.workers <= max_workers():
            raise UserError(f"--workers must be between 0 and {max_workers()} (4 per core), got {args.workers}")
        try:
            out = generate(args.out, tracks_per_genre=args.tracks_per_genre, seed=args.seed, duration=args.duration,
                           progress=not args.quiet, workers=args.workers)
        except (ValueError, FileExistsError) as exc:
            raise UserError(str(exc)) from None
        except Interrupted as exc:  # Ctrl-C: generate() has removed what it had written
            status = 128 + (received[0] if received else posix_signal.SIGINT)
            if exc.left:
                exit_with(f"interrupted: the partial synthetic set in {args.out} could not all be removed: "
                          f"{', '.join(exc.left)} are left; remove them, then run the same command again", status)
            exit_with(f"interrupted: the partial synthetic set in {args.out} was removed; run the same command again", status)
        except OSError as exc:  # a folder that cannot be created or written (/proc/x, read-only, full)
            reason = exc.strerror or one_line(exc)
            raise UserError(f"cannot write the synthetic set to {args.out}: {reason}; choose a folder you can write to") from None
        finally:
            posix_signal.signal(posix_signal.SIGTERM, previous)
    n = len(GENRES) * args.tracks_per_genre
    print(f"wrote {n} tracks ({len(GENRES)} genres x {args.tracks_per_genre}, corrupt on purpose: "
          f"{corrupt_track_id(args.tracks_per_genre)}.wav) to {out}")


if __name__ == "__main__":
    main()
