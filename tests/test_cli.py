"""Every command answers a mistake the user can fix with one ``error:`` line on stderr and exit
status 2 (README: errors.py, "Predict your own music", "Kills, restarts and broken caches")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# (id, arguments of python -m ..., a fragment of the one error line); {tmp} is a fresh folder.
MISTAKES = [
    ("train-unknown-model", ["genre_cls.train", "model=net9"], "unknown model 'net9'"),
    # A weights-only best.ckpt cannot resume; the run it belongs to keeps its own .hydra/ record.
    ("train-resume-best-ckpt", ["genre_cls.train", "ckpt_path={tmp}/run/checkpoints/best.ckpt"], "holds weights only"),
    ("predict-missing-ckpt", ["genre_cls.predict", "ckpt={tmp}/best.ckpt", "inputs=[{tmp}/song.wav]"], "does not exist"),
    ("report-not-a-directory", ["genre_cls.report", "{tmp}/song.wav"], "is not a directory"),
    ("synth-bad-number", ["genre_cls.data.synth", "{tmp}/synth", "--tracks-per-genre", "ten"], "invalid int value: 'ten'"),
    ("synth-out-is-a-file", ["genre_cls.data.synth", "{tmp}/song.wav", "--tracks-per-genre", "1"], "is a file: give a folder"),
    ("bench-missing-root", ["genre_cls.bench", "features", "--root", "{tmp}/gtzan"], "--root"),
]


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, dict, dict]]:
    """Every command of MISTAKES, run at once (each one mostly waits for its imports), in a
    folder that holds an audio file and a run with a weights-only checkpoint; and that folder's
    files before and after."""
    import torch

    from genre_cls.systems.classifier import CHECKPOINT_FORMAT

    running = {}
    for name, args, _ in MISTAKES:
        tmp = tmp_path_factory.mktemp(name)
        (tmp / "song.wav").write_bytes(b"RIFF")
        (tmp / "run" / "checkpoints").mkdir(parents=True)
        (tmp / "run" / ".hydra").mkdir()
        (tmp / "run" / ".hydra" / "config.yaml").write_text("model:\n  name: net5\n")
        torch.save({"genre_cls": CHECKPOINT_FORMAT, "epoch": 3, "state_dict": {}}, tmp / "run" / "checkpoints" / "best.ckpt")
        before = _files(tmp)
        env = {**os.environ, "PYTHONPATH": str(REPO), "GENRE_CLS_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
        argv = [sys.executable, "-m", *(a.format(tmp=tmp) for a in args)]
        running[name] = (subprocess.Popen(argv, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), tmp, before)
    done = {}
    for name, (proc, tmp, before) in running.items():
        out, err = proc.communicate(timeout=300)
        done[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), before, _files(tmp))
    return done


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name, fragment", [(n, f) for n, _, f in MISTAKES], ids=[n for n, _, _ in MISTAKES])
def test_a_user_mistake_is_one_error_line_and_exit_status_2(answers, name, fragment):
    proc, before, after = answers[name]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    assert after == before  # nothing written or changed: no work started
