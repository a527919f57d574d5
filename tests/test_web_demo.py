"""edgekit demo web: the bundle's ONNX and TFLite artifacts proven in a real browser, then its camera and
microphone demos fed from files.

Debian's chromium, headless, driven by Playwright (no browser download: the system one). Its fake capture
devices play a y4m file as the camera (held-out digits from the bundle's golden inputs) and a WAV as the
microphone (synthesized keywords in a voice no model heard). What the page computes is compared with what the
host computes from the same input: golden pairs against the host runtime, camera labels against the host's
Classifier on the very frames the page saw, the JS pre-processing against OpenCV, the JS MFCC against numpy,
the keywords against `edgekit demo mic --wav`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from edgekit.device.web.server import LITERT_FILES, ORT_FILES

from .conftest import ROOT, chromium, edgekit, free_port

pytestmark = pytest.mark.slow


def _web_deps() -> None:
    node = ROOT / "web" / "node_modules"
    if not ((node / "onnxruntime-web" / "dist" / ORT_FILES[0]).is_file()
            and (node / "@litertjs" / LITERT_FILES["core.js"]).is_file()):
        if os.environ.get("CI"):
            pytest.fail("CI must install web/node_modules (make web-deps does)")
        pytest.skip("no onnxruntime-web / LiteRT.js: run `make web-deps`")


@pytest.fixture(scope="module")
def web_bundle(digits_run, tmp_path_factory):
    """The digits run's x86_64_linux bundle: onnx_fp32, onnx_int8, tflite_int8."""
    from edgekit.pack import bundle

    _web_deps()
    return bundle(digits_run, "x86_64_linux", tmp_path_factory.mktemp("web") / "x86")


@contextmanager
def served(bundle_dir, *extra: str, port: int | None = None):
    """`edgekit demo web BUNDLE --port P ...` in a subprocess, yielded once it listens (and its port)."""
    port = port or free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "demo", "web", str(bundle_dir), "--port", str(port),
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise AssertionError(f"the server did not start: {proc.communicate()}")
            time.sleep(0.1)
        else:
            raise AssertionError("the server did not listen within 30 s")
        proc.port = port
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def pw():
    """One Playwright driver for the module (its sync API cannot be started twice in one thread at a time)."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        yield p


@contextmanager
def browser(pw, *args: str, **context):
    """Debian's chromium, headless, through Playwright; a fresh context (``context`` options) and page."""
    b = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-background-networking",
                                                             "--disable-component-update", *args])
    try:
        yield b.new_context(**context).new_page()
    finally:
        b.close()


FAKE_MEDIA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def test_golden_pairs_pass_in_the_browser_for_onnx_and_tflite_and_the_report_comes_back(pw, web_bundle, digits_run):
    requests = []
    with served(web_bundle.path, "--once", "--timeout", "240") as server:
        with browser(pw) as page:
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"http://127.0.0.1:{server.port}/?demo=0")
            page.wait_for_selector("body[data-done]", timeout=200_000)
            rows = page.eval_on_selector_all("#results tbody tr", "rs => rs.map(r => r.dataset.artifact)")
            done = page.get_attribute("body", "data-done")
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0 and done == "passed", (out, err)
    assert sorted(rows) == sorted(a.name for a in web_bundle.artifacts) == ["onnx_fp32", "onnx_int8", "tflite_int8"]
    assert {r.split("/")[2] for r in requests} == {f"127.0.0.1:{server.port}"}  # nothing from anywhere else
    assert any(r.endswith("ort-wasm-simd-threaded.wasm") for r in requests)
    assert any("/litert/wasm/litert_wasm_" in r and r.endswith(".wasm") for r in requests)
    report = json.loads((web_bundle.path.parent / "deploy-report-x86_64_linux-web.json").read_text())
    assert report["kind"] == "edgekit-deploy" and report["passed"] and report["transport"] == "http"
    by = {r["artifact"]: r for r in report["smoke"]["results"]}
    assert by["onnx_fp32"]["max_abs_diff"] <= 1e-4
    assert by["onnx_int8"]["top1_agreement"] >= 0.95 and by["tflite_int8"]["top1_agreement"] >= 0.95
    assert {n: r["runtime"] for n, r in by.items()} == {"onnx_fp32": "onnxruntime-web", "onnx_int8": "onnxruntime-web",
                                                         "tflite_int8": "litert.js"}
    assert all(r["p50_ms"] > 0 and r["p90_ms"] >= r["p50_ms"] and r["samples"] >= 32 for r in by.values())
    assert "onnx_int8 in onnxruntime-web" in out and "tflite_int8 in LiteRT.js" in out
    shown = edgekit("report", str(digits_run), "--markdown")
    assert "x86_64_linux-web" in shown.stdout and "litert.js" in shown.stdout


def _host_labels(bundle, artifact: str, frames: list[dict]) -> list[int]:
    """The host's camera Classifier (OpenCV pre-processing, the host runtime) on the frames the page recorded."""
    from edgekit.device.bundle import load_bundle
    from edgekit.device.demos.camera import Classifier

    cls = Classifier(load_bundle(bundle), artifact).open()
    try:
        labels = []
        for f in frames:
            rgba = np.frombuffer(base64.b64decode(f["rgba"]), np.uint8).reshape(f["h"], f["w"], 4)
            labels.append(cls(np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]))[0])  # RGBA -> BGRA, as cv2 reads
        return labels
    finally:
        cls.close()


@pytest.mark.parametrize("artifact", ["tflite_int8", "onnx_fp32"])
def test_the_camera_demo_labels_the_fake_cameras_frames_as_the_host_does(pw, web_bundle, tmp_path, artifact):
    from edgekit.device.web.fake_media import enlarge, golden_pixels, write_y4m

    pixels = golden_pixels(web_bundle)[:24]  # held-out test images, as the camera shows them
    video = write_y4m(tmp_path / "camera.y4m", np.repeat(enlarge(pixels, 8), 3, axis=0), fps=10)
    with served(web_bundle.path) as server:
        with browser(pw, *FAKE_MEDIA, f"--use-file-for-fake-video-capture={video}") as page:
            page.goto(f"http://127.0.0.1:{server.port}/?artifact={artifact}&record=40")
            page.wait_for_selector("body[data-demo]", timeout=200_000)
            assert page.get_attribute("body", "data-demo") == "running", page.inner_text("#demo-status")
            page.wait_for_function("window.edgekitCamera && window.edgekitCamera.frames.length >= 40", timeout=60_000)
            cam = page.evaluate("window.edgekitCamera")
            status = page.inner_text("#demo-status")
            shown = page.get_attribute("#camera", "data-label")
    assert artifact in status
    frames = cam["frames"]
    assert {(f["w"], f["h"]) for f in frames} == {(pixels.shape[2] * 8, pixels.shape[1] * 8)}
    page_labels = [f["label"] for f in frames]
    host = _host_labels(web_bundle.path, artifact, frames)
    agree = np.mean(np.array(page_labels) == np.array(host))
    assert agree >= 0.99, (page_labels, host)
    assert len(set(page_labels)) >= 5  # the frames changed under the camera: not one frame judged 40 times
    assert shown in web_bundle.labels and cam["fps"] > 0


def _module_page(page, port: int) -> None:
    """The demo's page, with its golden pairs and demo off, to call its JS modules from the test."""
    page.goto(f"http://127.0.0.1:{port}/?demo=0")


@pytest.fixture(scope="module")
def js(pw, web_bundle):
    """A page of the server whose ES modules (preprocess.js, features.js) the tests call through ``js(expr)``."""
    with served(web_bundle.path) as server:
        with browser(pw) as page:
            _module_page(page, server.port)
            yield lambda body, arg=None: page.evaluate(f"async (arg) => {{ {body} }}", arg)


def test_the_js_preprocessing_gives_opencvs_pixels_for_any_frame_size(js):
    """preprocess.js against preprocess.to_pixels (cv2): camera frames shrunk by non-integer factors
    (INTER_AREA), small images enlarged (INTER_LINEAR), gray and RGB. OpenCV sums in fixed point (and hands
    some sizes to Intel IPP); the JS reproduces the fixed point where it can: one level apart at most, on
    at most 1 % of the pixels (or one) when shrinking (what a camera needs) and 10 % when enlarging."""
    from edgekit.device import preprocess

    rng = np.random.default_rng(0)
    for (h, w), size, channels in [((480, 640), (28, 28), 1), ((37, 29), (8, 8), 1), ((300, 400), (32, 32), 3),
                                   ((480, 640), (224, 224), 3), ((28, 28), (28, 28), 1),
                                   ((5, 7), (16, 12), 3), ((6, 4), (8, 8), 1), ((20, 30), (28, 28), 1)]:
        rgba = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        rgba[..., 3] = 255
        got = js("const m = await import('/preprocess.js');"
                 "const px = m.toPixels(Uint8Array.from(arg.rgba), arg.w, arg.h, arg.spec); return Array.from(px);",
                 {"rgba": rgba.ravel().tolist(), "w": w, "h": h, "spec": {"size": list(size), "channels": channels}})
        want = preprocess.to_pixels(np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]), size=size, channels=channels)
        diff = np.abs(np.array(got, np.int32).reshape(want.shape) - want.astype(np.int32))
        shrinks = h >= size[0] and w >= size[1]
        allowed = max(1, int((0.01 if shrinks else 0.1) * diff.size))
        assert diff.max() <= 1 and np.count_nonzero(diff) <= allowed, \
            ((h, w), size, channels, diff.max(), np.count_nonzero(diff), diff.size)


def test_the_js_image_tensor_equals_numpys(js, web_bundle):
    from edgekit.device import preprocess
    from edgekit.device.web.fake_media import golden_pixels

    spec = web_bundle.preprocess
    px = golden_pixels(web_bundle)[:4]
    for p in px:
        got = js("const m = await import('/preprocess.js'); return Array.from(m.applyImage(arg.spec, "
                 "Uint8Array.from(arg.px)));", {"spec": spec, "px": p.ravel().tolist()})
        want = preprocess.apply(spec, p[None]).ravel()
        assert np.max(np.abs(np.array(got, np.float32) - want)) <= 1e-6


def test_the_js_mfcc_equals_numpys_within_1e_3(pw, kws_bundle, tmp_path):
    from edgekit.data import keywords
    from edgekit.device import features
    from edgekit.device.bundle import load_bundle

    _web_deps()
    spec = load_bundle(kws_bundle).preprocess
    voice = keywords.voices(keywords.Config())["test"][0]
    audio, _ = keywords.utterance_stream(["yes", "left", "seven"], voice, seed=3)
    n = spec["clip_samples"]
    clips = [audio[i:i + n] for i in range(0, len(audio) - n, len(audio) // 6)][:6]
    clips.append(np.zeros(n, np.float32))  # silence: the log's offset, not -inf
    with served(kws_bundle) as server:
        with browser(pw) as page:
            _module_page(page, server.port)
            got = page.evaluate("async (arg) => { const m = await import('/features.js'); const f = new m.Mfcc(arg.spec);"
                                " return arg.clips.map(c => Array.from(f.apply(Float32Array.from(c)))); }",
                                {"spec": spec, "clips": [c.tolist() for c in clips]})
    want = features.apply(spec, np.stack(clips))
    got = np.array(got, np.float32).reshape(want.shape)
    assert np.max(np.abs(got - want)) <= 1e-3, np.max(np.abs(got - want))


def test_the_fake_microphone_hears_the_keywords_demo_mic_hears_in_the_same_wav(pw, kws_bundle, tmp_path):
    from edgekit.data import keywords
    from edgekit.device.audio import write_wav

    _web_deps()
    voice = keywords.voices(keywords.Config())["test"][0]  # an espeak voice no model heard in training
    speech, _ = keywords.utterance_stream(["yes", "no", "up", "down", "left", "right"], voice, seed=1)
    lead, tail = np.zeros(16000, np.float32), np.zeros(24000, np.float32)  # the page starts listening, then it plays
    wav = write_wav(tmp_path / "words.wav", np.concatenate([lead, speech, tail]))
    host = edgekit("demo", "mic", str(kws_bundle), "--wav", str(wav), "--json", "--artifact", "tflite_int8")
    assert host.returncode == 0, host.stderr[-2000:]
    want = [json.loads(x) for x in host.stdout.splitlines()]
    assert len(want) >= 4, want  # the recording holds keywords the model finds: two empty lists prove nothing
    seconds = (len(speech) + 40000) / 16000
    with served(kws_bundle) as server:
        with browser(pw, *FAKE_MEDIA, f"--use-file-for-fake-audio-capture={wav}%noloop") as page:
            page.goto(f"http://127.0.0.1:{server.port}/?artifact=tflite_int8")
            page.wait_for_selector("body[data-demo]", timeout=200_000)
            assert page.get_attribute("body", "data-demo") == "running", page.inner_text("#demo-status")
            page.wait_for_function(f"window.edgekitMic && window.edgekitMic.seconds >= {seconds - 0.5}",
                                   timeout=int(seconds * 1000) + 60_000)
            time.sleep(0.5)
            mic = page.evaluate("window.edgekitMic")
            listed = page.eval_on_selector_all("#keywords li", "ls => ls.map(l => l.textContent)")
    got = mic["detections"]
    assert mic["rate"] == 16000 and 0 < mic["rtf"] < 1
    assert [d["keyword"] for d in got] == [d["keyword"] for d in want], (got, want)
    # the browser's capture starts a few blocks after the page does: times agree to within two hops
    assert all(abs(a["time_s"] - b["time_s"]) <= 0.4 for a, b in zip(got, want, strict=True)), (got, want)
    assert all(abs(a["confidence"] - b["confidence"]) <= 0.1 for a, b in zip(got, want, strict=True)), (got, want)
    assert len(listed) == len(got) and all(d["keyword"] in line for d, line in zip(got, listed, strict=True))


def test_https_serves_the_page_with_a_self_signed_certificate_whose_fingerprint_is_printed(pw, kws_bundle):
    """--https: a phone on the LAN gets a secure context; the fingerprint printed is the served certificate's.
    The keyword bundle's TFLite fp32 and int8 and ONNX fp32 pass their golden pairs over it."""
    _web_deps()
    port = free_port()
    with served(kws_bundle, "--https", "--once", "--timeout", "240", port=port) as server:
        pem = ssl.get_server_certificate(("127.0.0.1", port))
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        served_fp = x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex().upper()
        with browser(pw, ignore_https_errors=True) as page:
            page.goto(f"https://127.0.0.1:{port}/?demo=0")
            assert page.evaluate("window.isSecureContext") is True
            page.wait_for_selector("body[data-done]", timeout=200_000)
            done = page.get_attribute("body", "data-done")
            rows = page.eval_on_selector_all("#results tbody tr", "rs => rs.map(r => r.dataset.artifact)")
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0 and done == "passed", (out, err)
    assert sorted(rows) == ["onnx_fp32", "tflite_fp32", "tflite_int8"]
    assert f"https://localhost:{port}/" in out
    printed = re.search(r"SHA-256 ([0-9A-F:]{95})", out)
    assert printed and printed.group(1).replace(":", "") == served_fp, out
    assert "Traceback" not in err


def test_the_certificate_is_kept_and_remade_only_when_it_no_longer_covers_the_address(tmp_path):
    from edgekit.device.web import tls

    cert, key, fp = tls.certificate("127.0.0.1", tmp_path)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert tls.certificate("127.0.0.1", tmp_path)[2] == fp  # a phone that accepted it keeps accepting it
    assert tls.certificate("10.11.12.13", tmp_path)[2] != fp  # a new address: a new certificate that names it
    tls.server_context(cert, key)


def test_the_server_serves_the_page_the_runtimes_and_the_bundle_and_nothing_else(web_bundle):
    import urllib.error
    import urllib.request

    with served(web_bundle.path) as server:
        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as r:
                    return r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.headers, b""

        status, headers, page = get("/")
        assert status == 200 and headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert b"http:" not in page and b"https:" not in page  # the page names no outside URL
        golden = json.loads(get("/bundle/golden.json")[2])
        assert golden["x"]["shape"][0] == len(golden["y"])
        assert set(golden["host"]) == {"onnx_fp32", "onnx_int8", "tflite_int8"}
        io = next(a["io"] for a in golden["artifacts"] if a["name"] == "tflite_int8")
        assert io["inputs"][0]["type"] == "int8" and io["inputs"][0]["scale"] > 0
        assert get("/ort/ort-wasm-simd-threaded.wasm")[1]["Content-Type"] == "application/wasm"
        assert get("/litert/wasm/litert_wasm_threaded_internal.wasm")[1]["Content-Type"] == "application/wasm"
        assert b'dtype: "int8"' in get("/litert/core.js")[2]  # LiteRT.js's table, with int8 added
        for js_file in ("app.js", "runtimes.js", "preprocess.js", "features.js", "camera.js", "mic.js"):
            assert get(f"/{js_file}")[0] == 200, js_file
        assert get("/bundle/artifacts/model_int8.tflite")[0] == 200
        for path in ("/bundle/artifacts/nope.tflite", "/bundle/golden.npz", "/../pyproject.toml",
                     "/ort/../package.json", "/litert/../core/package.json", "/bundle/artifacts/%2e%2e/manifest.json",
                     "/fake_media.py", "/server.py"):
            assert get(path)[0] == 404, path


def test_a_bundle_without_onnx_or_tflite_is_refused_by_name():
    from edgekit.device.web.server import web_artifacts
    from edgekit.errors import ConfigError

    b = SimpleNamespace(path="b", artifacts=[SimpleNamespace(name="engine", format="tensorrt")])
    with pytest.raises(ConfigError, match="no ONNX or TFLite artifact"):
        web_artifacts(b)


@pytest.mark.parametrize("case", ["missing bundle", "unknown artifact", "port in use", "no onnxruntime-web files",
                                  "no LiteRT.js files"])
def test_bad_input_is_one_line_and_exit_2(web_bundle, tmp_path, case):
    target, env, port, extra = str(web_bundle.path), {}, free_port(), []
    holder = None
    if case == "missing bundle":
        target = str(tmp_path / "nope")
    elif case == "unknown artifact":
        extra = ["--artifact", "onnx_fp64"]
    elif case == "port in use":
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen()
    elif case == "no onnxruntime-web files":
        env["EDGEKIT_WEB_RUNTIME"] = str(tmp_path)
    else:
        env["EDGEKIT_WEB_LITERT"] = str(tmp_path)
    try:
        proc = edgekit("demo", "web", target, "--port", str(port), "--once", "--timeout", "5", *extra, env=env,
                       timeout=60)
    finally:
        if holder:
            holder.close()
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("edgekit: error: "), proc.stderr
    says = {"missing bundle": "not a bundle", "unknown artifact": "onnx_fp64", "port in use": "cannot listen",
            "no onnxruntime-web files": "onnxruntime-web is not installed", "no LiteRT.js files": "LiteRT.js is not "
            "installed"}[case]
    assert says in lines[0]


# A stand-in for adb: `reverse` succeeds, `shell am start -d URL` opens URL in headless chromium (the "phone"),
# in the background as Android's activity manager returns at once; every call is logged.
FAKE_ADB = """#!/bin/sh
echo "$@" >> "$ADB_LOG"
[ "$1" = "-s" ] && shift 2
case "$1" in
  reverse) exit 0 ;;
  shell)
    case "$2" in
      "am start"*)
        url=$(printf '%s' "$2" | sed -n "s/.* -d '\\(.*\\)'$/\\1/p")
        nohup "$PHONE_PYTHON" "$PHONE" "$url" > "$ADB_LOG.phone" 2>&1 &
        echo "Starting: Intent { act=android.intent.action.VIEW dat=$url }"; exit 0 ;;
    esac ;;
esac
echo "fake adb: $*" >&2; exit 1
"""

PHONE = """import sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    b = p.chromium.launch(executable_path=sys.argv[2], args=["--no-sandbox", "--disable-background-networking"])
    page = b.new_page()
    page.goto(sys.argv[1])
    page.wait_for_selector("body[data-done]", timeout=200_000)
    print(page.get_attribute("body", "data-done"))
    b.close()
"""


@pytest.fixture(scope="module")
def phone_bundle(digits_run, tmp_path_factory):
    from edgekit.pack import bundle

    _web_deps()
    return bundle(digits_run, "android_arm64", tmp_path_factory.mktemp("web") / "android")


def test_deploy_web_opens_the_page_on_the_phone_over_adb_and_saves_what_it_measured(phone_bundle, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    adb = bin_dir / "adb"
    adb.write_text(FAKE_ADB)
    adb.chmod(0o755)
    phone = tmp_path / "phone.py"
    phone.write_text(PHONE.replace("sys.argv[2]", repr(chromium())))
    log, port = tmp_path / "adb.log", free_port()
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ADB_LOG": str(log), "PHONE": str(phone),
           "PHONE_PYTHON": sys.executable}
    proc = edgekit("deploy", str(phone_bundle.path), "--web", "--host", "R58M123ABC", "--port", str(port),
                   "--demo-seconds", "0", "--timeout", "240", env=env, timeout=300)
    assert proc.returncode == 0, (proc.stdout, proc.stderr, log.with_suffix(".log.phone").read_text()
                                  if log.with_suffix(".log.phone").exists() else "")
    calls = log.read_text().splitlines()
    assert calls[0] == f"-s R58M123ABC reverse tcp:{port} tcp:{port}"
    assert calls[1] == (f"-s R58M123ABC shell am start -a android.intent.action.VIEW -d "
                        f"'http://localhost:{port}/?demo=0'")
    assert calls[-1] == f"-s R58M123ABC reverse --remove tcp:{port}"  # the phone's port is given back
    report = json.loads((phone_bundle.path.parent / "deploy-report-android_arm64-web.json").read_text())
    assert report["passed"] and [r["artifact"] for r in report["smoke"]["results"]] == ["tflite_int8"]
    assert report["smoke"]["results"][0]["runtime"] == "litert.js"
    assert "tflite_int8: ok" in proc.stdout


def test_deploy_web_dry_run_shows_the_adb_commands_and_refuses_a_profile_without_adb(phone_bundle, web_bundle):
    proc = edgekit("deploy", str(phone_bundle.path), "--web", "--dry-run", "--port", "9000")
    assert proc.returncode == 0, proc.stderr
    assert "adb reverse tcp:9000 tcp:9000" in proc.stdout
    assert "adb shell 'am start -a android.intent.action.VIEW -d '\"'\"'http://localhost:9000/'\"'\"''" in proc.stdout
    assert "adb reverse --remove tcp:9000" in proc.stdout
    bad = edgekit("deploy", str(web_bundle.path), "--web", "--dry-run")
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and "over adb" in lines[0], bad.stderr
