"""``python -m genre_cls.bench gpu-check [--device cuda|cpu] [--quick]``: prove the GPU path on a card.

On the synthetic set (or ``--root``) with the GPU trainer preset (``trainer=gpu``: bf16 mixed
precision where the device runs it, the on-device loader, fused Adam), it

* trains every model of ``conf/model/`` for a few epochs (net1-net5, mel_resnet, and net6 with the
  waveform and with the feature CGAN, trained afresh: the check uses its own cache folder, so no
  cached generator is reused);
* runs a 2x2 ``-m`` sweep (``model=net3,net5 optim=adam,rmsprop``) through the command line,
  then ``genre_cls.report`` on it;
* runs ``predict`` with the trained Net3, Net5, mel_resnet and the transfer models on the device;
* tags a clip with the pretrained musicnn on the device (``predict pretrained=msd``): the same
  tags as on the CPU.

Each check prints ``CHECK <name>: ok (<s> s)`` or ``CHECK <name>: FAIL <reason>`` (after two
``#`` lines: what is checked where, and in which precision), and the last line is
``gpu-check: K/N ok``; the exit status is 0 only when every check passed. Everything a
check prints goes to ``<out>/logs/<name>.log``.

``--device cpu`` runs the same code (``trainer=gpu`` with ``trainer.accelerator=cpu``: the same
bf16-mixed precision plugin where the CPU runs bfloat16, 32-bit where it does not; the second
line of the output says which). ``--quick`` shrinks every size (32x32
images, tiny CGANs, one epoch of two batches) so that the whole check takes seconds: the test
suite runs ``--device cpu --quick``, so the check cannot rot.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from genre_cls import GENRES
from genre_cls.conf import CONF_DIR
from genre_cls.errors import UserError, one_line
from genre_cls.hardware import check_trainer

SWEEP = ["model=net3,net5", "optim=adam,rmsprop"]

QUICK = [
    "epochs=1",
    # The first 10 s of each track: a third of the decoding, features and evaluated chunks.
    "data.clip_seconds=10",
    "data.image_size=32",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "callbacks.last_checkpoint=null",
    "cgan.epochs=1",
    "cgan.batch_size=128",
    "cgan.per_class=2",
    "cgan.log_every_n_epochs=1",
    "cgan.waveform.generator_hidden=[16,16,16]",
    "cgan.waveform.discriminator_hidden=[16,16]",
    "cgan.features.generator_hidden=[16,16,16]",
    "cgan.features.discriminator_hidden=[16,16]",
]
FULL = ["epochs=3", "cgan.epochs=2"]
QUICK_TRACKS_PER_GENRE = 5


class CheckFailed(Exception):
    """A check ran but its result is wrong."""


def _overrides(device: str, quick: bool, root: str, cache: Path) -> list[str]:
    """What every run of the check gets: the GPU preset (on the CPU when asked), the data, quiet output."""
    out = [
        "trainer=gpu",
        f"data.root={root}",
        f"data.cache_dir={cache}",
        "data.progress=false",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
    if device == "cpu":
        out.append("trainer.accelerator=cpu")
    return out + (QUICK if quick else FULL)


def models() -> list[tuple[str, str, list[str]]]:
    """``(check, model, overrides)`` for every model config (``conf/model/*.yaml``), the study's
    nets first; a model augmented with the CGAN is checked in each of the CGAN's domains."""
    from genre_cls.conf import options
    from genre_cls.systems.cgan import DOMAINS

    checks = []
    for name in sorted(options("model"), key=lambda n: (not n.startswith("net"), n)):
        if _compose([f"model={name}"]).model.get("augment") == "cgan":
            checks += [(f"{name}_{domain}", name, [f"model={name}", f"cgan.domain={domain}"]) for domain in DOMAINS]
        else:
            checks.append((name, name, [f"model={name}"]))
    return checks


def _quick_net(model: str, quick: bool) -> list[str]:
    """The overrides that shrink model ``model``'s network for --quick: the ``tiny`` settings its
    network's and its input kind's schemas declare."""
    if not quick:
        return []
    from genre_cls.data.kinds import KINDS
    from genre_cls.models import networks

    cfg = _compose([f"model={model}"]).model
    net, kind = networks()[cfg.arch], KINDS[cfg.input_kind]
    return ([f"model.arch_kwargs.{k}={v}" for k, v in getattr(net.settings, "tiny", {}).items()]
            + [f"model.input.{k}={v}" for k, v in getattr(kind.settings, "tiny", {}).items()])


def _subset(index, per_genre: int, into: Path) -> Path:
    """The first ``per_genre`` tracks of each genre of ``index``, linked into a Kaggle-layout tree."""
    taken: dict[str, int] = {}
    for track in index.tracks:
        if track.audio is None or taken.get(track.label, 0) >= per_genre:
            continue
        taken[track.label] = taken.get(track.label, 0) + 1
        for folder, path in (("genres_original", track.audio), ("images_original", track.image)):
            if path is not None:
                link = into / folder / track.label / path.name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(path.resolve())
    return into


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def _check_metrics(metrics: dict) -> None:
    acc = metrics.get("test/acc")
    if not isinstance(acc, float) or not math.isfinite(acc) or not 0.0 <= acc <= 1.0:
        raise CheckFailed(f"test/acc is {acc!r}, not an accuracy")
    if sum(map(sum, metrics["confusion_matrix"])) < 1:
        raise CheckFailed("the test set is empty")


def _train_check(name: str, overrides: list[str], device: str, runs: Path) -> Callable[[], None]:
    def check() -> None:
        from genre_cls.train import train

        out = runs / name
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        metrics = train(_compose([*overrides, f"output_dir={out}"]))
        _check_metrics(metrics)
        if not (out / "metrics.json").is_file() or not (out / "checkpoints" / "best.ckpt").is_file():
            raise CheckFailed(f"{out} lacks metrics.json or checkpoints/best.ckpt")
        if name.startswith("net6"):
            if metrics.get("cgan/reused") or not metrics.get("cgan/generated_segments"):
                raise CheckFailed("the CGAN was not trained or generated nothing")
        if device == "cuda" and torch.cuda.max_memory_allocated() == 0:
            raise CheckFailed("nothing was allocated on the GPU: the run did not use it")

    return check


def _sweep_check(overrides: list[str], sweep: Path, log: Path) -> Callable[[], None]:
    def check() -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "genre_cls.train", "-m", *SWEEP, *overrides, f"hydra.sweep.dir={sweep}"]
        with open(log, "a") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0:
            raise CheckFailed(f"the sweep exited with status {proc.returncode}")
        done = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
        failed = sorted(p.parent.name for p in sweep.glob("*/failed.json"))
        if len(done) != 4 or failed:
            raise CheckFailed(f"{len(done)} of 4 runs finished, failed: {', '.join(failed) or 'none'}")

    return check


def _report_check(sweep: Path) -> Callable[[], None]:
    def check() -> None:
        from genre_cls.report import report

        rows = report(sweep)
        if len(rows) != 4 or not (sweep / "report.md").is_file():
            raise CheckFailed(f"the report has {len(rows)} rows for 4 runs")

    return check


def _predict_check(device: str, runs: Path, audio: Path) -> Callable[[], None]:
    def check() -> None:
        from genre_cls.predict import load_classifier, predict_files

        for name in ("net3", "net5", "mel_resnet", "musicnn_head", "musicnn_finetune"):
            ckpt = runs / name / "checkpoints" / "best.ckpt"
            if not ckpt.is_file():
                raise CheckFailed(f"no {name} checkpoint to predict with (its training check failed)")
            model = load_classifier(ckpt, device=device)
            if next(model.parameters()).device.type != device:
                raise CheckFailed(f"{name} was loaded on {next(model.parameters()).device}, not {device}")
            (result,) = predict_files(model, [audio])
            total = sum(result["probabilities"].values())
            if not math.isclose(total, 1.0, abs_tol=1e-3):
                raise CheckFailed(f"{name}'s probabilities sum to {total}")

    return check


def _tags_check(device: str, audio: Path) -> Callable[[], None]:
    def check() -> None:
        from genre_cls.data.audio import load_audio
        from genre_cls.pretrained.tagger import Tagger

        y = load_audio(audio, sr=16000)
        here, cpu = Tagger("msd", device)(y, 16000), Tagger("msd", "cpu")(y, 16000)
        if next(Tagger("msd", device).model.parameters()).device.type != device:
            raise CheckFailed(f"the tagger was not loaded on {device}")
        gap = float(abs(here.patch_probabilities - cpu.patch_probabilities).max())
        if gap > 1e-3:
            raise CheckFailed(f"the tags on {device} differ from the CPU's by {gap:.2g}")

    return check


def _run(name: str, check: Callable[[], None], log: Path) -> bool:
    """Run one check with its output in ``log``; print its CHECK line."""
    start = time.perf_counter()
    try:
        with open(log, "a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check()
    except Exception as exc:
        reason = one_line(exc) if isinstance(exc, (CheckFailed, UserError)) else f"{type(exc).__name__}: {one_line(exc)}"
        print(f"CHECK {name}: FAIL {reason} (log: {log})", flush=True)
        return False
    print(f"CHECK {name}: ok ({time.perf_counter() - start:.1f} s)", flush=True)
    return True


def gpu_check(device: str = "cuda", quick: bool = False, root: str | None = None, out: str | None = None) -> int:
    """Run every check; print one line each and the tally. Returns the exit status (0: all ok).

    Lightning's and our own INFO lines are silenced while it runs (each check's log file keeps
    them) and restored afterwards, for a caller in the same process (tests, notebooks).
    """
    # Importing Lightning sets its loggers to INFO: import it first, then quieten them.
    import lightning.pytorch  # noqa: F401

    quiet = ("lightning.pytorch", "lightning.fabric", "genre_cls")
    levels = {name: logging.getLogger(name).level for name in quiet}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        return _gpu_check(device, quick, root, out)
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _gpu_check(device: str, quick: bool, root: str | None, out: str | None) -> int:
    device = "cuda" if device == "auto" else device
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("gpu-check --device cuda but no CUDA GPU is visible: check the driver (nvidia-smi) and the torch build, or run --device cpu to check the code path here")
    if out and Path(out).expanduser().exists() and not Path(out).expanduser().is_dir():
        raise UserError(f"--out {out!r} is a file: give a folder for the check's runs and logs")
    work = Path(out).expanduser() if out else Path(tempfile.mkdtemp(prefix="genre_cls_gpu_check_"))
    logs, runs = work / "logs", work / "runs"
    logs.mkdir(parents=True, exist_ok=True)
    if root is None:
        from genre_cls.data import GenreDataModule

        dm = GenreDataModule(root=None, synthetic={"tracks_per_genre": 10 if quick else 30, "seed": 0}, progress=False)
        dm.prepare_data()
        root = str(dm.data_root)
    from genre_cls.data.datasets.gtzan import index_gtzan

    index = index_gtzan(root)
    per_genre = {g: sum(t.label == g for t in index.with_audio()) for g in GENRES}
    if min(per_genre.values()) < QUICK_TRACKS_PER_GENRE:
        raise UserError(
            f"gpu-check needs at least {QUICK_TRACKS_PER_GENRE} tracks with audio per genre and {root!r} has "
            f"{min(per_genre.values())} of {min(per_genre, key=per_genre.get)}: leave --root out to use the synthetic set"
        )
    if quick:  # a few tracks: enough for every split and model, seconds per run
        root = str(_subset(index, QUICK_TRACKS_PER_GENRE, work / "data"))
        index = index_gtzan(root)
    card = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    _, precision, why = check_trainer(device, 1, "auto")  # what the preset's trainer.precision=auto becomes
    print(f"# gpu-check on {card}, {'quick' if quick else 'full'} sizes, data {root}, runs and logs in {work}", flush=True)
    print(f"# precision {precision} ({why})", flush=True)

    # The CGANs must train on the device, not come from an earlier check's cache (--out reused).
    shutil.rmtree(work / "cache" / "cgan", ignore_errors=True)
    overrides = _overrides(device, quick, root, work / "cache")
    checks: list[tuple[str, Callable[[], None]]] = [
        (f"train_{name}", _train_check(name, [*overrides, *extra, *_quick_net(model, quick)], device, runs))
        for name, model, extra in models()
    ]
    sweep = work / "sweep"
    checks += [
        ("sweep", _sweep_check([*overrides, *_quick_net("net3", quick)], sweep, logs / "sweep.log")),
        ("report", _report_check(sweep)),
        ("predict", _predict_check(device, runs, index.with_audio()[0].audio)),
        ("tags", _tags_check(device, index.with_audio()[0].audio)),
    ]
    passed = sum(_run(name, check, logs / f"{name}.log") for name, check in checks)
    print(f"gpu-check: {passed}/{len(checks)} ok", flush=True)
    return 0 if passed == len(checks) else 1
