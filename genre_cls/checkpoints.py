"""Checkpoints: reading them safely, what defines the run that wrote one, and the checks that a
resume continues that run and no other.

* Loading: every file is read with ``torch.load(weights_only=True)``; a file that is not a
  genre_cls checkpoint is one :class:`~genre_cls.errors.UserError` line
  (:func:`load_checkpoint_state` for training state, :func:`load_classifier` for a model).
* Identity: a run's checkpoints record what defines it (:func:`run_identity`: its whole config
  but a short list of settings, :data:`RESUME_MAY_CHANGE`, under :data:`RUN_KEY`), a
  fingerprint of its data (:func:`data_fingerprint`), and the values of those settings and what
  each resume changed of them (:data:`SETTINGS_KEY`, :data:`RESUMES_KEY`).
* Resume: :func:`check_resume_checkpoint`, :func:`check_resume_epochs`, :func:`check_resume_data`
  and :func:`check_resume_fits` refuse a resume with other settings, fewer epochs, other data or a
  network the checkpoint's weights do not fit, before the run's folder changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from genre_cls.conf import optim_name
from genre_cls.errors import UserError, one_line
from genre_cls.runfolder import check_not_in_use, checkpoint_run_dir, rank_zero, write_json
from genre_cls.systems.classifier import READ_BEFORE_3, READABLE_FORMATS, GenreClassifier

#: The checkpoint entry that holds :func:`run_identity` (and the data fingerprint).
RUN_KEY = "genre_cls_run"
#: The copy of the best checkpoint up to a ``test_at`` epoch, in the run's ``checkpoints/``.
SNAPSHOT_NAME = "best_upto_epoch{epoch}.ckpt"
FRESH_RUN_HINT = "or start a fresh run without ckpt_path= (it gets its own run folder)"
CKPT_HINT = "pass ckpt=<run dir>/checkpoints/best.ckpt written by python -m genre_cls.train"


# --------------------------------------------------------------------------- reading


def not_a_checkpoint(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be a checkpoint, when that is plain from its first bytes (empty, or
    a text file, which inside torch fails as ``KeyError: 101``); ``None`` otherwise (binary
    files are left to ``torch.load``). Every file ``torch.save`` writes is a zip archive."""
    try:
        if zipfile.is_zipfile(path):
            return None
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror or one_line(exc)})"
    if not head:
        return "it is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "it is a text file, not a file written by torch.save" if "\0" not in text else None


def load_checkpoint_state(ckpt: str) -> dict:
    """A genre_cls training checkpoint's contents (tensors memory-mapped); one-line errors otherwise."""
    import torch

    path = Path(os.path.expanduser(ckpt))
    if path.is_dir():
        raise UserError(f"ckpt_path {ckpt!r} is a folder: give the file <run dir>/checkpoints/last.ckpt to resume")
    if not path.is_file():
        raise UserError(f"ckpt_path {ckpt!r} does not exist: give a run's checkpoints/last.ckpt to resume")
    why = not_a_checkpoint(path)
    if why is not None:
        raise UserError(f"ckpt_path {ckpt!r} is not a checkpoint: {why}; give a run's checkpoints/last.ckpt to resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # truncated by a crash, another program's file, arbitrary pickles
        raise UserError(
            f"ckpt_path {ckpt!r} is not a readable genre_cls checkpoint (truncated or foreign): "
            "give a run's checkpoints/last.ckpt to resume"
        ) from None
    if not isinstance(state, dict) or "genre_cls" not in state:
        raise UserError(f"ckpt_path {ckpt!r} was not written by genre_cls.train: give a run's checkpoints/last.ckpt to resume")
    return state


def load_classifier(path: str | os.PathLike, device: Any = "cpu") -> GenreClassifier:
    """The :class:`GenreClassifier` stored in a checkpoint written by ``genre_cls.train``, in eval mode.

    ``path`` is a checkpoint (``best.ckpt`` or ``last.ckpt``) or a run directory (its
    ``checkpoints/best.ckpt``). Only tensors and plain values are read
    (``torch.load(weights_only=True)``); the network is rebuilt from the checkpoint's
    hyperparameters, so neither Hydra nor the training data are needed. Anything else (a
    missing file, random bytes, another project's checkpoint, a pickle of arbitrary objects)
    raises :class:`~genre_cls.errors.UserError` with one line that says what to pass instead.
    """
    import torch

    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        if not (p / "checkpoints" / "best.ckpt").is_file():
            raise UserError(f"{path} is a folder without checkpoints/best.ckpt: {CKPT_HINT}")
        p = p / "checkpoints" / "best.ckpt"
    if not p.is_file():
        raise UserError(f"checkpoint {path} does not exist: {CKPT_HINT}")
    if (why := not_a_checkpoint(p)) is not None:
        raise UserError(f"{p} is not a genre_cls checkpoint ({why}): {CKPT_HINT}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # random bytes, foreign pickles, truncated files: all unreadable here
        raise UserError(f"{p} is not a genre_cls checkpoint ({one_line(exc)}): {CKPT_HINT}") from exc
    fmt = ckpt.get("genre_cls") if isinstance(ckpt, dict) else None
    if fmt is None:
        raise UserError(f"{p} is not a genre_cls checkpoint (it has no genre_cls format marker): {CKPT_HINT}")
    if fmt not in READABLE_FORMATS:
        raise UserError(
            f"{p} has checkpoint format {fmt!r} but this genre_cls reads {' and '.join(map(repr, READABLE_FORMATS))}: "
            "predict with the genre_cls version that trained it, or retrain"
        )
    hparams, state = ckpt.get("hyper_parameters"), ckpt.get("state_dict")
    if not isinstance(hparams, dict) or not isinstance(state, dict):
        raise UserError(f"{p} is an incomplete genre_cls checkpoint (no hyperparameters or weights): {CKPT_HINT}")
    try:
        model = GenreClassifier(**hparams)
        model.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        classes = hparams.get("classes")
        # Every network ends in its output layer: the last matrix of its weights, one row per class.
        matrices = [v for k, v in state.items() if k.startswith("net.") and getattr(v, "ndim", 0) == 2]
        if isinstance(classes, (list, tuple)) and matrices and len(classes) != len(matrices[-1]):
            raise UserError(f"{p} names {len(classes)} classes but its network classifies {len(matrices[-1])}: the "
                            f"checkpoint was altered or damaged; {CKPT_HINT}") from exc
        raise UserError(f"{p} does not fit this genre_cls's models ({state_dict_difference(exc)}): retrain it with "
                        "this version") from exc
    return model.to(device).eval()


def epochs_done(state: dict) -> int:
    """The epochs a training checkpoint has completed (its fit loop's processed epochs)."""
    try:
        return int(state["loops"]["fit_loop"]["epoch_progress"]["current"]["processed"])
    except (KeyError, TypeError, ValueError):  # no loop state: its last epoch (0-based) is complete
        epoch = state.get("epoch")
        return epoch + 1 if isinstance(epoch, int) else 0


# --------------------------------------------------------------------------- identity


def input_kind(cfg: DictConfig) -> str | None:
    """What the configured network reads: ``image``, ``features``, ``waveform``... (None: unknown)."""
    return cfg.model.get("input_kind") or READ_BEFORE_3.get(str(cfg.model.get("arch")))


#: The settings a resume may change: where and how fast the run computes, how long it trains, and
#: the callbacks it runs besides the one that keeps the best checkpoint (``callbacks.*`` but
#: ``callbacks.model_checkpoint``). Every other key of the config defines the run
#: (:func:`run_identity`) and must be what it was; a change to one of these is recorded in
#: ``metrics.json`` (``resumes``).
RESUME_MAY_CHANGE = (
    "epochs", "test_at", "model.early_stopping_patience",
    "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy", "trainer.precision",
    "trainer.sync_batchnorm", "trainer.deterministic", "trainer.benchmark", "trainer.enable_progress_bar",
    "trainer.enable_model_summary", "trainer.log_every_n_steps", "optim.fused", "optim.foreach",
    "data.engine", "data.ray_address", "data.workers", "data.feature_workers", "data.num_workers", "data.pin_memory",
    "data.loader", "data.eval_batch_size", "data.cache_dir", "data.progress",
)
#: Keys that name where a run writes or what a sweep optimises, not what it trains: never compared.
#: (``trainer.max_epochs`` follows ``epochs``.)
NOT_THE_RUN = ("output_dir", "ckpt_path", "optimized_metric", "trainer.max_epochs", "trainer.default_root_dir", "logger")
#: The checkpoint entries beside :data:`RUN_KEY`: the values of :data:`RESUME_MAY_CHANGE` the run
#: trained with last, and what each resume changed of them.
SETTINGS_KEY = "genre_cls_settings"
RESUMES_KEY = "genre_cls_resumes"


def may_change(key: str) -> bool:
    """Whether a resume may change the setting ``key`` (:data:`RESUME_MAY_CHANGE`)."""
    return key in RESUME_MAY_CHANGE or (key.startswith("callbacks.") and not key.startswith("callbacks.model_checkpoint."))


def _leaves(node: DictConfig, prefix: str = "") -> Any:
    """``(dotted key, plain value)`` of every leaf of a config, interpolations resolved; the keys of
    :data:`NOT_THE_RUN` and the checkpoint folders (``callbacks.*.dirpath``) are left out before
    they are resolved (``output_dir`` resolves only inside Hydra)."""
    from omegaconf.errors import MissingMandatoryValue

    for key in node.keys():
        path = f"{prefix}{key}"
        if path in NOT_THE_RUN or (path.startswith("callbacks.") and path.endswith(".dirpath")):
            continue
        try:
            value = node[key]
        except MissingMandatoryValue:  # ??? left unset: validation names it
            value = None
        if OmegaConf.is_dict(value) and len(value):
            yield from _leaves(value, f"{path}.")
        else:
            yield path, OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """What defines a run: every key of its config but :data:`RESUME_MAY_CHANGE` and
    :data:`NOT_THE_RUN`, as plain values keyed by the override that sets each one.

    A checkpoint records it (``genre_cls.callbacks.RunIdentity``); resuming with any of these
    different would continue a run with another network, other training or other data, so it is
    refused. Keys that mean nothing for this run are ``None`` (``data.images`` of a model that reads
    no images, ``data.fold`` without folds, ``cgan.*`` without the CGAN); ``model`` and ``optim``
    are the names given on the command line, ``data.clip`` the clip with its length, ``data.root``
    the real path (or the synthetic set's parameters). The data set's content is compared too,
    after indexing (:func:`data_fingerprint`, in ``train``).
    """
    leaves = {k: v for k, v in _leaves(cfg) if not may_change(k)}
    root = leaves.pop("data.root", None)
    clip, seconds = leaves.pop("data.clip", "first"), leaves.pop("data.clip_seconds", None)
    synthetic = {k.split(".", 2)[2]: leaves.pop(k) for k in [k for k in leaves if k.startswith("data.synthetic.")]}
    identity: dict[str, Any] = {
        "model": str(leaves.pop("model.name", None)),
        "optim": optim_name(leaves.pop("optim._target_", None)),
        "data.clip": [clip, seconds] if seconds is not None else None,
        "data.root": None if root is None else os.path.realpath(os.path.expanduser(str(root))),
        "data.synthetic": (synthetic or None) if root is None else None,
    }
    irrelevant = []
    if input_kind(cfg) != "image":
        irrelevant += ["data.images", "data.image_size"]
    if cfg.data.get("folds") is None:
        irrelevant.append("data.fold")
    cgan = cfg.get("cgan")
    domain = cgan.get("domain") if cgan is not None else None
    for key in leaves:
        parts = key.split(".")
        if parts[0] == "cgan" and (cfg.model.get("augment") != "cgan" or (len(parts) > 2 and parts[1] != domain)):
            irrelevant.append(key)  # no CGAN, or the settings of the CGAN of the other domain
    identity.update((k, None if k in irrelevant else v) for k, v in leaves.items())
    return identity


def resume_settings(cfg: DictConfig) -> dict[str, Any]:
    """The values of :data:`RESUME_MAY_CHANGE` this run trains with (a checkpoint records them)."""
    return {k: v for k, v in _leaves(cfg) if may_change(k)}


def settings_changed(recorded: Any, now: dict[str, Any]) -> dict[str, list]:
    """``{key: [was, now]}`` for each setting of :data:`RESUME_MAY_CHANGE` a resume changes."""
    if not isinstance(recorded, dict):
        return {}
    return {k: [recorded.get(k), now.get(k)] for k in [*now, *(k for k in recorded if k not in now)]
            if recorded.get(k) != now.get(k)}


def override_text(value: Any) -> str:
    """A value as it is written on the command line: ``null``, ``[0.7,0.1,0.2]``, ``net3``."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def identity_overrides(key: str, value: Any) -> str:
    """The overrides that set a :func:`run_identity` entry to ``value``, ready to paste: ``data.clip``
    records the clip and its length together, but they are set by two keys."""
    if key == "data.clip":
        clip, seconds = value if value is not None else (None, None)
        return (f"data.clip={clip} " if clip is not None else "") + f"data.clip_seconds={override_text(seconds)}"
    return f"{key}={override_text(value)}"


def check_identity(ckpt: str, recorded: Any, identity: dict[str, Any], complete: bool = False) -> None:
    """Refuse to resume ``ckpt`` (whose run recorded ``recorded``) with a different ``identity``: a
    value that differs, or a key the run had that this config lacks (``~model.arch_kwargs.x``).
    ``complete``: the checkpoint recorded every key (this version's), so a key it lacks that this
    config has is a difference too; older checkpoints recorded fewer."""
    if not isinstance(recorded, dict):
        return  # written before runs recorded their identity: nothing to compare
    for key, value in identity.items():
        if key in recorded and recorded[key] != value:
            was, now = identity_overrides(key, recorded[key]), identity_overrides(key, value)
            raise UserError(f"ckpt_path {ckpt!r} belongs to a run with {was}, not {now}: resume with {was}, {FRESH_RUN_HINT}")
        if complete and key not in recorded and value is not None:
            raise UserError(f"ckpt_path {ckpt!r} belongs to a run without {key}, not {identity_overrides(key, value)}: "
                            f"resume with ~{key}, {FRESH_RUN_HINT}")
    for key in recorded.keys() - identity.keys():
        if key != "data.fingerprint" and recorded[key] is not None:
            was = identity_overrides(key, recorded[key])
            raise UserError(f"ckpt_path {ckpt!r} belongs to a run with {was}, which this config lacks: resume with "
                            f"+{was}, {FRESH_RUN_HINT}")


def data_fingerprint(dm) -> str:
    """A hash of the indexed tracks: their ids and the sizes of their audio and image files.

    A checkpoint records it; a resume on data that changed since (tracks added, removed or
    replaced) is refused. Sizes, not modification times: copying a data set keeps them.
    """
    h = hashlib.sha256()
    for track in dm.index.tracks:
        sizes = [p.stat().st_size if p is not None else -1 for p in (track.audio, track.image)]
        h.update(f"{track.track_id}|{sizes[0]}|{sizes[1]}\n".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- resume


def check_resume_checkpoint(ckpt: str, model: str | None = None, identity: dict[str, Any] | None = None) -> None:
    """A resume checkpoint must exist, load safely, hold the training state (last.ckpt, not
    best.ckpt) and come from a run defined like this one (:func:`run_identity`)."""
    state = load_checkpoint_state(ckpt)
    if "optimizer_states" not in state:
        raise UserError(f"ckpt_path {ckpt!r} holds weights only (best.ckpt): resume from the same run's checkpoints/last.ckpt")
    trained = state.get("hyper_parameters", {}).get("model_name")
    if model is not None and trained is not None and trained != model:
        raise UserError(f"ckpt_path {ckpt!r} was trained with model={trained}: add model={trained} to resume it")
    if identity is not None:
        recorded = dict(state.get(RUN_KEY)) if isinstance(state.get(RUN_KEY), dict) else {}
        if isinstance(recorded.get("model.input"), dict):  # recorded whole before this version
            recorded |= {f"model.input.{k}": v for k, v in _flat(recorded.pop("model.input"))}
        # The network as the checkpoint built it says what older checkpoints did not record (for the
        # keys this config has: the network's defaults stand for the others).
        network = network_identity(state.get("hyper_parameters"))
        recorded = {**{k: v for k, v in network.items() if k in identity}, **recorded}
        check_identity(ckpt, recorded, identity, complete=SETTINGS_KEY in state)


def _flat(values: dict[str, Any], prefix: str = "") -> Any:
    """``(dotted key, value)`` of a nested dict's leaves."""
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def network_identity(hparams: Any) -> dict[str, Any]:
    """The :func:`run_identity` entries that a checkpoint's hyperparameters (what its
    :class:`GenreClassifier` was built with) hold: the network, its settings, its training-only
    augmentation, schedule and optimiser."""
    if not isinstance(hparams, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("arch", "input_kind", "frontend", "label_smoothing"):
        if hparams.get(key) is not None:
            out[f"model.{key}"] = hparams[key]
    for group, prefix in (("arch_kwargs", "model.arch_kwargs"), ("train_augment", "model.train_augment"),
                          ("schedule", "model.schedule"), ("optim", "optim")):
        values = hparams.get(group)
        if isinstance(values, dict):
            out |= {f"{prefix}.{k}": v for k, v in _flat(values)
                    if not k.startswith("_") and not may_change(f"{prefix}.{k}")}
    if "optim.lr" in out:
        out["lr"] = out["optim.lr"]  # optim.lr is ${lr}: the key a user sets
    return out


def check_resume_fits(ckpt: str, system: Any) -> None:
    """The weights of ``ckpt`` load into ``system`` (a classifier built by this config, best on the
    meta device: nothing is allocated): same layers, same shapes. Checked before a resume changes
    anything in the run's folder; a config whose network differs from the checkpoint's is one line
    naming the first difference."""
    state = load_checkpoint_state(ckpt).get("state_dict")
    if not isinstance(state, dict):
        raise UserError(f"ckpt_path {ckpt!r} holds no weights (no state_dict): give a run's checkpoints/last.ckpt to resume")
    try:
        with warnings.catch_warnings():  # copying into meta tensors is a no-op, which torch warns of
            warnings.simplefilter("ignore", UserWarning)
            system.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(
            f"ckpt_path {ckpt!r} does not fit the network this config builds ({state_dict_difference(exc)}): resume "
            f"with the settings the run was started with (its .hydra/config.yaml), {FRESH_RUN_HINT}"
        ) from None


def state_dict_difference(exc: BaseException) -> str:
    """The first difference ``load_state_dict`` reports, as one line (its message is a heading
    ending in a colon, then one indented line per difference)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    details = [ln for ln in lines[1:] if not ln.endswith(":")]
    first = details[0] if details else (lines[0] if lines else type(exc).__name__)
    more = f" and {len(details) - 1} more" if len(details) > 1 else ""
    return f"{first.rstrip('.')}{more}"


def check_resume_epochs(cfg: DictConfig) -> None:
    """A resume trains up to ``epochs``: fewer than the checkpoint has already trained would make
    ``metrics.json`` and the report say less was trained than was, so it is refused. A ``test_at``
    epoch the run has passed can be tested only when the run kept its best checkpoint then."""
    ckpt = str(cfg.ckpt_path)
    run = checkpoint_run_dir(ckpt)
    if run is not None and rank_zero():
        check_not_in_use(run)
    done = epochs_done(load_checkpoint_state(ckpt))
    if int(cfg.epochs) < done:  # (trainer.max_epochs follows epochs: settings.check_requests)
        raise UserError(
            f"ckpt_path {ckpt!r} has already trained {done} epochs, more than epochs={cfg.epochs}: resume with "
            f"epochs={done} or more (the run keeps its {done} epochs), {FRESH_RUN_HINT}"
        )
    folder = Path(os.path.expanduser(ckpt)).parent if run is not None else None
    passed = [
        int(e) for e in cfg.get("test_at") or []
        if int(e) <= done and int(e) < int(cfg.epochs)
        and (folder is None or not (folder / SNAPSHOT_NAME.format(epoch=int(e))).is_file())
    ]
    if passed:
        raise UserError(
            f"test_at={override_text(passed)}: ckpt_path {ckpt!r} has already trained {done} epochs and kept no best "
            f"checkpoint up to epoch {passed[0]} ({SNAPSHOT_NAME.format(epoch=passed[0])}); drop those epochs from "
            "test_at to resume, or start a fresh run with them"
        )


def check_resume_data(cfg: DictConfig, fingerprint: str, data_root: Path) -> None:
    """Refuse to resume a checkpoint whose run was trained on other data than ``data_root`` holds now."""
    recorded = load_checkpoint_state(str(cfg.ckpt_path)).get(RUN_KEY)
    was = recorded.get("data.fingerprint") if isinstance(recorded, dict) else None
    if was is not None and was != fingerprint:
        raise UserError(
            f"ckpt_path {str(cfg.ckpt_path)!r} was trained on other data: the tracks or file sizes under "
            f"{data_root} changed since (data fingerprint {was} then, {fingerprint} now); resume on the data "
            f"it was trained on, {FRESH_RUN_HINT}"
        )


def write_once(path: Path, obj: Any, resuming: bool) -> None:
    """Write ``obj`` as JSON, except when a resume finds the run's own file: that one is kept
    (a resumed run never rewrites its splits), and must say the same."""
    if resuming and path.is_file():
        if path.name == "splits.json" and json.loads(path.read_text()) != json.loads(json.dumps(obj)):
            raise UserError(
                f"this resume would split the data differently from the run's {path}: resume with the "
                f"settings the run was started with, {FRESH_RUN_HINT}"
            )
        return
    write_json(path, obj)


def drop_orphaned_events(run_dir: Path, step: int) -> int:
    """Remove from the run's TensorBoard files the points a killed run logged at or after ``step``
    (the global step of the checkpoint it is resumed from: an epoch validated but not yet
    checkpointed, or a finished run's test results): the resumed run logs them again, and
    TensorBoard should show each once. (SummaryWriter's ``purge_step`` would only hide them from
    readers that honour it; TensorBoard's fast data server does not.) Returns how many points were
    removed. Called only once the checkpoint has loaded (``genre_cls.callbacks.ResumeCleanup``)."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    from genre_cls.data.cache import atomic_write

    removed = 0
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        kept = [r for r in records if not ((e := Event.FromString(r)).HasField("summary") and e.step >= step)]
        if len(kept) < len(records):
            removed += len(records) - len(kept)

            def write(fh, kept=kept) -> None:
                writer = RecordWriter(fh)
                for record in kept:
                    writer.write(record)

            atomic_write(path, write)
    return removed
