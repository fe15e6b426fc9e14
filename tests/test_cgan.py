import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from genre_cls.data import GenreDataModule
from genre_cls.systems.cgan_augment import augment_with_cgan
from genre_cls.systems.cgan import CGAN
from genre_cls.train import train

TINY = [
    "cgan.waveform.generator_hidden=[16,16,16]",
    "cgan.waveform.discriminator_hidden=[16,16]",
    "cgan.features.generator_hidden=[32,32,32]",
    "cgan.features.discriminator_hidden=[32,16]",
]


def test_one_cgan_step_updates_both_networks():
    import lightning as L

    module = CGAN(sample_dim=528, domain="features", generator_hidden=(8, 8, 8), discriminator_hidden=(8, 8))
    g0 = [p.clone() for p in module.generator.parameters()]
    d0 = [p.clone() for p in module.discriminator.parameters()]
    data = torch.utils.data.TensorDataset(torch.randn(8, 528), torch.arange(8) % 10)
    L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu").fit(module, torch.utils.data.DataLoader(data, batch_size=8))
    assert any(not torch.equal(a, b) for a, b in zip(g0, module.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, module.discriminator.parameters()))
    x, y = module.generate([2] * 10)
    assert x.shape == (20, 528) and y.tolist() == [c for c in range(10) for _ in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["waveform", "features"])
def test_fast_dev_run_of_each_domain(cfg_factory, domain):
    metrics = train(cfg_factory(["model=net6", "debug=fdr", f"cgan.domain={domain}", *TINY]))
    assert metrics["model"] == "net6" and metrics["cgan/domain"] == domain
    assert metrics["cgan/generated_segments"] == metrics["cgan/real_train_segments"] > 0
    assert "test_track/acc" in metrics


def _cgan_cfg(cfg_factory, domain: str) -> dict:
    cfg = cfg_factory(["model=net6", f"cgan.domain={domain}", "cgan.epochs=1", "cgan.per_class=5", *TINY])
    return OmegaConf.to_container(cfg.cgan, resolve=True)


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["waveform", "features"])
def test_generated_segments_go_to_training_only_and_the_generator_is_reused(cfg_factory, synth_root, tmp_path, domain):
    cache = tmp_path / "cache"
    def datamodule():
        dm = GenreDataModule(root=str(synth_root), input="features", cache_dir=str(cache), progress=False, workers=0)
        dm.setup()
        return dm
    cgan_cfg = _cgan_cfg(cfg_factory, domain)
    kwargs = {"accelerator": "cpu", "enable_progress_bar": False}

    dm = datamodule()
    before = {p: [t.clone() for t in dm.datasets[p].tensors] for p in ("train", "val", "test")}
    info = augment_with_cgan(cgan_cfg, dm, tmp_path / "run1", kwargs)
    assert info["cgan/generated_segments"] == 50 and not info["cgan/reused"]
    for part in ("val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(before[part], dm.datasets[part].tensors))
    x, y, track = dm.datasets["train"].tensors
    assert len(y) == len(before["train"][1]) + 50
    assert (track == -1).sum() == 50 and torch.bincount(y[track == -1]).tolist() == [5] * 10
    assert torch.isfinite(x).all() and x.shape[1:] == (16, 33)
    assert (tmp_path / "run1" / "cgan" / "generator.pt").is_file()
    assert {"cgan/g_loss", "cgan/d_loss", "cgan/d_acc_real", "cgan/d_acc_fake"} <= info.keys()

    dm2 = datamodule()
    again = augment_with_cgan(cgan_cfg, dm2, tmp_path / "run2", kwargs)
    assert again["cgan/reused"] and again["cgan/g_loss"] == info["cgan/g_loss"]
    # The reused generator yields exactly the segments the freshly trained one did.
    assert torch.equal(dm2.datasets["train"].tensors[0], x)
    assert (tmp_path / "run2" / "cgan" / "generator.pt").is_file()
    changed = augment_with_cgan({**cgan_cfg, "lr": 1e-3}, datamodule(), tmp_path / "run3", kwargs)
    assert not changed["cgan/reused"]


@pytest.mark.slow
def test_augmented_run_completes_with_metrics_and_cgan_logs(cfg_factory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = cfg_factory(["model=net6", "cgan.domain=features", "cgan.epochs=2", "cgan.log_every_n_epochs=1", "epochs=3", *TINY])
    metrics = train(cfg)
    out = Path(cfg.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["cgan/generated_segments"] > 0 and saved["test_track/acc"] >= 0
    events = EventAccumulator(str(out / "cgan"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"cgan/g_loss", "cgan/d_loss", "cgan/d_acc_real", "cgan/d_acc_fake"} <= set(events.Tags()["scalars"])
    assert "cgan_spectrogram/jazz" in events.Tags()["images"]
    assert metrics["epochs_trained"] == 3


def _record_training_outputs(monkeypatch, cls) -> list[tuple[bool, torch.dtype, bool]]:
    """(autocast on, output dtype, all finite) of every ``cls.forward`` call that builds a graph:
    the training steps (validation, testing and sampling run without gradients)."""
    seen = []
    forward = cls.forward

    def recorded(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if torch.is_grad_enabled():
            seen.append((torch.is_autocast_enabled("cpu"), out.dtype, bool(torch.isfinite(out.float()).all())))
        return out

    monkeypatch.setattr(cls, "forward", recorded)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("bf16", [True, False], ids=["bf16", "forced_no_bf16"])
def test_gpu_preset_trains_the_cgan_and_net5_in_the_precision_it_claims(cfg_factory, monkeypatch, caplog, bf16):
    # trainer=gpu on the CPU: precision=auto, the same Lightning precision plugin as on a GPU.
    from genre_cls import hardware
    from genre_cls.models.cgan import Discriminator
    from genre_cls.systems import GenreClassifier

    if bf16:
        monkeypatch.delenv(hardware.FORCE_NO_BF16, raising=False)
        if (why := hardware.cpu_bf16_problem()) is not None:
            pytest.skip(f"this CPU cannot train in bfloat16 ({why}); the forced_no_bf16 case covers the fallback")
        expected, dtype = "bf16-mixed", torch.bfloat16
    else:
        monkeypatch.setenv(hardware.FORCE_NO_BF16, "1")  # the path of a CPU without bf16, on any CPU
        expected, dtype = "32-true", torch.float32
    discriminator = _record_training_outputs(monkeypatch, Discriminator)
    classifier = _record_training_outputs(monkeypatch, GenreClassifier)
    cfg = cfg_factory(["trainer=gpu", "model=net6", "debug=fdr", "cgan.domain=features", *TINY])
    with caplog.at_level("INFO", logger="genre_cls.train"):
        metrics = train(cfg)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision ")]
    assert len(said) == 1 and said[0].startswith(f"precision {expected} (trainer.precision=auto: ")
    assert metrics["precision"] == json.loads((Path(cfg.output_dir) / "metrics.json").read_text())["precision"] == expected
    # The CGAN's and Net5's training steps ran in that precision, with finite results.
    for seen in (discriminator, classifier):
        assert seen and set(seen) == {(bf16, dtype, True)}
    assert metrics["cgan/generated_segments"] > 0
    assert all(math.isfinite(metrics[k]) for k in ("test/acc", "cgan/g_loss", "cgan/d_loss", "val/acc_best"))
