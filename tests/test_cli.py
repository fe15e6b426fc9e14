"""Every command answers a mistake the user can fix with one ``error:`` line on stderr and exit
status 2 (README: errors.py, "Predict your own music", "Kills, restarts and broken caches")."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# Every command, each a process that imports torch.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

# (id, arguments of python -m ..., a fragment of the one error line); {tmp} is a fresh folder.
# Each a process that imports torch (seconds of CPU): one mistake per way a command can end, and
# one for each command that runs through Hydra; the messages of every other setting, and the
# argparse commands' (bench, synth, report), are checked in this process through the same exit
# paths (test_settings.py, test_cmdline.py, test_hardware.py, test_sweeps.py, test_robustness.py,
# test_predict.py, test_evaluate.py, test_bench.py, test_synth.py, test_report.py).
MISTAKES = [
    # The command line, checked before Hydra starts (-m after the settings, where Hydra's own
    # parser would print its usage block).
    ("train-unknown-model", ["genre_cls.train", "model=net9", "-m"], "unknown model 'net9'"),
    # What Hydra checks itself (hydra/... groups, hydra.* keys), several paragraphs from Hydra.
    ("train-unknown-launcher", ["genre_cls.train", "hydra/launcher=nope"],
     "error: In 'hydra/config': Could not find 'hydra/launcher/nope'; available options in 'hydra/launcher': basic, joblib"),
    # A setting, checked by the run itself inside Hydra's task function.
    ("train-negative-lr", ["genre_cls.train", "lr=-1"], "lr must be > 0, got -1"),
    # A sweep whose last run is wrong stops before its first run trains.
    ("train-sweep-bad-point", ["genre_cls.train", "-m", "epochs=1,0"], "sweep run 2 of 2 (epochs=0): epochs must be a whole number >= 1"),
    ("predict-folder-without-audio", ["genre_cls.predict", "ckpt={tmp}/run", "inputs=[{tmp}/run/.hydra]"],
     "no audio files under {tmp}/run/.hydra (found 1 not audio)"),
    ("evaluate-unknown-data-key", ["genre_cls.evaluate", "ckpt={tmp}/run", "data.rooot=x"], "unknown setting 'data.rooot'"),
    ("report-not-a-directory", ["genre_cls.report", "{tmp}/song.wav"], "is not a directory"),
    ("synth-bad-number", ["genre_cls.data.synth", "{tmp}/synth", "--tracks-per-genre", "ten"], "invalid int value: 'ten'"),
]


# Commands run at once: each mostly imports torch (one core, a few hundred MB of memory).
AT_ONCE = 4


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, dict, dict, Path]]:
    """Every command of MISTAKES, AT_ONCE at a time, each in a folder that holds an audio file
    and a run with a weights-only checkpoint; and that folder's files before and after."""
    import torch

    from genre_cls.systems.classifier import CHECKPOINT_FORMAT

    def answer(args: list[str], tmp: Path) -> tuple[subprocess.CompletedProcess, dict, dict, Path]:
        (tmp / "song.wav").write_bytes(b"RIFF")
        (tmp / "run" / "checkpoints").mkdir(parents=True)
        (tmp / "run" / ".hydra").mkdir()
        (tmp / "run" / ".hydra" / "config.yaml").write_text("model:\n  name: net5\n")
        torch.save({"genre_cls": CHECKPOINT_FORMAT, "epoch": 3, "state_dict": {}}, tmp / "run" / "checkpoints" / "best.ckpt")
        before = _files(tmp)
        env = {**os.environ, "PYTHONPATH": str(REPO), "GENRE_CLS_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", *(a.format(tmp=tmp) for a in args)]
        proc = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
        return proc, before, _files(tmp), tmp

    folders = {name: tmp_path_factory.mktemp(name) for name, _, _ in MISTAKES}  # here: pytest's numbering is not thread-safe
    with ThreadPoolExecutor(AT_ONCE) as pool:
        futures = {name: pool.submit(answer, args, folders[name]) for name, args, _ in MISTAKES}
        return {name: future.result() for name, future in futures.items()}


def _files(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (``None``) under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("name, fragment", [(n, f) for n, _, f in MISTAKES], ids=[n for n, _, _ in MISTAKES])
def test_a_user_mistake_is_one_error_line_and_exit_status_2(answers, name, fragment):
    proc, before, after, tmp = answers[name]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    fragment = fragment.format(tmp=tmp)
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    assert after == before  # nothing written or changed, no run folder made: no work started
