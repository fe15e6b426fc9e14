"""genre_cls/runfolder.py: where a run writes, that it never writes into another run's folder, and
what a rejected or failed run leaves behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genre_cls.errors import UserError


def test_a_resumed_run_writes_into_its_own_run_directory(tmp_path):
    from genre_cls.runfolder import resume_dir

    ckpt = tmp_path / "runs" / "r1" / "checkpoints" / "last.ckpt"
    assert resume_dir(str(ckpt), "outputs/new") == str((tmp_path / "runs" / "r1").resolve())
    assert resume_dir(None, "outputs/new") == "outputs/new"
    assert resume_dir(str(tmp_path / "elsewhere.ckpt"), "outputs/new") == "outputs/new"


def test_a_symlinked_checkpoint_resumes_in_the_folder_named(tmp_path):
    from genre_cls.runfolder import resume_dir, resume_subdir

    a = tmp_path / "runs" / "a" / "checkpoints"
    b = tmp_path / "runs" / "b" / "checkpoints"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "last.ckpt").write_bytes(b"ckpt")
    (b / "last.ckpt").symlink_to(a / "last.ckpt")
    assert resume_dir(str(b / "last.ckpt"), "new") == str(tmp_path / "runs" / "b")
    # Hydra keeps the run's own config: a resume of a run with .hydra/ saves its config beside it.
    assert resume_subdir(str(b / "last.ckpt")) == ".hydra"
    (tmp_path / "runs" / "a" / ".hydra").mkdir()
    (tmp_path / "runs" / "a" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    assert resume_subdir(str(a / "last.ckpt")).startswith(".hydra/resume-")
    assert resume_subdir(None) == ".hydra"


def test_a_run_rejected_before_work_leaves_no_folder_and_a_failed_one_says_why(cfg_factory, tmp_path):
    import json

    from genre_cls.runfolder import record_failure

    fresh = tmp_path / "fresh"
    (fresh / ".hydra").mkdir(parents=True)
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        (fresh / ".hydra" / name).write_text("x: 1\n")
    (fresh / "train.log").write_text("")
    record_failure(cfg_factory([], out=fresh), UserError("no tracks"))
    assert not fresh.exists()

    started = tmp_path / "started"
    (started / "checkpoints").mkdir(parents=True)
    record_failure(cfg_factory([], out=started), UserError("the training loss became nan"))
    assert json.loads((started / "failed.json").read_text()) == {"error": "UserError: the training loss became nan"}

    resumed = tmp_path / "resumed"
    (resumed / ".hydra").mkdir(parents=True)
    record_failure(cfg_factory(["ckpt_path=x.ckpt"], out=resumed), UserError("other data"))
    assert resumed.exists() and not (resumed / "failed.json").exists()  # the original run is left alone


def test_the_run_dir_check_leaves_nothing_behind(tmp_path, monkeypatch):
    from genre_cls.runfolder import check_run_dir

    monkeypatch.chdir(tmp_path)
    check_run_dir([f"hydra.run.dir={tmp_path}/a/b/c"])
    check_run_dir([])
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_run_dir([f"hydra.run.dir={tmp_path}/file/run"])


def _listing(root):
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_a_folder_holding_a_run_is_written_only_by_its_resume(tmp_path, monkeypatch):
    from genre_cls.runfolder import check_run_dir

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "metrics.json").write_text("{}")
    before = _listing(run)
    with pytest.raises(UserError) as err:
        check_run_dir([f"hydra.run.dir={run}", "seed=2"])
    assert str(err.value).startswith(f"hydra.run.dir={run} holds another run's results (checkpoints, metrics.json): nothing was written")
    assert f"resume that run with ckpt_path={run}/checkpoints/last.ckpt" in str(err.value)
    assert _listing(run) == before
    check_run_dir([f"hydra.run.dir={run}", f"ckpt_path={run}/checkpoints/last.ckpt"])  # its own resume
    with pytest.raises(UserError, match="holds another run's results"):  # another run's resume
        check_run_dir([f"hydra.run.dir={run}", f"ckpt_path={tmp_path}/other/checkpoints/last.ckpt"])
    for name in ("failed.json", "events.out.tfevents.1.host.2.0", ".hydra", "metrics_epoch5.json"):
        other = tmp_path / name.replace(".", "_")
        other.mkdir()
        (other / name).write_text("")
        with pytest.raises(UserError, match="holds another run's results"):
            check_run_dir([f"hydra.run.dir={other}"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    check_run_dir([f"hydra.run.dir={empty}"])
    check_run_dir([f"hydra.run.dir={tmp_path / 'notes'}"])  # files no run writes are not in the way

    sweep = tmp_path / "sweep"
    (sweep / "0_net1" / ".hydra").mkdir(parents=True)
    with pytest.raises(UserError, match=f"hydra.sweep.dir={sweep} holds an earlier sweep's runs \\(0_net1/.hydra\\)"):
        check_run_dir(["-m", f"hydra.sweep.dir={sweep}"])


def _env(folder: Path) -> dict[str, str]:
    return {**os.environ, "GENRE_CLS_CACHE": str(folder / "cache")}


def test_fresh_folders_of_runs_started_together_are_distinct(tmp_path):
    """The default run folder is <time>_<model>: two processes resolving the same name at once get
    two folders (the second -2), each claimed by creating it."""
    code = "import sys; from genre_cls.runfolder import fresh_dir; print(fresh_dir(sys.argv[1]))"
    name = str(tmp_path / "12-00-00_net1")
    procs = [subprocess.Popen([sys.executable, "-c", code, name], env=_env(tmp_path), stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    got = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert got == [name, f"{name}-2", f"{name}-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["12-00-00_net1", "12-00-00_net1-2", "12-00-00_net1-3"]
    # and the same name asked again in one process is the same folder (Hydra resolves it more than once)
    from genre_cls.runfolder import fresh_dir

    first = fresh_dir(str(tmp_path / "again"))
    assert fresh_dir(str(tmp_path / "again")) == first == str(tmp_path / "again")


def test_one_folder_claimed_by_two_processes_goes_to_one(tmp_path):
    """Two runs given the same new folder at the same moment both pass the check of its contents
    (still empty); the exclusive claim lets one of them in and refuses the other."""
    code = ("import sys, time; from pathlib import Path; from genre_cls.runfolder import claim_run_dir\n"
            "try:\n    claim_run_dir(Path(sys.argv[1])); print('claimed', flush=True); time.sleep(5)\n"
            "except Exception as exc:\n    print('refused:', exc, flush=True)\n")
    folder = tmp_path / "same"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(folder)], env=_env(tmp_path), stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs[0] == "claimed" and outs[1].startswith(f"refused: the run in {folder} is still running (process ")


def test_a_claim_left_by_a_dead_process_is_taken_over_and_released(tmp_path, cfg_factory):
    import socket

    from genre_cls.runfolder import claim_run_dir, record_failure, release_run_dir
    from genre_cls.errors import UserError

    out = tmp_path / "run"
    out.mkdir()
    (out / ".running").write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname()}))  # no such process
    assert claim_run_dir(out) and claim_run_dir(out)  # taken over; a second claim by the same process is fine
    assert json.loads((out / ".running").read_text())["pid"] == os.getpid()
    release_run_dir(out)
    assert not (out / ".running").exists()
    # a config rejected after Hydra claimed the folder leaves no folder (the mark is this process's)
    claim_run_dir(out)
    record_failure(cfg_factory([], out=out), UserError("no tracks"))
    assert not out.exists()


def test_a_folder_refused_for_a_failed_run_suggests_no_checkpoint_it_lacks(tmp_path):
    from genre_cls.runfolder import check_run_dir

    run = tmp_path / "run"
    run.mkdir()
    (run / "failed.json").write_text('{"error": "UserError: no tracks"}')
    with pytest.raises(UserError) as err:
        check_run_dir([f"hydra.run.dir={run}"])
    assert str(err.value) == (f"hydra.run.dir={run} holds another run's results (failed.json): nothing was written; choose "
                              "a new or empty folder (or leave hydra.run.dir out for a fresh one)")
