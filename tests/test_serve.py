"""serve: the local page and POST /api/predict, from a real server in a subprocess and a real browser."""

from __future__ import annotations

import contextlib
import io
import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR
from genre_cls import GENRES
from genre_cls.data.audio import load_audio
from genre_cls.errors import UserError
from genre_cls.predict import run as predict_run
from genre_cls.serve import bind, check_args, serve

REPO = Path(__file__).resolve().parents[1]
# Small limits, so that the refusals are tested with small files: 2 MB, 45 s.
MAX_MB, MAX_MINUTES = 2, 0.75
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    # A fake microphone that plays a tone, allowed without asking.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]


def _cfg(overrides, name="serve"):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(name, overrides=overrides)


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def run_dir(net5_run) -> Path:
    """A trained Net5 run (one epoch), shared with test_predict."""
    return net5_run


@pytest.fixture(scope="module")
def uploads(synth_root, tmp_path_factory) -> dict[str, Path]:
    """A 30 s song, and files the server must refuse."""
    d = tmp_path_factory.mktemp("uploads")
    shutil.copy(next(iter(sorted((synth_root / "genres_original" / "metal").glob("*.wav")))), d / "song.wav")
    t = np.arange(60 * 8000) / 8000
    sf.write(d / "long.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, subtype="PCM_16")  # 60 s, 0.9 MB
    (d / "notes.wav").write_text("these are my notes, not audio\n" * 20)
    sf.write(d / "silence.wav", np.zeros(5 * 22050, np.float32), 22050, subtype="PCM_16")
    song = sf.read(d / "song.wav", dtype="float32")[0]
    sf.write(d / "blip.wav", song[:26460], 22050, subtype="PCM_16")  # 1.2 s: far shorter than a 3 s segment
    data = (d / "song.wav").read_bytes()
    (d / "cut.wav").write_bytes(data[: 44 + (len(data) - 44) // 3])  # a download cut short: its header says 30 s
    (d / "empty.wav").write_bytes(b"")
    (d / "big.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 3 * (1 << 20), dtype=np.uint8).tobytes())
    return {p.name: p for p in d.iterdir()}


@contextlib.contextmanager
def _serving(args: list[str], tmp_path_factory):
    """``python -m genre_cls.serve <args> port=0`` with small limits: its URL, process and folders."""
    cwd = tmp_path_factory.mktemp("serve_cwd")
    tmp = tmp_path_factory.mktemp("serve_tmp")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    args = [*args, "port=0", f"max_mb={MAX_MB}", f"max_minutes={MAX_MINUTES}"]
    stderr = open(tmp_path_factory.mktemp("serve_log") / "stderr.txt", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "genre_cls.serve", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    line, deadline = "", time.monotonic() + 120
    while not line and proc.poll() is None and time.monotonic() < deadline:
        if sel.select(timeout=1):
            line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        stderr.seek(0)
        pytest.fail(f"the server did not start: {line!r} {stderr.read()}")
    url = line.split(" at ", 1)[1].split()[0]
    try:
        yield {"url": url, "line": line, "proc": proc, "cwd": cwd, "tmp": tmp}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        stderr.close()


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    """``python -m genre_cls.serve ckpt=<run> port=0`` with small limits: its URL, process and folders."""
    before = _listing(run_dir)
    with _serving([f"ckpt={run_dir}"], tmp_path_factory) as started:
        yield {**started, "run_dir": run_dir, "before": before}


@pytest.fixture(scope="module")
def tag_server(tmp_path_factory):
    """``python -m genre_cls.serve pretrained=msd port=0``: the tags of musicnn, no checkpoint anywhere."""
    with _serving(["pretrained=msd"], tmp_path_factory) as started:
        yield started


@pytest.fixture(scope="module")
def tagged(uploads) -> str:
    """What ``predict pretrained=msd inputs=[song.wav] format=json`` prints, run where song.wav lies."""
    here = os.getcwd()
    out = io.StringIO()
    os.chdir(uploads["song.wav"].parent)
    try:
        with contextlib.redirect_stdout(out):
            assert predict_run(_cfg(["pretrained=msd", "inputs=[song.wav]", "format=json"], "predict")) == 0
    finally:
        os.chdir(here)
    return out.getvalue()


def _post(server, path: Path, name: str | None = None) -> requests.Response:
    with open(path, "rb") as f:
        return requests.post(server["url"] + "api/predict", files={"file": (name or path.name, f)}, timeout=120)


@pytest.fixture(scope="module")
def predicted(run_dir, uploads) -> str:
    """What ``predict ckpt=<run> inputs=[song.wav] format=json`` prints, run where song.wav lies."""
    here = os.getcwd()
    out = io.StringIO()
    os.chdir(uploads["song.wav"].parent)
    try:
        with contextlib.redirect_stdout(out):
            assert predict_run(_cfg([f"ckpt={run_dir}", "inputs=[song.wav]", "format=json"], "predict")) == 0
    finally:
        os.chdir(here)
    return out.getvalue()


# --------------------------------------------------------------------------- the API


def test_api_returns_exactly_what_predict_prints(server, uploads, predicted):
    res = _post(server, uploads["song.wav"])
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/json"
    assert res.text == predicted.rstrip("\n")  # byte for byte: "file" is the upload's name
    doc = res.json()
    assert doc["checkpoint"] == str(server["run_dir"]) and doc["model"] == "net5" and doc["errors"] == []
    (r,) = doc["results"]
    assert r["file"] == "song.wav" and r["duration_s"] == pytest.approx(30.0, abs=0.01)
    assert len(r["segments"]) == 10 and sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # The name decides nothing but the "file" field: a path in it is cut to its last part.
    other = _post(server, uploads["song.wav"], name="C:\\Music\\My Song (live).wav").json()
    assert other["results"][0]["file"] == "My Song (live).wav"
    assert other["results"][0]["probabilities"] == r["probabilities"]


def test_the_api_flags_questionable_audio_as_predict_does(server, uploads):
    flags = {}
    for name in ("silence.wav", "blip.wav", "cut.wav", "song.wav"):
        res = _post(server, uploads[name])
        assert res.status_code == 200, res.text
        flags[name] = res.json()["results"][0]["flags"]
    assert {k: list(v) for k, v in flags.items()} == {
        "silence.wav": ["silent"], "blip.wav": ["too_short"], "cut.wav": ["length_mismatch"], "song.wav": []}
    assert "header announces 30.00 s" in flags["cut.wav"]["length_mismatch"]
    assert str(server["tmp"]) not in flags["cut.wav"]["length_mismatch"]  # nothing of the server's folders


def test_api_info_names_the_model_and_the_limits(server):
    info = requests.get(server["url"] + "api/info", timeout=30).json()
    assert info["model"] == "net5" and info["classes"] == list(GENRES)
    assert list(info["colors"]) == list(GENRES) and len(set(info["colors"].values())) == 10
    assert info["max_mb"] == MAX_MB and info["max_minutes"] == MAX_MINUTES


def test_tag_api_returns_what_predict_pretrained_prints_without_a_checkpoint(tag_server, uploads, tagged):
    from genre_cls.pretrained.tagger import Tagger

    assert "the tags of pretrained=msd" in tag_server["line"]
    info = requests.get(tag_server["url"] + "api/info", timeout=30).json()
    tagger = Tagger("msd")
    assert info["mode"] == "tags" and info["checkpoint"] is None and info["pretrained"] == "msd"
    assert info["tags"] == list(tagger.entry.tags) and "Million Song Dataset" in info["reads"]
    res = _post(tag_server, uploads["song.wav"])
    assert res.status_code == 200, res.text
    assert res.text == tagged.rstrip("\n")  # byte for byte
    (r,) = res.json()["results"]
    expected = tagger(load_audio(uploads["song.wav"], sr=16000), 16000)
    assert r["file"] == "song.wav" and list(r["tags"]) == list(tagger.entry.tags)
    np.testing.assert_allclose(list(r["tags"].values()), expected.probabilities, atol=1e-6)
    assert [t["tag"] for t in r["top"]] == [t for t, _ in expected.top(5)] and len(r["patches"]) == 10
    bad = _post(tag_server, uploads["notes.wav"])
    assert bad.status_code == 415 and "notes.wav is not audio" in bad.json()["detail"]
    assert list(tag_server["cwd"].iterdir()) == [] and list(tag_server["tmp"].iterdir()) == []


@pytest.mark.parametrize(
    "name, status, words",
    [
        ("notes.wav", 415, ["notes.wav is not audio", "upload a wav"]),
        ("empty.wav", 400, ["empty.wav is empty"]),
        ("big.wav", 413, [f"larger than the limit of {MAX_MB} MB"]),
        ("long.wav", 422, ["long.wav is 1.0 minutes long", f"limit of {MAX_MINUTES:g} minutes"]),
    ],
)
def test_bad_uploads_are_clear_4xx_and_the_server_goes_on(server, uploads, name, status, words):
    res = _post(server, uploads[name])
    assert res.status_code == status, res.text
    detail = res.json()["detail"]
    assert "\n" not in detail and all(w in detail for w in words), detail
    assert server["proc"].poll() is None
    assert _post(server, uploads["song.wav"]).status_code == 200


def test_a_request_without_a_file_is_400(server):
    res = requests.post(server["url"] + "api/predict", data={"song": "x"}, timeout=30)
    assert res.status_code == 400 and "multipart form field 'file'" in res.json()["detail"]
    res = requests.post(server["url"] + "api/predict", data=b"not a form", headers={"Content-Type": "text/plain"}, timeout=30)
    assert res.status_code == 400


def test_a_streamed_upload_is_cut_off_at_the_limit(server):
    """Without a Content-Length the body is counted as it arrives and refused past the limit."""

    def body():
        yield b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="huge.wav"\r\n\r\n'
        for _ in range(40):  # 40 MB in all, far past the 2 MB limit
            yield b"\0" * (1 << 20)
        yield b"\r\n--b0undary--\r\n"

    res = requests.post(
        server["url"] + "api/predict", data=body(), headers={"Content-Type": "multipart/form-data; boundary=b0undary"}, timeout=60
    )
    assert res.status_code == 413 and "larger than the limit" in res.json()["detail"]


def test_the_body_is_counted_as_it_arrives_and_the_rest_is_dropped():
    """A body past the limit stops the form parser at once (nothing more is spooled); drain() reads the rest."""
    import asyncio

    from genre_cls.serve import _LimitedBody, _TooLarge

    chunks = [{"type": "http.request", "body": b"x" * 400, "more_body": i < 9} for i in range(10)]  # 4,000 bytes

    async def receive():
        return chunks.pop(0)

    async def read():
        body = _LimitedBody(receive, limit=1000)
        got = [await body(), await body()]
        with pytest.raises(_TooLarge):
            await body()  # the third chunk passes 1,000 bytes
        assert body.seen == 1200 and not body.done and len(got) == 2
        await body.drain()
        assert body.done and chunks == []

    asyncio.run(read())


def test_a_two_hour_file_is_refused_from_its_header_without_decoding(run_dir, tmp_path, monkeypatch):
    import genre_cls.serve as serve_module
    from genre_cls.predict import load_classifier

    path = tmp_path / "two_hours.flac"
    with sf.SoundFile(path, "w", 1000, 1, format="FLAC") as f:  # silence: a small file
        for _ in range(120):
            f.write(np.zeros(60 * 1000, dtype=np.float32))

    def no_decoding(*args, **kwargs):
        raise AssertionError("the audio was decoded")

    monkeypatch.setattr(serve_module, "decode_blocks", no_decoding)
    classifier = serve_module.UploadPredictor(load_classifier(run_dir), str(run_dir), max_minutes=15)
    with pytest.raises(serve_module.UploadError, match="two_hours.flac is 120.0 minutes long") as info:
        classifier.classify(path, "two_hours.flac")
    assert info.value.status == 422


def test_nothing_is_written_beside_the_checkpoint_nor_left_behind(server, uploads):
    assert _post(server, uploads["song.wav"]).status_code == 200
    assert _post(server, uploads["notes.wav"]).status_code == 415
    assert _listing(server["run_dir"]) == server["before"]
    assert list(server["cwd"].iterdir()) == []  # no outputs/, no .hydra/, no log
    assert list(server["tmp"].iterdir()) == []  # every upload's temporary folder is gone


def _listening(port: int) -> list[str]:
    """The addresses on which a TCP socket of this machine listens at ``port``, read from the
    kernel's socket tables (Linux ``/proc/net/tcp`` and ``tcp6``)."""
    found = []
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        table = Path("/proc/net") / name
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if sys.byteorder == "little":  # the kernel writes each 32-bit word in host order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(socket.inet_ntop(family, raw))
    return found


def _connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's socket tables; 127.0.0.2 is loopback on Linux")
def test_the_server_listens_on_127_0_0_1_by_default(server):
    assert _cfg([]).host == "127.0.0.1"
    assert server["url"].startswith("http://127.0.0.1:")
    port = int(server["url"].rstrip("/").rsplit(":", 1)[1])
    # The checks tell the two apart: a socket on every address shows as 0.0.0.0 and answers on
    # 127.0.0.2, another address of this machine (Linux routes all of 127/8 to the loopback).
    everywhere = bind("0.0.0.0", 0)
    try:
        assert _listening(everywhere.getsockname()[1]) == ["0.0.0.0"]
        assert _connects("127.0.0.2", everywhere.getsockname()[1])
    finally:
        everywhere.close()
    assert _listening(port) == ["127.0.0.1"]
    assert _connects("127.0.0.1", port) and not _connects("127.0.0.2", port)


# --------------------------------------------------------------------------- the command


def test_a_port_in_use_is_one_clear_error(server):
    port = int(server["url"].rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use.*port=0") as info:
        bind("127.0.0.1", port)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([], "no checkpoint given: .* or pretrained=msd"),
        (["pretrained=msd", "ckpt=x.ckpt"], "not both"),
        (["pretrained=gtzan", "port=0"], "unknown pretrained=gtzan: .*msd, mtt, msd_vgg, mtt_vgg"),
        (["ckpt=/no/such.ckpt", "port=0"], "does not exist"),
        (["ckpt=x.ckpt", "port=70000"], "port must be a whole number from 0 to 65535"),
        (["ckpt=x.ckpt", "max_mb=0"], "max_mb must be a number > 0"),
        (["ckpt=x.ckpt", "max_minutes=-1"], "max_minutes must be a number > 0"),
        (["ckpt=x.ckpt", "host="], "host is empty"),
    ],
)
def test_command_mistakes_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        serve(_cfg(overrides))


def test_a_foreign_checkpoint_is_one_error_line(tmp_path):
    foreign = tmp_path / "other.ckpt"
    foreign.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="is not a genre_cls checkpoint.*ckpt="):
        serve(_cfg([f"ckpt={foreign}", "port=0"]))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run/checkpoints/best.ckpt"], "not a key=value setting: pass the checkpoint as ckpt="),
        (["prot=8000"], "unknown setting 'prot': use ckpt=, device=, host=, max_mb=, max_minutes=, port="),
        (["port=8000,8001"], "lists several values"),
    ],
)
def test_arguments_hydra_would_reject_get_one_line(argv, message):
    with pytest.raises(UserError, match=message):
        check_args(argv)
    check_args(["ckpt=run", "host=0.0.0.0", "port=0", "max_mb=10", "--cfg", "job"])


# --------------------------------------------------------------------------- the page in a browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    path = _chromium()
    if path is None:
        if os.environ.get("GENRE_CLS_REQUIRE_BROWSER"):
            pytest.fail("no Chromium found, and GENRE_CLS_REQUIRE_BROWSER is set (CI): apt-get install -y chromium")
        pytest.skip("no Chromium installed (apt-get install -y chromium): the page's browser test cannot run")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=BROWSER_ARGS)
        yield b
        b.close()


def _drawn(page) -> dict:
    """The rendered geometry (CSS pixels) of the bars and the timeline's columns, once the bars' width transitions end."""
    page.wait_for_function("document.getAnimations().length === 0", timeout=10_000)
    return page.evaluate("""() => ({
        bars: [...document.querySelectorAll('#bars .bar')].map((b) => ({
            fill: b.querySelector('.fill').getBoundingClientRect().width,
            track: b.querySelector('.track').getBoundingClientRect().width})),
        columns: [...document.querySelectorAll('#timeline g.col')].map((g) => {
            const box = g.getBoundingClientRect();
            return {left: box.left, right: box.right,
                    heights: [...g.querySelectorAll('rect')].map((r) => r.getBoundingClientRect().height)};
        }),
    })""")


def _check_timeline(drawn: dict, segments: list[dict]) -> None:
    """One column per segment that is not padding, of equal width, left to right without gaps,
    each column's stacked heights the segment's probabilities (genres in the bars' order)."""
    shown = [s for s in segments if not s.get("padding")]
    columns = drawn["columns"]
    assert len(columns) == len(shown) >= 1
    widths = [c["right"] - c["left"] for c in columns]
    assert min(widths) > 5 and max(widths) - min(widths) < 1.0, widths
    for left, right in zip(columns, columns[1:]):
        assert right["left"] == pytest.approx(left["right"], abs=1.0)  # adjacent, in time order
    for column, segment in zip(columns, shown):
        total = sum(column["heights"])
        probs = [segment["probabilities"][g] for g in GENRES]
        assert column["heights"] and len(column["heights"]) == sum(p > 0 for p in probs)
        assert [h / total for h in column["heights"]] == pytest.approx([p for p in probs if p > 0], abs=0.002)


@pytest.mark.slow
def test_the_page_shows_the_top_genre_ten_bars_and_the_timeline(server, browser, uploads, predicted, tmp_path):
    expected = json.loads(predicted)["results"][0]
    page = browser.new_page(viewport={"width": 1100, "height": 950})
    requested, problems = [], []
    page.on("request", lambda r: requested.append(r.url))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server["url"])
    page.wait_for_function("document.getElementById('model').textContent.startsWith('Model net5')", timeout=30_000)

    page.set_input_files("#file", str(uploads["song.wav"]))
    page.wait_for_selector("#result", state="visible", timeout=60_000)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

    assert page.inner_text("#top-genre").strip() == expected["genre"]
    assert page.inner_text("#top-prob") == f"{100 * expected['probability']:.1f}%"
    bars = page.locator("#bars .bar")
    assert bars.count() == 10
    assert [bars.nth(i).get_attribute("data-genre") for i in range(10)] == list(GENRES)
    for i, genre in enumerate(GENRES):
        assert bars.nth(i).is_visible()
        p = expected["probabilities"][genre]
        assert bars.nth(i).locator(".value").inner_text() == (f"{100 * p:.1f}%" if p >= 0.001 or p == 0 else "<0.1%")
    assert page.locator("#bars .bar.top").get_attribute("data-genre") == expected["genre"]
    # Each bar's fill is its probability's share of the bar (the page's minimum: 1 px).
    drawn = _drawn(page)
    for bar, genre in zip(drawn["bars"], GENRES):
        assert bar["track"] > 100 and bar["fill"] == pytest.approx(max(1.0, expected["probabilities"][genre] * bar["track"]), abs=0.5), bar
    # One column per 3 s segment, side by side in time order, each stacked from the segment's probabilities.
    _check_timeline(drawn, expected["segments"])
    assert len(drawn["columns"]) == 10
    assert page.locator("#timeline svg").is_visible()
    assert (tmp_path / "page.png").stat().st_size > 20_000
    assert not page.locator("#flags").is_visible()  # nothing questionable about a 30 s song

    # Silence is said above the genre, not hidden behind it.
    page.set_input_files("#file", str(uploads["silence.wav"]))
    page.wait_for_function("document.getElementById('file-name').textContent.startsWith('silence.wav')", timeout=60_000)
    assert page.locator("#flags").is_visible()
    flagged = page.locator("#flags li")
    assert flagged.count() == 1 and flagged.first.get_attribute("data-flag") == "silent"
    assert flagged.first.inner_text().startswith("silent: the audio is silent")
    page.screenshot(path=str(tmp_path / "page_flags.png"), full_page=True)

    # A bad file: a clear message, and no stale result beside it.
    page.set_input_files("#file", str(uploads["notes.wav"]))
    page.wait_for_selector("#error", state="visible", timeout=30_000)
    assert "notes.wav is not audio" in page.inner_text("#error")
    assert not page.locator("#result").is_visible()
    page.screenshot(path=str(tmp_path / "page_error.png"), full_page=True)

    # The microphone (Chromium's fake device: a tone), recorded for a moment and classified.
    page.click("#record")
    page.wait_for_selector("#record.recording", timeout=10_000)
    page.wait_for_timeout(1500)
    page.click("#record")
    page.wait_for_selector("#result", state="visible", timeout=60_000)
    assert page.inner_text("#file-name").startswith("recording.wav")
    assert page.inner_text("#top-genre").strip() in GENRES
    recorded = json.loads(page.text_content("#json"))["results"][0]
    _check_timeline(_drawn(page), recorded["segments"])  # a short recording: one segment and its padding
    assert not page.locator("#error").is_visible()

    assert problems == []
    origin = server["url"].rstrip("/")
    assert all(u.startswith((origin, "blob:", "data:")) for u in requested), requested  # nothing from the internet
    page.close()


@pytest.mark.slow
def test_the_tag_page_shows_the_top_tag_all_50_bars_and_the_tag_timeline(tag_server, browser, uploads, tagged, tmp_path):
    expected = json.loads(tagged)["results"][0]
    order = sorted(expected["tags"], key=lambda t: -expected["tags"][t])
    page = browser.new_page(viewport={"width": 1100, "height": 950})
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(tag_server["url"])
    page.wait_for_function("document.getElementById('model').textContent.startsWith('The 50 tags of pretrained=msd')", timeout=30_000)
    assert page.inner_text("#title") == "What does this song sound like?"

    page.set_input_files("#file", str(uploads["song.wav"]))
    page.wait_for_selector("#result", state="visible", timeout=60_000)
    page.screenshot(path=str(tmp_path / "tag_page.png"), full_page=True)
    assert page.inner_text("#top-genre").strip() == expected["top"][0]["tag"]
    # The ten most probable tags as bars, the other forty under "All 50 tags", all in order.
    top, rest = page.locator("#bars .bar"), page.locator("#more-bars .bar")
    assert top.count() == 10 and rest.count() == 40
    shown = [top.nth(i).get_attribute("data-tag") for i in range(10)] + [rest.nth(i).get_attribute("data-tag") for i in range(40)]
    assert shown == order
    assert page.inner_text("#all-tags summary") == "All 50 tags" and not rest.nth(0).is_visible()
    page.click("#all-tags summary")
    assert rest.nth(39).locator(".value").inner_text().endswith("%")
    page.wait_for_function("document.getAnimations().length === 0", timeout=10_000)
    widths = page.evaluate("""() => [...document.querySelectorAll('#bars .bar')].map((b) =>
        b.querySelector('.fill').getBoundingClientRect().width / b.querySelector('.track').getBoundingClientRect().width)""")
    assert widths == pytest.approx([expected["tags"][t] for t in order[:10]], abs=0.01)
    # The timeline: one column per patch, one row per top tag, each cell's opacity its probability.
    cells = page.evaluate("""() => [...document.querySelectorAll('#timeline g.col')].map((g) =>
        [...g.querySelectorAll('rect')].map((r) => Number(r.getAttribute('fill-opacity'))))""")
    assert len(cells) == len(expected["patches"]) == 10
    for column, patch in zip(cells, expected["patches"]):
        assert column == pytest.approx([0.04 + 0.96 * patch["tags"][t] for t in order[:10]], abs=2e-3)
    labels = page.evaluate("() => [...document.querySelectorAll('#timeline text.axis')].map((t) => t.textContent)")
    assert labels[:10] == order[:10]
    assert problems == []
    page.close()
