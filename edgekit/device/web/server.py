"""The HTTP server of ``edgekit demo web``: the page, the browser runtime's files, the bundle, the report."""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

from edgekit.device.runtime.tflite import io_tensors
from edgekit.device.smoke import FP32_TOLERANCE, MIN_AGREEMENT  # the page judges as the smoke test does
from edgekit.errors import ConfigError, DataError, MissingDependency

STATIC = Path(__file__).with_name("static")
NODE_MODULES = Path(__file__).resolve().parents[3] / "web" / "node_modules"  # the checkout's (make web-deps)
RUNTIME_ENV = "EDGEKIT_WEB_RUNTIME"  # a folder holding onnxruntime-web's dist files, instead of the checkout's
LITERT_ENV = "EDGEKIT_WEB_LITERT"  # a folder holding @litertjs/core and @litertjs/wasm-utils, instead
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# LiteRT.js: its module, the loader it imports by package name, and the WebAssembly builds it picks among
# (relaxed SIMD with or without threads; "compat" for browsers without relaxed SIMD).
LITERT_FILES = {"core.js": "core/dist/index.js", "wasm-utils.js": "wasm-utils/dist/index.js",
                **{f"wasm/litert_wasm_{v}internal.{ext}": f"core/wasm/litert_wasm_{v}internal.{ext}"
                   for v in ("", "compat_", "threaded_") for ext in ("js", "wasm")}}
MAX_REPORT_BYTES = 1 << 20
# LiteRT.js 2.5.3's JavaScript lists only float32, int32 and uint8 tensors (src/datatypes.ts), so a full-int8
# .tflite (int8 input and output, as edgekit writes them) fails with "Element type INT8 is not supported",
# although its WebAssembly runtime takes int8 buffers (the JS only copies bytes). The server adds int8 to
# that table when it serves the module; when the pinned text is not there (another version), it serves the
# file unchanged and the page says the int8 file cannot run.
LITERT_DTYPES = ('    elementType: ElementType.UINT8\n  }\n]);',
                 '    elementType: ElementType.UINT8\n  },\n  {\n    dtype: "int8",\n    typedArrayConstructor: '
                 'Int8Array,\n    elementType: ElementType.INT8\n  }\n]);')


def runtime_dir() -> Path:
    """onnxruntime-web's dist folder: $EDGEKIT_WEB_RUNTIME, or web/node_modules of the checkout (make setup)."""
    env = os.environ.get(RUNTIME_ENV)
    d = Path(env) if env else NODE_MODULES / "onnxruntime-web" / "dist"
    missing = [f for f in ORT_FILES if not (d / f).is_file()]
    if missing:
        raise MissingDependency(f"{d}: onnxruntime-web is not installed there (missing {', '.join(missing)}); "
                                f"run `make web-deps` (npm ci in web/) or set {RUNTIME_ENV} to its dist folder")
    return d


def litert_dir() -> Path:
    """The folder holding LiteRT.js (@litertjs/core, @litertjs/wasm-utils): $EDGEKIT_WEB_LITERT or the checkout's."""
    env = os.environ.get(LITERT_ENV)
    d = Path(env) if env else NODE_MODULES / "@litertjs"
    missing = [f for f in LITERT_FILES.values() if not (d / f).is_file()]
    if missing:
        raise MissingDependency(f"{d}: LiteRT.js is not installed there (missing {missing[0]}); run "
                                f"`make web-deps` (npm ci in web/) or set {LITERT_ENV} to its @litertjs folder")
    return d


def litert_core(root: Path) -> bytes:
    """LiteRT.js's module, with int8 tensors added to its dtype table (see LITERT_DTYPES)."""
    text = (root / LITERT_FILES["core.js"]).read_text()
    return text.replace(*LITERT_DTYPES, 1).encode()


def golden_payload(b, artifacts) -> dict:
    """The golden inputs and each artifact's host outputs, as the page reads them (float32, base64)."""
    g = b.golden()

    def enc(a) -> dict:
        a = np.ascontiguousarray(a, np.float32)
        return {"shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}

    def describe(a) -> dict:
        d = {"name": a.name, "file": a.path.relative_to(b.path).as_posix(), "format": a.format,
             "precision": a.precision, "host_runtime": a.host_runtime}
        if a.format == "tflite":  # LiteRT.js does not report a tensor's scale: the page quantizes with these
            d["io"] = io_tensors(a.path.read_bytes(), where=a.path)
        return d

    return {"x": enc(g["x"]), "y": g["y"].astype(int).tolist() if "y" in g else None,
            "host": {a.name: enc(g[a.golden_key]) for a in artifacts},
            "artifacts": [describe(a) for a in artifacts],
            "criteria": {"fp32_tolerance": FP32_TOLERANCE, "min_agreement": MIN_AGREEMENT},
            "device": b.device, "labels": b.labels, "preprocess": b.preprocess}


WEB_FORMATS = ("onnx", "tflite")  # onnxruntime-web and LiteRT.js


def web_artifacts(b, name: str | None = None):
    """The bundle's artifacts a browser runs: .onnx in onnxruntime-web, .tflite in LiteRT.js (one, if named)."""
    arts = [a for a in b.artifacts if a.format in WEB_FORMATS]
    if name is not None:
        a = b.artifact(name)
        if a.format not in WEB_FORMATS:
            raise ConfigError(f"{b.path}: artifact '{name}' is {a.format}; the browser page runs ONNX and TFLite "
                              "files")
        arts = [a]
    if not arts:
        raise ConfigError(f"{b.path}: no ONNX or TFLite artifact in this bundle, and the browser page runs only "
                          "those (make a bundle for a device whose profile lists onnx or tflite)")
    return arts


class _QuietServer(ThreadingHTTPServer):
    """A client that drops its connection (a phone locking its screen, plain HTTP to --https) is not an error
    of the demo's: no traceback on the console."""

    def handle_error(self, request, client_address):
        pass


class WebDemo:
    """One server for one bundle; ``report`` is set when the page has posted its measurements."""

    def __init__(self, b, *, host: str = "127.0.0.1", port: int = 8080, artifact: str | None = None,
                 https: bool = False):
        self.bundle = b
        self.artifacts = web_artifacts(b, artifact)
        formats = {a.format for a in self.artifacts}
        self.ort = runtime_dir() if "onnx" in formats else None
        self.litert = litert_dir() if "tflite" in formats else None
        self.payload = json.dumps(golden_payload(b, self.artifacts)).encode()
        self.report: dict | None = None
        self.report_path: Path | None = None
        self.received = threading.Event()
        try:
            self.httpd = _QuietServer((host, port), self._handler())
        except OSError as exc:
            raise ConfigError(f"{host}:{port}: cannot listen there ({exc.strerror or exc}); "
                              "choose another --port or --host") from None
        self.httpd.daemon_threads = True
        self.fingerprint: str | None = None
        if https:  # a secure context on a LAN (the camera and microphone need one): edgekit's self-signed cert
            from edgekit.device.web import tls

            cert, key, self.fingerprint = tls.certificate(host)
            self.httpd.socket = tls.server_context(cert, key).wrap_socket(
                self.httpd.socket, server_side=True, do_handshake_on_connect=False)  # in the request's thread

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        scheme = "https" if self.fingerprint else "http"
        return f"{scheme}://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/"

    def start(self) -> None:
        """Serve in a background thread (until :meth:`stop`)."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def serve(self, *, once: bool = False, timeout: float | None = None) -> dict | None:
        """Serve until interrupted, or (``once``) until the page posts its report or ``timeout`` passes."""
        self.start()
        try:
            if once:
                if not self.received.wait(timeout):
                    raise DataError(f"{self.url}: no report from a browser within {timeout:.0f} s")
            else:
                while True:
                    time.sleep(3600)
        finally:
            self.stop()
        return self.report

    def _save(self, body: dict) -> Path:
        """The page's measurements as a deploy report (the shape ``edgekit report`` reads), beside the bundle."""
        from edgekit import __version__
        from edgekit.device.bundle import save_device_report

        b = self.bundle
        env = body.get("environment") if isinstance(body.get("environment"), dict) else {}
        results = [r for r in body["results"] if isinstance(r, dict)]
        passed = bool(body.get("passed")) and len(results) == len(self.artifacts) and all(
            r.get("passed") is True for r in results)
        report = {
            "schema": 1, "kind": "edgekit-deploy", "edgekit_version": __version__, "device": f"{b.device}-web",
            "target": "browser: " + str(env.get("user_agent", "unknown"))[:160], "transport": "http",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": float(body.get("seconds") or 0.0),
            "passed": passed, "bundle": str(b.path),
            "host": {a.name: {"expected": a.expected} for a in self.artifacts},
            "smoke": {"results": results, "problems": [str(p) for p in body.get("problems") or []], "passed": passed,
                      "environment": {"machine": "browser", "cpus": env.get("cpus"), **env}},
        }
        return save_device_report(b, report)

    def _handler(self):
        demo = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "edgekit-web"

            def log_message(self, *args):  # quiet: edgekit prints its own lines
                pass

            def _send(self, code: int, data: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                # cross-origin isolation: SharedArrayBuffer, so onnxruntime-web can use WebAssembly threads
                self.send_header("Cross-Origin-Opener-Policy", "same-origin")
                self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
                self.end_headers()
                self.wfile.write(data)

            def _file(self, root: Path, rel: str) -> None:
                path = (root / rel).resolve()
                if root.resolve() not in path.parents or not path.is_file():
                    return self._send(404, b"not found", "text/plain")
                ctype = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                         ".onnx": "application/octet-stream", ".tflite": "application/octet-stream"}.get(path.suffix) or \
                    mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                self._send(200, path.read_bytes(), ctype)

            def do_GET(self):  # noqa: N802 — http.server's name
                p = unquote(urlsplit(self.path).path)
                if p in ("/", "/index.html"):
                    return self._file(STATIC, "index.html")
                if p == "/favicon.ico":
                    return self._send(204, b"", "image/x-icon")
                if p.count("/") == 1 and p.endswith(".js") and (STATIC / p[1:]).is_file():
                    return self._file(STATIC, p[1:])  # the page's own modules
                if demo.ort and p.startswith("/ort/") and p[5:] in ORT_FILES:
                    return self._file(demo.ort, p[5:])
                if demo.litert and p == "/litert/core.js":
                    return self._send(200, litert_core(demo.litert), "text/javascript")
                if demo.litert and p.startswith("/litert/") and p[8:] in LITERT_FILES:
                    return self._file(demo.litert, LITERT_FILES[p[8:]])
                if p == "/bundle/golden.json":
                    return self._send(200, demo.payload, "application/json")
                if p == "/bundle/manifest.json":
                    return self._file(demo.bundle.path, "manifest.json")
                if p.startswith("/bundle/artifacts/"):
                    files = {a.path.name for a in demo.artifacts}
                    name = p[len("/bundle/artifacts/"):]
                    if name in files:
                        return self._file(demo.bundle.path / "artifacts", name)
                return self._send(404, b"not found", "text/plain")

            def do_POST(self):  # noqa: N802
                if urlsplit(self.path).path != "/report":
                    return self._send(404, b"not found", "text/plain")
                n = int(self.headers.get("Content-Length") or 0)
                if not 0 < n <= MAX_REPORT_BYTES:
                    return self._send(413, b"report too large", "text/plain")
                try:
                    body = json.loads(self.rfile.read(n))
                    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
                        raise ValueError("no results list")
                except ValueError as exc:
                    return self._send(400, f"bad report: {exc}".encode(), "text/plain")
                demo.report_path = demo._save(body)
                demo.report = body
                demo.received.set()
                self._send(200, json.dumps({"saved": str(demo.report_path)}).encode(), "application/json")

        return Handler
