"""A local web page to try a trained model on a song: ``python -m genre_cls.serve ckpt=PATH [host=] [port=]``,
or a pretrained tagger with no training: ``python -m genre_cls.serve pretrained=msd``.

The page (``genre_cls/static/index.html``, one file with its script and style inline, so it
works offline) takes an audio file by drag and drop, the file chooser or the microphone, and
shows the top genre, the ten track probabilities as bars and the 3 s segment timeline: the
data of ``predict plot=``. It calls the JSON API:

* ``GET /api/info``: the model, its classes and their colours, the upload limits.
* ``POST /api/predict`` with a multipart field ``file``: exactly the document that
  ``python -m genre_cls.predict ckpt=<the same ckpt> inputs=[<file>] format=json`` prints for
  that file, where ``file`` is the uploaded file's name (its last path component).

With ``pretrained=msd`` (or ``mtt``, ``msd_vgg``, ``mtt_vgg``) instead of ``ckpt=``, no trained model
is needed: ``/api/info`` says ``"mode": "tags"`` and names the 50 tags, and ``/api/predict`` answers
with what ``predict pretrained=<name> format=json`` prints (the file's top tags, all 50 by name and
their timeline per patch); the page shows those.

A bad upload is answered with an HTTP 4xx and ``{"detail": "<one line>"}``, and the server goes
on: 400 no file or an empty one, 413 more than ``max_mb`` MB, 415 not audio that ``predict``
reads, 422 longer than ``max_minutes`` (read from the file's header before any decoding where
the format has one, so a two-hour file is refused at once). Uploads live in a temporary folder
that is removed after each request; nothing is written anywhere else. The server listens on
127.0.0.1 unless ``host=`` says otherwise; ``port=0`` takes any free port (the line printed at
start names it).
"""

# No `from __future__ import annotations`: FastAPI reads the route functions' annotations
# (``request: Request``) at run time, and Request is imported where the app is built.
import errno
import math
import re
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path, PurePath
from typing import IO, Any

import hydra
import numpy as np
from omegaconf import DictConfig

from genre_cls.checkpoints import CKPT_HINT, load_classifier
from genre_cls.cmdline import check_settings
from genre_cls.conf import CONF_DIR, settings_of
from genre_cls.data.audio import AudioDecodeError
from genre_cls.data.audio_stream import AudioStats, decode_blocks
from genre_cls import tagging
from genre_cls.errors import UserError, run_cli, user_errors
from genre_cls.predict import _device, format_json, predict_waveform
from genre_cls.systems.classifier import GenreClassifier

MB = 1 << 20
# Room for the multipart headers around the file when the request's length is checked.
FORM_OVERHEAD = 64 << 10
APP_HINT = """the web page needs the app extra: pip install -e ".[app]" (FastAPI, uvicorn, python-multipart)"""
FORMATS_HINT = "upload a wav, flac, ogg, mp3 or au file"


class UploadError(Exception):
    """An upload the server refuses: an HTTP status and one line that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _TooLarge(Exception):
    """Raised by :class:`_LimitedBody` when a request body goes past its limit."""


class _LimitedBody:
    """An ASGI ``receive`` that raises :class:`_TooLarge` once the body passes ``limit`` bytes.

    The body is counted as it streams in, so a huge upload is refused before it is spooled to disk.
    """

    def __init__(self, receive, limit: int):
        self.receive, self.limit, self.seen, self.done = receive, limit, 0, False

    async def __call__(self) -> dict[str, Any]:
        message = await self.receive()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
            if self.seen > self.limit:
                raise _TooLarge
        else:  # http.disconnect
            self.done = True
        return message

    async def drain(self) -> None:
        """Read and drop the rest of the body: a client still sending it then gets our answer, not a reset."""
        while not self.done:
            message = await self.receive()
            self.done = message["type"] != "http.request" or not message.get("more_body", False)


def _duration_s(path: Path) -> float | None:
    """The audio's length from its header (soundfile, then audioread), without decoding; None if unknown."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # a format libsndfile does not know: audioread (ffmpeg, gstreamer) may
        info = None
    if info is not None and info.samplerate > 0:
        return info.frames / info.samplerate
    try:
        import audioread

        with audioread.audio_open(str(path)) as f:
            return float(f.duration)
    except Exception:  # no backend, or not audio: decoding says which
        return None


def _upload_name(filename: str | None) -> str:
    """The uploaded file's name as the results report it: its last path component."""
    name = PurePath(str(filename or "").replace("\\", "/")).name
    return name or "upload"


class UploadPredictor:
    """Classifies uploaded files with one model, within the size and length limits."""

    def __init__(self, model: GenreClassifier, ckpt: str, max_mb: float = 50, max_minutes: float = 15):
        self.model, self.ckpt = model, str(ckpt)
        self.max_bytes = int(max_mb * MB)
        self.max_mb, self.max_minutes = max_mb, max_minutes
        self._lock = threading.Lock()  # one prediction at a time: torch already uses every core

    def info(self) -> dict[str, Any]:
        from genre_cls.plots import genre_colors

        classes = list(self.model.classes)
        return {
            "checkpoint": self.ckpt,
            "model": self.model.hparams.get("model_name") or self.model.hparams.get("arch"),
            "input": self.model.input_kind,
            "reads": self.model.kind.describe(self.model.input_params),
            "classes": classes,
            "colors": genre_colors(classes),
            "max_mb": self.max_mb,
            "max_minutes": self.max_minutes,
        }

    def too_large(self) -> UploadError:
        return UploadError(
            413,
            f"the upload is larger than the limit of {self.max_mb:g} MB: upload a shorter or compressed file "
            "(or start the server with a larger max_mb=)",
        )

    def _too_long(self, name: str, seconds: float) -> UploadError:
        return UploadError(
            422,
            f"{name} is {seconds / 60:.1f} minutes long, more than the limit of {self.max_minutes:g} minutes: "
            "upload a shorter excerpt (or start the server with a larger max_minutes=)",
        )

    def rate(self) -> int:
        """The sample rate files are decoded at, as ``predict`` decodes them for this model."""
        return self.model.kind.sample_rate(self.model.input_params)

    def score(self, y, rate: int, name: str, stats: AudioStats | None = None) -> str:
        """The JSON document ``predict format=json`` prints for the waveform ``y`` of the file ``name``
        (``stats``: of its decoding, for the file's flags)."""
        try:
            result = predict_waveform(self.model, y, rate, stats)
        except UserError as exc:  # too short, or a model that gives no finite probabilities
            raise UploadError(422, f"cannot score {name}: {exc}") from exc
        return format_json([{"file": name, **result}], self.model, self.ckpt)

    def classify(self, path: Path, name: str) -> str:
        """``predict format=json`` for the audio file at ``path``, reported as ``name``."""
        seconds = _duration_s(path)
        if seconds is not None and seconds > self.max_minutes * 60:
            raise self._too_long(name, seconds)
        rate = self.rate()
        stats = AudioStats()
        try:
            y = np.concatenate(list(decode_blocks(path, rate, stats)))
        except AudioDecodeError as exc:
            reason = exc.reason.replace(str(path), name)
            raise UploadError(415, f"{name} is not audio that genre_cls can read: {reason}; {FORMATS_HINT}") from exc
        if len(y) > self.max_minutes * 60 * rate:
            raise self._too_long(name, len(y) / rate)
        if stats.stopped is not None:
            stats.stopped = stats.stopped.replace(str(path), name)
        with self._lock:
            return self.score(y, rate, name, stats)

    def classify_upload(self, data: IO[bytes], filename: str | None) -> str:
        """:meth:`classify` for an uploaded file, copied into a temporary folder that is removed afterwards.

        Raises :class:`UploadError` for an empty or too large file and for anything :meth:`classify` refuses.
        """
        name = _upload_name(filename)
        with tempfile.TemporaryDirectory(prefix="genre_cls_upload_") as tmp:
            path = Path(tmp) / f"upload{_suffix(name)}"
            with open(path, "wb") as out:
                shutil.copyfileobj(data, out)
            size = path.stat().st_size
            if size == 0:
                raise UploadError(400, f"{name} is empty (0 bytes): {FORMATS_HINT}")
            if size > self.max_bytes:
                raise self.too_large()
            return self.classify(path, name)


class UploadTagger(UploadPredictor):
    """Tags uploaded files with a pretrained musicnn (no training): what
    ``predict pretrained=<name> format=json`` prints for each file (:mod:`genre_cls.tagging`)."""

    def __init__(self, tagger, max_mb: float = 50, max_minutes: float = 15):
        super().__init__(None, "", max_mb, max_minutes)
        self.tagger = tagger

    def info(self) -> dict[str, Any]:
        return {
            "mode": "tags",
            "checkpoint": None,
            "pretrained": self.tagger.entry.name,
            "model": self.tagger.entry.name,
            "reads": tagging.describe(self.tagger),
            "tags": list(self.tagger.entry.tags),
            "max_mb": self.max_mb,
            "max_minutes": self.max_minutes,
        }

    def rate(self) -> int:
        from genre_cls.models.musicnn import SAMPLE_RATE

        return SAMPLE_RATE

    def score(self, y, rate: int, name: str, stats: AudioStats | None = None) -> str:
        try:
            record = tagging.tag_waveform(self.tagger, y, rate)
        except UserError as exc:
            raise UploadError(422, f"{name} cannot be tagged: {exc}") from exc
        return tagging.format_json([{"file": name, **record}], self.tagger)


def _suffix(name: str) -> str:
    """The upload's extension if it looks like one (decoders that go by the name need it)."""
    suffix = PurePath(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def create_app(model: GenreClassifier, ckpt: str, max_mb: float = 50, max_minutes: float = 15):
    """The FastAPI application of a trained model: the page at ``/``, ``GET /api/info`` and ``POST /api/predict``."""
    return make_app(UploadPredictor(model, ckpt, max_mb, max_minutes))


def create_tag_app(tagger, max_mb: float = 50, max_minutes: float = 15):
    """The FastAPI application of a pretrained tagger (:func:`genre_cls.tagging.load_tagger`): the
    same page and routes, ``POST /api/predict`` answering with the file's tags."""
    return make_app(UploadTagger(tagger, max_mb, max_minutes))


def make_app(classifier: UploadPredictor):
    """The page at ``/``, ``GET /api/info`` and ``POST /api/predict`` for ``classifier``."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.datastructures import UploadFile
    from starlette.requests import ClientDisconnect

    page = resources.files("genre_cls").joinpath("static/index.html").read_text(encoding="utf-8")
    # No /docs or /redoc: their pages load scripts from a CDN, and the page must work offline.
    app = FastAPI(title="genre_cls", docs_url=None, redoc_url=None)

    def refuse(error: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return classifier.info()

    @app.post("/api/predict")
    async def predict(request: Request) -> Response:
        body = _LimitedBody(request.receive, classifier.max_bytes + FORM_OVERHEAD)
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > body.limit:
            await body.drain()
            return refuse(classifier.too_large())
        limited = Request(request.scope, body)
        try:
            form = await limited.form(max_files=1, max_fields=4)
        except _TooLarge:
            await body.drain()
            return refuse(classifier.too_large())
        except ClientDisconnect:  # the browser went away mid-upload: nobody to answer
            return refuse(UploadError(400, "the upload was interrupted"))
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                return refuse(UploadError(400, "no file in the request: send the audio as the multipart form field 'file'"))
            # Copying, decoding and the model run in a worker thread: the server answers others meanwhile.
            doc = await run_in_threadpool(classifier.classify_upload, upload.file, upload.filename)
            return Response(doc, media_type="application/json")
        except UploadError as exc:
            return refuse(exc)
        finally:
            await form.close()

    return app


# --------------------------------------------------------------------------- command line


def _positive(cfg: DictConfig, key: str) -> float:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(f"{key} must be a number > 0, got {value!r}")
    return value


def check_config(cfg: DictConfig) -> None:
    """Check a composed serve config; raise :class:`UserError` on the first problem."""
    ckpt, tags = cfg.get("ckpt") not in (None, ""), cfg.get("pretrained") not in (None, "")
    if not ckpt and not tags:
        raise UserError(f"no checkpoint given: {CKPT_HINT}, or pretrained=msd for musicnn's tags with no training")
    if ckpt and tags:
        raise UserError("give ckpt= (a trained genre model) or pretrained= (tags with no training), not both")
    port = cfg.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UserError(f"port must be a whole number from 0 to 65535 (0: any free port), got {port!r}")
    if not str(cfg.get("host") or ""):
        raise UserError("host is empty: use host=127.0.0.1 (this machine only) or host=0.0.0.0 (every network)")
    _positive(cfg, "max_mb")
    _positive(cfg, "max_minutes")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; a port in use or an unknown host is a :class:`UserError`."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UserError(f"cannot listen on host={host} ({exc.strerror}): use host=127.0.0.1 or an address of this machine") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"port {port} on {host} is already in use (another server?): pass another one, e.g. port={port + 1}, "
                "or port=0 for any free port"
            ) from exc
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}): use host=127.0.0.1 and a port above 1023") from exc
    return sock


def url(sock: socket.socket) -> str:
    """The address to open in a browser: this machine's own for a server on every network."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        return f"http://127.0.0.1:{port}/ (and this machine's other addresses)"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(cfg: DictConfig) -> None:
    """Load ``cfg.ckpt`` and serve the page until interrupted; mistakes raise :class:`UserError` first."""
    check_config(cfg)
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (FastAPI needs it to read uploads)
        import uvicorn
    except ImportError as exc:
        raise UserError(f"{APP_HINT}; missing: {exc.name}") from exc
    device = _device(cfg.get("device", "cpu"))
    if cfg.get("pretrained") not in (None, ""):
        tagger = tagging.load_tagger(cfg.pretrained, device)  # before the port: a wrong name is known at once
        sock = bind(str(cfg.host), int(cfg.port))
        app = create_tag_app(tagger, float(cfg.max_mb), float(cfg.max_minutes))
        what = f"the tags of pretrained={tagger.entry.name} ({tagging.describe(tagger)})"
    else:
        ckpt = str(cfg.ckpt)
        sock = bind(str(cfg.host), int(cfg.port))  # first: a port in use is known in a moment
        model = load_classifier(ckpt, device)
        app = create_app(model, ckpt, float(cfg.max_mb), float(cfg.max_minutes))
        what = f"{model.hparams.get('model_name') or model.hparams.get('arch')} from {ckpt}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    # The socket already listens: a browser opened now waits for the loop below, it is not refused.
    print(f"genre_cls: serving {what} at {url(sock)} (Ctrl+C stops it)", flush=True)
    server.run(sockets=[sock])


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="serve")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: runs until interrupted; exit status 2 when the command is wrong."""
    try:
        with user_errors():
            serve(cfg)
    except KeyboardInterrupt:  # Ctrl+C before the server took over the signal: stop quietly
        sys.exit(130)


# The settings of conf/serve.yaml (ckpt, host, port, device, max_mb, max_minutes).
KEYS = settings_of("serve")


def check_args(argv: Sequence[str]) -> None:
    """Reject what Hydra would answer with several lines: unknown keys, bad syntax, bare words."""
    check_settings(argv, KEYS, bare="pass the checkpoint as ckpt={arg}", several="serve one checkpoint on one port",
                   quote="quote values with spaces, brackets, commas or ~, e.g. 'ckpt=\"~/runs/my run\"'")


def cli() -> None:
    run_cli(main, check_args)


if __name__ == "__main__":
    cli()
