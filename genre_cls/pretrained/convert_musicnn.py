"""Convert the ``musicnn`` package's TensorFlow checkpoints to this project's PyTorch ports, and
compute the reference outputs that tests/test_musicnn.py holds the ports to.

Run once, by a maintainer, in a throwaway environment that has TensorFlow, torch and the
original package; nothing at run or test time needs TensorFlow::

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu tf_keras librosa soundfile torch==2.11.0
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0   # it pins numpy<1.17 otherwise
    export TF_USE_LEGACY_KERAS=1 PYTHONPATH=.               # from the repository root
    /tmp/tfenv/bin/python -m genre_cls.pretrained.convert_musicnn weights --wheel musicnn-0.1.0-py3-none-any.whl
    /tmp/tfenv/bin/python -m genre_cls.pretrained.convert_musicnn reference ../shared/gtzan-sample

``weights`` writes ``weights/musicnn_<name>.pt`` (float32 state dicts), ``weights/musicnn.json``
(tag names, the source package and the hashes of every file read and written) and
``weights/LICENSE-musicnn.md`` (musicnn's ISC licence, copied from the wheel), after checking
each converted network against TensorFlow's on random input. ``reference`` runs the original
graphs (musicnn's own ``models.define_model``) on :func:`reference_signals` and on the real
clips of a GTZAN sample, with musicnn's preprocessing computed in float32 (its own code casts
the mel power to float16, which overflows to inf on loud music), and writes
``tests/data/musicnn_reference.npz``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "data" / "musicnn_reference.npz"
#: Our name -> (the wheel's checkpoint folder, architecture in genre_cls.models.musicnn).
CHECKPOINTS = {"msd": ("MSD_musicnn", "musicnn"), "mtt": ("MTT_musicnn", "musicnn"),
               "msd_vgg": ("MSD_vgg", "vgg"), "mtt_vgg": ("MTT_vgg", "vgg")}
PACKAGE, VERSION = "musicnn", "0.1.0"
#: The reference keeps every REAL_FRAME_STEP-th log-mel frame of a real clip, every
#: SYNTH_FRAME_STEP-th of a synthetic signal (and the last): any error shows on every frame.
REAL_FRAME_STEP, SYNTH_FRAME_STEP = 100, 16
#: Length of each synthetic reference signal: two 187-frame patches and a 2-frame tail.
SYNTH_SECONDS = 6.0


def reference_signals() -> dict[str, np.ndarray]:
    """Deterministic 16 kHz float32 test signals, 6 s each (tests regenerate them bit for bit).

    White noise; a 440 Hz tone with harmonics; a logarithmic chirp 40 Hz - 7.5 kHz; clicks
    every 0.25 s on low noise; a loud square-ish bass line at full scale (where musicnn's
    float16 cast overflows); silence.
    """
    sr = 16000
    n = int(SYNTH_SECONDS * sr)
    t = np.arange(n, dtype=np.float64) / sr
    rng = np.random.default_rng(27)
    clicks = 0.01 * rng.standard_normal(n)
    clicks[:: sr // 4] = 0.9
    bass = np.tanh(8.0 * np.sin(2 * np.pi * 55.0 * t * (1 + (t > 3.0))))
    chirp = 0.5 * np.sin(2 * np.pi * 40.0 * SYNTH_SECONDS / np.log(7500.0 / 40.0) * (np.exp(t / SYNTH_SECONDS * np.log(7500.0 / 40.0)) - 1))
    signals = {
        "noise": 0.2 * rng.standard_normal(n),
        "harmonic_tone": sum(0.3 / k * np.sin(2 * np.pi * 440.0 * k * t) for k in range(1, 6)),
        "chirp": chirp,
        "clicks": clicks,
        "loud_bass": bass,
        "silence": np.zeros(n),
    }
    return {name: y.astype(np.float32) for name, y in signals.items()}


def decoded_hash(samples: np.ndarray) -> str:
    """The sha256 of decoded float32 samples: which audio a reference entry was computed from."""
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _package_dir() -> Path:
    version = metadata.version(PACKAGE)
    if version != VERSION:
        sys.exit(f"musicnn {version} is installed; this converter reads musicnn {VERSION}: pip install --no-deps musicnn=={VERSION}")
    import musicnn

    return Path(musicnn.__file__).resolve().parent


# --- TensorFlow side ---------------------------------------------------------------------------

def _tf_graph(checkpoint: str, n_frames: int | None):
    """musicnn's own graph of ``checkpoint`` restored in a session: (session, input, outputs by name)."""
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, 96])
        outs = models.define_model(x, False, checkpoint, 50)
        names = (["logits", "pool1", "pool2", "pool3", "pool4", "pool5"] if "vgg" in checkpoint else
                 ["logits", "timbral", "temporal", "cnn1", "cnn2", "cnn3", "mean_pool", "max_pool", "penultimate"])
        session = tf.compat.v1.Session(graph=graph)
        tf.compat.v1.train.Saver().restore(session, str(_package_dir() / checkpoint) + "/")
    return session, x, dict(zip(names, outs))


def _tf_variables(checkpoint: str) -> dict[str, np.ndarray]:
    """The checkpoint's trained variables (Adam's slots and counters left out)."""
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(str(_package_dir() / checkpoint) + "/")
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "Adam" not in name and not name.startswith("beta")}


# --- the mapping TF names -> torch names ------------------------------------------------------

def _bn(tf_name: str, torch_name: str) -> dict[str, tuple[str, str]]:
    return {f"{torch_name}.{t}": (f"{tf_name}/{v}", "copy") for t, v in
            (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_variance"))}


def _layer(tf_name: str, torch_name: str, kind: str) -> dict[str, tuple[str, str]]:
    return {f"{torch_name}.weight": (f"{tf_name}/kernel", kind), f"{torch_name}.bias": (f"{tf_name}/bias", "copy")}


def _bn_name(i: int) -> str:
    return "batch_normalization" if i == 0 else f"batch_normalization_{i}"


def tf_to_torch_names(architecture: str) -> dict[str, tuple[str, str]]:
    """torch parameter -> (TF variable, how to convert it): ``copy``, ``conv2d`` (TF's
    [h, w, in, out] to [out, in, h, w]), ``conv1d`` (a TF conv2d over (time, channels) with
    one input plane, [7, C, 1, out], to [out, C, 7]) or ``dense`` ([in, out] to [out, in])."""
    names = _bn(_bn_name(0), "input_bn")
    if architecture == "musicnn":
        blocks = ["timbral.0", "timbral.1", "temporal.0", "temporal.1", "temporal.2"]
        for i, block in enumerate(blocks):
            names |= _layer("conv2d" if i == 0 else f"conv2d_{i}", f"{block}.conv", "conv2d") | _bn(_bn_name(i + 1), f"{block}.bn")
        for i in range(3):
            names |= _layer(f"conv2d_{5 + i}", f"midend.{i}", "conv1d") | _bn(_bn_name(6 + i), f"midend_bn.{i}")
        names |= _bn(_bn_name(9), "pool_bn") | _layer("dense", "dense", "dense") | _bn(_bn_name(10), "dense_bn")
        names |= _layer("dense_1", "classifier", "dense")
    else:
        for i in range(5):
            names |= _layer(f"{i + 1}CNN", f"convs.{i}", "conv2d") | _bn(_bn_name(i + 1), f"bns.{i}")
        names |= _layer("dense", "classifier", "dense")
    return names


def convert(variables: dict[str, np.ndarray], architecture: str):
    """The torch model of ``architecture`` with the TF ``variables`` loaded (eval mode)."""
    import torch

    from genre_cls.models.musicnn import ARCHITECTURES

    model = ARCHITECTURES[architecture]().eval()
    state = model.state_dict()
    mapping = tf_to_torch_names(architecture)
    unused = set(variables) - {tf for tf, _ in mapping.values()}
    if unused:
        raise ValueError(f"TF variables with no place in the port: {sorted(unused)}")
    how = {"copy": lambda a: a, "conv2d": lambda a: a.transpose(3, 2, 0, 1),
           "conv1d": lambda a: a[:, :, 0, :].transpose(2, 1, 0), "dense": lambda a: a.T}
    for name, (tf_name, kind) in mapping.items():
        value = torch.from_numpy(np.ascontiguousarray(how[kind](variables[tf_name]), dtype=np.float32))
        if value.shape != state[name].shape:
            raise ValueError(f"{tf_name} {tuple(value.shape)} does not fit {name} {tuple(state[name].shape)}")
        state[name] = value
    left = [k for k in state if k not in mapping and not k.endswith("num_batches_tracked") and k != "frontend.mel.mel_basis"]
    if left:
        raise ValueError(f"torch parameters not set from the checkpoint: {left}")
    model.load_state_dict(state)
    return model


# --- float32 preprocessing and the reference ---------------------------------------------------

def musicnn_logmel(audio: np.ndarray) -> np.ndarray:
    """musicnn 0.1.0's ``batch_data`` spectrogram, with its float16 cast left out:
    (frames, 96) float32 ``log10(10000 mel + 1)`` of 16 kHz audio."""
    import librosa

    rep = librosa.feature.melspectrogram(y=audio, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    return np.log10(10000 * rep.astype(np.float32) + 1).astype(np.float32)


def patches(rep: np.ndarray, n_frames: int = 187) -> np.ndarray:
    """Consecutive non-overlapping patches, the tail dropped, as musicnn's ``batch_data`` cuts."""
    return np.stack([rep[i : i + n_frames] for i in range(0, rep.shape[0] - n_frames + 1, n_frames)])


def _run(graph, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    session, x, outs = graph
    values = session.run([outs[n] for n in names], feed_dict={x: batch})
    return dict(zip(names, values))


def make_reference(sample_root: Path, out: Path) -> None:
    """Run the original graphs on the synthetic signals and the real clips under ``sample_root``."""
    import librosa
    import soundfile as sf

    inputs: dict[str, tuple[np.ndarray, int]] = {f"synthetic/{k}": (v, SYNTH_FRAME_STEP) for k, v in reference_signals().items()}
    arrays: dict[str, np.ndarray] = {}
    for path in sorted(sample_root.glob("genres_original/*/*.wav")):
        decoded, _ = sf.read(path, dtype="float32")
        arrays[f"real/{path.name}/decoded_sha256"] = np.array(decoded_hash(decoded))
        audio, _ = librosa.load(path, sr=16000)  # what musicnn's batch_data reads
        inputs[f"real/{path.name}"] = (audio, REAL_FRAME_STEP)
    graphs = {name: _tf_graph(ckpt, 187) for name, (ckpt, _) in CHECKPOINTS.items()}
    for key, (audio, step) in inputs.items():
        rep = musicnn_logmel(audio)
        frames = np.unique(np.r_[np.arange(0, rep.shape[0], step), rep.shape[0] - 1])
        arrays[f"{key}/frames"] = frames
        arrays[f"{key}/logmel"] = rep[frames]
        batch = patches(rep)
        for name in CHECKPOINTS:
            wanted = ["logits"] + (["mean_pool", "max_pool", "penultimate"] if name == "msd" else [])
            got = _run(graphs[name], batch, wanted)
            arrays[f"{key}/{name}/tags"] = (1 / (1 + np.exp(-got["logits"].astype(np.float64)))).astype(np.float32)
            for layer in wanted[1:]:
                arrays[f"{key}/{name}/{layer}"] = got[layer][:1].astype(np.float32)  # the first patch
        print(f"{key}: {batch.shape[0]} patches, log-mel max {rep.max():.3f}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {len(arrays)} arrays)")


def write_weights(out_dir: Path, wheel: Path | None) -> None:
    """Convert every checkpoint, check it against TensorFlow, write weights + provenance."""
    import tensorflow as tf
    import torch
    from musicnn import configuration

    package = _package_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    probe = (3.0 * rng.random((4, 187, 96))).astype(np.float32)  # log-mel values span about 0-4
    models = {}
    for name, (checkpoint, architecture) in CHECKPOINTS.items():
        model = convert(_tf_variables(checkpoint), architecture)
        want = _run(_tf_graph(checkpoint, 187), probe, ["logits"])["logits"]
        with torch.no_grad():
            got = model.embeddings(torch.from_numpy(probe))["logits"].numpy()
        diff = float(np.abs(got - want).max())
        if diff > 1e-4:
            raise SystemExit(f"{name}: the port's logits differ from TensorFlow's by {diff:.3g}: the conversion is wrong")
        path = out_dir / f"musicnn_{name}.pt"
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        torch.save(state, path)
        tags = configuration.MSD_LABELS if name.startswith("msd") else configuration.MTT_LABELS
        sources = sorted(p for p in (package / checkpoint).iterdir() if p.is_file())
        models[name] = {
            "architecture": architecture,
            "weights": path.name,
            "weights_sha256": _sha256(path),
            "checkpoint": f"{PACKAGE}/{checkpoint}",
            "checkpoint_sha256": {p.name: _sha256(p) for p in sources},
            "trained_on": "Million Song Dataset" if name.startswith("msd") else "MagnaTagATune",
            "reported": (package / checkpoint / "experiment.result").read_text().strip().splitlines(),
            "max_abs_logit_difference_to_tensorflow": diff,
            "tags": list(tags),
        }
        print(f"{name}: {path.name} {path.stat().st_size / 1e6:.2f} MB, max |logit - TF| = {diff:.2e}", flush=True)
    licence = metadata.distribution(PACKAGE).read_text("LICENSE.md")  # in the wheel's dist-info
    if not licence or "Permission to use" not in licence:
        raise SystemExit("the musicnn wheel's LICENSE.md (ISC) was not found: reinstall musicnn==0.1.0")
    (out_dir / "LICENSE-musicnn.md").write_text(licence)
    provenance = {
        "source": {
            "package": PACKAGE, "version": VERSION, "licence": "ISC (LICENSE-musicnn.md)",
            "home": "https://github.com/jordipons/musicnn",
            "paper": "Pons & Serra, musicnn: pre-trained convolutional neural networks for music audio tagging, ISMIR 2019 LBD",
            **({"wheel": wheel.name, "wheel_sha256": _sha256(wheel)} if wheel else {}),
        },
        "converted_with": {"tensorflow": tf.__version__, "torch": torch.__version__, "numpy": np.__version__},
        "converter": "python -m genre_cls.pretrained.convert_musicnn weights",
        "models": models,
    }
    (out_dir / "musicnn.json").write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"wrote {out_dir / 'musicnn.json'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("weights", help="convert the checkpoints into genre_cls/pretrained/weights/")
    w.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    w.add_argument("--wheel", type=Path, default=None, help="the musicnn wheel the package came from, to record its hash")
    r = sub.add_parser("reference", help="compute tests/data/musicnn_reference.npz with the original graphs")
    r.add_argument("gtzan_sample", type=Path, help="a folder with genres_original/<genre>/<genre>.00000.wav")
    r.add_argument("--out", type=Path, default=REFERENCE)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message=r"`tf\.layers\.", category=UserWarning)  # musicnn's TF1 layers
    if args.command == "weights":
        write_weights(args.out, args.wheel)
    else:
        make_reference(args.gtzan_sample, args.out)


if __name__ == "__main__":
    main()
