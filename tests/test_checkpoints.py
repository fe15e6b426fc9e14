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


def _complete_last_ckpt(path, cfg):
    """A last.ckpt as this version writes it: the whole identity of ``cfg``'s run and its settings."""
    import torch

    from genre_cls.checkpoints import RUN_KEY, SETTINGS_KEY, resume_settings, run_identity
    from genre_cls.systems.classifier import CHECKPOINT_FORMAT

    torch.save({"genre_cls": CHECKPOINT_FORMAT, "epoch": 1, "optimizer_states": [], RUN_KEY: run_identity(cfg),
                SETTINGS_KEY: resume_settings(cfg), "hyper_parameters": {"model_name": cfg.model.name}}, path)
    return path


@pytest.mark.parametrize(
    "model, change, message",
    [
        ("net5", "model.arch_kwargs.hidden=64", "with model.arch_kwargs.hidden=128, not model.arch_kwargs.hidden=64"),
        ("net5", "model.arch_kwargs.dropout=0.5", "with model.arch_kwargs.dropout=0.3, not model.arch_kwargs.dropout=0.5"),
        ("net5", "~model.arch_kwargs.dropout", "with model.arch_kwargs.dropout=0.3, which this config lacks: resume with "
         "+model.arch_kwargs.dropout=0.3"),
        ("mel_resnet", "model.arch_kwargs.width=8", "with model.arch_kwargs.width=16, not model.arch_kwargs.width=8"),
        ("mel_resnet", "model.train_augment.mixup_alpha=0.2", "with model.train_augment.mixup_alpha=0.0, not"),
        ("mel_resnet", "model.input.logmel.n_mels=64", "with model.input.logmel.n_mels=128, not model.input.logmel.n_mels=64"),
        ("net3", "data.image_size=64", "with data.image_size=180, not data.image_size=64"),
        ("net3", "lr=0.01", "with lr=0.0001, not lr=0.01"),
        ("net3", "batch_size=8", "with batch_size=32, not batch_size=8"),
        ("net3", "data.min_seconds=5", "with data.min_seconds=10.0, not data.min_seconds=5"),
        ("net3", "trainer.limit_train_batches=0.5", "with trainer.limit_train_batches=null, not trainer.limit_train_batches=0.5"),
        ("net3", "callbacks.model_checkpoint.monitor=val/loss", "with callbacks.model_checkpoint.monitor=val/acc, not"),
        ("net3", "+trainer.val_check_interval=0.5", "belongs to a run without trainer.val_check_interval, not "
         "trainer.val_check_interval=0.5: resume with ~trainer.val_check_interval"),
    ],
)
def test_a_resume_that_would_change_the_network_training_or_data_is_refused(cfg_factory, tmp_path, model, change, message):
    ckpt = _complete_last_ckpt(tmp_path / "last.ckpt", cfg_factory([f"model={model}"]))
    validate(cfg_factory([f"model={model}", f"ckpt_path={ckpt}"]))  # the same run resumes
    with pytest.raises(UserError) as err:
        validate(cfg_factory([f"model={model}", f"ckpt_path={ckpt}", change]))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "change",
    ["epochs=80", "data.num_workers=1", "data.engine=ray", "trainer.precision=bf16-mixed", "optim.fused=false",
     "model.early_stopping_patience=3", "data.eval_batch_size=16", "trainer.log_every_n_steps=1",
     "+callbacks.timer._target_=lightning.pytorch.callbacks.Timer", "optimized_metric=test/acc"],
)
def test_the_settings_a_resume_may_change(cfg_factory, tmp_path, change):
    from genre_cls.checkpoints import resume_settings, settings_changed

    ckpt = _complete_last_ckpt(tmp_path / "last.ckpt", cfg_factory(["model=net5"]))
    cfg = cfg_factory(["model=net5", f"ckpt_path={ckpt}", change])
    if "bf16" not in change:  # whether this CPU runs bf16 is not this test's business
        validate(cfg)
    from genre_cls.checkpoints import check_identity, run_identity, load_checkpoint_state, RUN_KEY, SETTINGS_KEY

    state = load_checkpoint_state(str(ckpt))
    check_identity(str(ckpt), state[RUN_KEY], run_identity(cfg), complete=True)
    key = change.lstrip("+").split("=")[0].rsplit("._target_", 1)[0]
    changed = settings_changed(state[SETTINGS_KEY], resume_settings(cfg))
    assert key == "optimized_metric" and changed == {} or any(k.startswith(key) for k in changed), changed


def test_a_checkpoint_that_does_not_fit_the_built_network_is_one_line_naming_the_difference(tmp_path):
    import torch

    from genre_cls.checkpoints import check_resume_fits
    from genre_cls.systems.classifier import CHECKPOINT_FORMAT, GenreClassifier

    trained = GenreClassifier(arch="net5", arch_kwargs={"hidden": 16}, input_kind="features")
    ckpt = tmp_path / "last.ckpt"
    torch.save({"genre_cls": CHECKPOINT_FORMAT, "state_dict": trained.state_dict(), "optimizer_states": []}, ckpt)
    with torch.device("meta"):
        check_resume_fits(str(ckpt), GenreClassifier(arch="net5", arch_kwargs={"hidden": 16}, input_kind="features"))
        other = GenreClassifier(arch="net5", arch_kwargs={"hidden": 8}, input_kind="features")
    with pytest.raises(UserError) as err:
        check_resume_fits(str(ckpt), other)
    text = str(err.value)
    assert "does not fit the network this config builds (size mismatch for net.lstm.weight_ih_l0: copying a param with " \
           "shape torch.Size([64, 33]) from checkpoint, the shape in current model is torch.Size([32, 33]) and " in text
    assert "\n" not in text and "Error(s) in loading" not in text


TINY_NET1 = ["model=net1", "model.arch_kwargs.hidden=8", "data.image_size=16"]


@pytest.fixture(scope="module")
def finished_net1(synth_root, cache_dir, tmp_path_factory):
    """A finished one-epoch run of a tiny Net1, to copy and resume."""
    from conftest import make_cfg
    from genre_cls.train import train

    out = tmp_path_factory.mktemp("finished") / "run"
    train(make_cfg([*TINY_NET1, "epochs=1"], out, synth_root, cache_dir))
    return out


def _copy_of(run, where):
    import shutil

    shutil.copytree(run, where)
    return where, where / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_a_resume_refused_by_the_network_leaves_the_finished_run_as_it_was(finished_net1, cfg_factory, tmp_path):
    """Older checkpoints recorded less of their run: the checkpoint itself must load into the network
    the config builds before anything in the run's folder changes (here the event files that hold
    its test scalars)."""
    import torch

    from genre_cls.checkpoints import RUN_KEY, SETTINGS_KEY
    from genre_cls.train import train

    run, last = _copy_of(finished_net1, tmp_path / "run")
    state = torch.load(last, map_location="cpu", weights_only=True)
    for key in (RUN_KEY, SETTINGS_KEY):
        state.pop(key, None)
    state["hyper_parameters"]["arch_kwargs"] = {}
    torch.save(state, last)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    wider = ["model=net1", "model.arch_kwargs.hidden=16", "data.image_size=16", "epochs=2", f"ckpt_path={last}"]
    with pytest.raises(UserError, match="does not fit the network this config builds"):
        train(cfg_factory(wider, out=run))
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # not one event point, checkpoint or metric lost; no failed.json


@pytest.mark.slow
def test_a_resume_records_what_it_changed_and_a_failure_after_it_began(finished_net1, cfg_factory, tmp_path):
    import json

    from genre_cls.train import train

    run, last = _copy_of(finished_net1, tmp_path / "run")
    metrics = train(cfg_factory([*TINY_NET1, "epochs=2", "data.eval_batch_size=16", f"ckpt_path={last}"], out=run))
    assert metrics["epochs_trained"] == 2
    assert json.loads((run / "metrics.json").read_text())["resumes"] == [
        {"from_epoch": 1, "changed": {"epochs": [1, 2], "data.eval_batch_size": [128, 16]}}
    ]
    with pytest.raises(RuntimeError, match="failed in epoch 3"):
        train(cfg_factory([*TINY_NET1, "epochs=3", f"ckpt_path={last}",
                           "+callbacks.fail._target_=test_robustness.FailInEpoch", "+callbacks.fail.epoch=2"], out=run))
    failed = json.loads((run / "failed.json").read_text())
    assert failed == {"error": "RuntimeError: failed in epoch 3", "resumed_from": str(last)}
