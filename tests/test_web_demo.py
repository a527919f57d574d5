"""edgekit demo web: the bundle's ONNX artifacts proven in a real browser's WebAssembly runtime.

Debian's chromium, headless, driven by Playwright (no browser download: the system one); every request the
page makes is recorded, and must go to the edgekit server and nowhere else.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from edgekit.device.web.server import ORT_FILES

from .conftest import ROOT, edgekit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("CI must install Debian's chromium (scripts/setup-system.sh does)")
    pytest.skip("no chromium: run `make system`")


@pytest.fixture(scope="module")
def web_bundle(digits_run, tmp_path_factory):
    from edgekit.pack import bundle

    if not (ROOT / "web" / "node_modules" / "onnxruntime-web" / "dist" / ORT_FILES[0]).is_file():
        if os.environ.get("CI"):
            pytest.fail("CI must install web/node_modules (make web-deps does)")
        pytest.skip("no onnxruntime-web: run `make web-deps`")
    return bundle(digits_run, "x86_64_linux", tmp_path_factory.mktemp("web") / "x86")


def serve(bundle_dir, port: int, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "demo", "web", str(bundle_dir), "--port", str(port),
                             *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the server did not start: {proc.communicate()}")


def test_golden_pairs_pass_in_the_browser_and_the_report_comes_back(web_bundle, digits_run):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    port = _free_port()
    server = serve(web_bundle.path, port, "--once", "--timeout", "240")
    requests = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path(), args=["--no-sandbox"])
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("body[data-done]", timeout=200_000)
            rows = page.eval_on_selector_all("#results tbody tr", "rs => rs.map(r => r.dataset.artifact)")
            done = page.get_attribute("body", "data-done")
            browser.close()
        out, err = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == 0 and done == "passed", (out, err)
    onnx = sorted(a.name for a in web_bundle.artifacts if a.format == "onnx")
    assert sorted(rows) == onnx == ["onnx_fp32", "onnx_int8"]
    assert {r.split("/")[2] for r in requests} == {f"127.0.0.1:{port}"}  # nothing from anywhere else
    assert any(r.endswith(".wasm") for r in requests)
    report = json.loads((web_bundle.path.parent / "deploy-report-x86_64_linux-web.json").read_text())
    assert report["kind"] == "edgekit-deploy" and report["passed"] and report["transport"] == "http"
    by = {r["artifact"]: r for r in report["smoke"]["results"]}
    assert by["onnx_fp32"]["max_abs_diff"] <= 1e-4 and by["onnx_int8"]["top1_agreement"] >= 0.95
    assert all(r["p50_ms"] > 0 and r["p90_ms"] >= r["p50_ms"] and r["runtime"] == "onnxruntime-web"
               for r in by.values())
    shown = edgekit("report", str(digits_run), "--markdown")
    assert "x86_64_linux-web" in shown.stdout and "onnxruntime-web" in shown.stdout


def test_the_server_serves_the_page_the_runtime_and_the_bundle_and_nothing_else(web_bundle):
    import urllib.error
    import urllib.request

    port = _free_port()
    server = serve(web_bundle.path, port)
    try:
        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                    return r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.headers, b""

        status, headers, page = get("/")
        assert status == 200 and headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert b"http:" not in page and b"https:" not in page  # the page names no outside URL
        golden = json.loads(get("/bundle/golden.json")[2])
        assert golden["x"]["shape"][0] == len(golden["y"]) and set(golden["host"]) == {"onnx_fp32", "onnx_int8"}
        assert get("/ort/ort-wasm-simd-threaded.wasm")[1]["Content-Type"] == "application/wasm"
        for path in ("/bundle/artifacts/model_int8.tflite", "/bundle/golden.npz", "/../pyproject.toml",
                     "/ort/../package.json", "/bundle/artifacts/%2e%2e/manifest.json"):
            assert get(path)[0] == 404, path
    finally:
        server.kill()
        server.communicate()


@pytest.mark.parametrize("case", ["missing bundle", "no onnx artifact", "port in use", "no runtime files"])
def test_bad_input_is_one_line_and_exit_2(digits_run, web_bundle, tmp_path, case):
    from edgekit.pack import bundle

    target, env, port = str(web_bundle.path), {}, _free_port()
    holder = None
    if case == "missing bundle":
        target = str(tmp_path / "nope")
    elif case == "no onnx artifact":
        target = str(bundle(digits_run, "android_arm64", tmp_path / "phone").path)
    elif case == "port in use":
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen()
    else:
        env["EDGEKIT_WEB_RUNTIME"] = str(tmp_path)
    try:
        proc = edgekit("demo", "web", target, "--port", str(port), "--once", "--timeout", "5", env=env, timeout=60)
    finally:
        if holder:
            holder.close()
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("edgekit: error: "), proc.stderr
    says = {"missing bundle": "not a bundle", "no onnx artifact": "no ONNX artifact", "port in use": "cannot listen",
            "no runtime files": "make web-deps"}[case]
    assert says in lines[0]
