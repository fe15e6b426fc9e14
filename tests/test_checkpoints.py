"""genre_cls/checkpoints.py: a resume continues its own run (the same definition, data, epochs and
checkpoints) or is one line; a file that is not a checkpoint is one line."""

import pytest

from genre_cls.errors import UserError
from genre_cls.settings import validate


def _fake_last_ckpt(path, identity):
    import torch

    from genre_cls.checkpoints import RUN_KEY
    from genre_cls.systems.classifier import CHECKPOINT_FORMAT

    torch.save({"genre_cls": CHECKPOINT_FORMAT, "epoch": 1, "optimizer_states": [], RUN_KEY: identity,
                "hyper_parameters": {"model_name": identity["model"]}}, path)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ("seed=8", "belongs to a run with seed=7, not seed=8: resume with seed=7, or start a fresh run without ckpt_path="),
        ("optim=rmsprop", "belongs to a run with optim=adam, not optim=rmsprop"),
        ("data.split=segment", "belongs to a run with data.split=track, not data.split=segment"),
        ("data.fractions=[0.6,0.2,0.2]", "data.fractions=[0.7,0.1,0.2], not data.fractions=[0.6,0.2,0.2]"),
        ("data.root=OTHER", "belongs to a run with data.root="),
    ],
)
def test_resuming_with_another_run_definition_is_refused(cfg_factory, tmp_path, change, message):
    from genre_cls.checkpoints import run_identity

    ckpt = _fake_last_ckpt(tmp_path / "last.ckpt", run_identity(cfg_factory(["seed=7"])))
    validate(cfg_factory(["seed=7", f"ckpt_path={ckpt}"]))  # the same definition resumes
    other = tmp_path / "other_root"
    other.mkdir()
    cfg = cfg_factory(["seed=7", f"ckpt_path={ckpt}", change.replace("OTHER", str(other))])
    if change.startswith("data.root"):
        cfg.data.root = str(other)  # the factory pins data.root to the synthetic tree
    with pytest.raises(UserError) as err:
        validate(cfg)
    assert message in str(err.value)


def test_resume_refuses_changed_data_and_keeps_the_original_splits(tmp_path):
    from types import SimpleNamespace

    from genre_cls.data.tracks import Track
    from genre_cls.checkpoints import check_resume_data, data_fingerprint, write_once

    files = []
    for i in range(3):
        f = tmp_path / f"blues.0000{i}.wav"
        f.write_bytes(b"x" * (10 + i))
        files.append(f)
    dm = SimpleNamespace(index=SimpleNamespace(tracks=[Track(f.stem, "blues", f) for f in files]))
    before = data_fingerprint(dm)
    ckpt = _fake_last_ckpt(tmp_path / "last.ckpt", {"model": "net3", "data.fingerprint": before})
    cfg = SimpleNamespace(ckpt_path=str(ckpt))
    check_resume_data(cfg, before, tmp_path)
    files[1].write_bytes(b"y" * 99)  # a file replaced by another
    after = data_fingerprint(dm)
    assert after != before
    with pytest.raises(UserError, match="was trained on other data"):
        check_resume_data(cfg, after, tmp_path)

    splits = tmp_path / "splits.json"
    write_once(splits, {"train": ["a"], "seed": 1}, resuming=False)
    stamp = splits.stat().st_mtime_ns
    write_once(splits, {"train": ["a"], "seed": 1}, resuming=True)  # the same: kept, not rewritten
    assert splits.stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="split the data differently"):
        write_once(splits, {"train": ["b"], "seed": 1}, resuming=True)


def test_a_text_file_as_checkpoint_is_one_clear_line(cfg_factory, tmp_path):
    from genre_cls.predict import load_classifier

    notes = tmp_path / "notes.ckpt"
    notes.write_text("these are my notes, not a checkpoint\n")
    with pytest.raises(UserError, match="is not a checkpoint: it is a text file") as err:
        validate(cfg_factory([f"ckpt_path={notes}"]))
    assert "101" not in str(err.value)
    with pytest.raises(UserError, match="is not a genre_cls checkpoint \\(it is a text file"):
        load_classifier(notes)


def _trained_run(cfg_factory, out, epochs=2, extra=()):
    from genre_cls.train import train

    train(cfg_factory(["model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16", f"epochs={epochs}", *extra], out=out))
    return out / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_a_resume_with_fewer_epochs_than_trained_is_refused(cfg_factory, tmp_path):
    import json

    from genre_cls.checkpoints import epochs_done, load_checkpoint_state

    last = _trained_run(cfg_factory, tmp_path / "run")
    assert epochs_done(load_checkpoint_state(str(last))) == 2
    before = (tmp_path / "run" / "metrics.json").read_text()
    tiny = ["model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16", f"ckpt_path={last}"]
    with pytest.raises(UserError) as err:
        validate(cfg_factory([*tiny, "epochs=1"], out=tmp_path / "run"))
    assert str(err.value).startswith(f"ckpt_path '{last}' has already trained 2 epochs, more than epochs=1: resume with epochs=2")
    validate(cfg_factory([*tiny, "epochs=2"], out=tmp_path / "run"))  # as many: allowed
    assert json.loads(before)["epochs_trained"] == 2
    # test_at epochs the run passed without keeping their best checkpoint cannot be tested any more
    with pytest.raises(UserError, match=r"test_at=\[1\]: ckpt_path .* kept no best checkpoint up to epoch 1"):
        validate(cfg_factory([*tiny, "epochs=3", "test_at=[1]"], out=tmp_path / "run"))
    validate(cfg_factory([*tiny, "epochs=4", "test_at=[3]"], out=tmp_path / "run"))  # still ahead: fine


@pytest.mark.slow
def test_a_resume_keeps_test_at_epochs_the_run_kept(cfg_factory, tmp_path):
    last = _trained_run(cfg_factory, tmp_path / "run", epochs=2, extra=["test_at=[1]"])
    assert (last.parent / "best_upto_epoch1.ckpt").is_file()
    validate(cfg_factory(["model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16", "epochs=3", "test_at=[1]",
                          f"ckpt_path={last}"], out=tmp_path / "run"))


@pytest.mark.parametrize(
    "was, now, message",
    [
        (["middle", 30.0], ["middle", 10.0], "with data.clip=middle data.clip_seconds=30.0, not data.clip=middle "
         "data.clip_seconds=10.0: resume with data.clip=middle data.clip_seconds=30.0, or start"),
        (["first", 30.0], None, "with data.clip=first data.clip_seconds=30.0, not data.clip_seconds=null: resume"),
        (None, ["middle", 30.0], "with data.clip_seconds=null, not data.clip=middle data.clip_seconds=30.0: resume "
         "with data.clip_seconds=null, or"),
    ],
)
def test_a_refused_clip_says_the_two_overrides_that_resume(was, now, message):
    # data.clip=[middle,30.0] would be no valid override: data.clip is a name, its length another key
    from genre_cls.checkpoints import check_identity

    with pytest.raises(UserError) as err:
        check_identity("last.ckpt", {"data.clip": was, "seed": 0}, {"data.clip": now, "seed": 0})
    assert message in str(err.value)
    assert "[" not in str(err.value)
