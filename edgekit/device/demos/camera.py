"""The camera demo: frames from OpenCV, the bundle's pre-processing, one artifact, an overlay, a window or a stream.

Each frame is a BGR image of any size. It is turned into what the model was trained on exactly as
the bundle's manifest says: converted to grayscale when the model takes one channel (RGB for three),
resized to the model's input size with area averaging, then :func:`edgekit.device.preprocess.apply` (scale, mean, std, NCHW). The aspect ratio is not kept: a 4:3
frame is squeezed into the square input, as most camera demos of such models do. Nothing else is done: a Fashion-MNIST model expects a single centred item,
light on a black background, as in its 28x28 training images, so point the camera at one item on a
dark surface; an arbitrary scene gives an arbitrary (but honest) prediction.

Where the result goes:

* a window, when there is a display (``DISPLAY`` set), ``--headless`` is not given and OpenCV has a GUI;
* an MJPEG stream over HTTP (``--stream HOST:PORT``, bound to 127.0.0.1 unless another address is
  given; also the fallback when a window cannot be opened): ``/`` a page, ``/stream`` the
  ``multipart/x-mixed-replace`` stream, ``/frame.jpg`` one frame. Each client has its own thread; a
  client that disconnects or stops reading ends only its own thread;
* an annotated video file (``--output FILE.mp4|.avi``);
* one JSON line per frame on stdout (``--json``).

Device side: numpy, OpenCV and a runtime. Never torch.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from edgekit.device import preprocess
from edgekit.errors import ConfigError, DataError, MissingDependency, require

DEFAULT_STREAM = "127.0.0.1:8080"
JPEG_QUALITY = 80  # stream frames: ~4x smaller than 95 with no visible difference at these sizes
MAX_CLIENTS = 8  # concurrent stream clients; more get 503 (each costs one JPEG write per frame)
CLIENT_TIMEOUT_S = 5.0  # a client that stops reading is dropped after this, freeing its thread


def _cv2():
    # OpenCV's and FFmpeg's own log lines would precede edgekit's one-line errors; the error says how to see them.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    return require("cv2", extra="camera", why="the camera demo")


@dataclass(frozen=True)
class FrameResult:
    """One frame's prediction (what --json prints)."""

    frame: int
    label: str
    class_index: int
    confidence: float
    latency_ms: float  # pre-processing + inference of this frame
    fps: float  # end-to-end frames per second, averaged over the last frames


@dataclass(frozen=True)
class DemoStats:
    """What a demo run measured: frames, end-to-end FPS and per-frame latency."""

    frames: int
    seconds: float
    fps: float
    latency_p50_ms: float
    latency_p90_ms: float
    artifact: str
    runtime: str
    threads: int
    source: str
    url: str | None
    output: str | None


class Classifier:
    """A bundle artifact with the bundle's pre-processing: BGR frame in, (class, confidence) out.

    Args:
        b: a verified Bundle.
        artifact: an artifact name; None picks the fastest runnable one (host latency at 1 thread).
        runtime: a runtime name; None picks the first installed one the bundle lists for the artifact.
        threads: runtime threads (and OpenCV's).
    """

    def __init__(self, b, artifact: str | None = None, runtime: str | None = None, threads: int = 1):
        self.cv2 = _cv2()
        self.art, self.runtime = choose(b, artifact, runtime)
        self.threads = threads
        self.session = None  # opened by open(): after the source, so a bad source fails before the runtime loads
        self.spec = b.preprocess
        self.labels = b.labels
        h, w = self.spec["size"]
        self.size = (int(w), int(h))  # OpenCV takes (width, height)
        self.channels = int(self.spec["channels"])

    def open(self) -> Classifier:
        from edgekit.device.runtime import open_session

        if self.session is None:
            self.session = open_session(self.art.path, runtime=self.runtime, threads=self.threads)
        return self

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """BGR (or grayscale) uint8 frame of any size -> the model's float32 (1, C, H, W) input."""
        # The same path as training data (preprocess.to_pixels). Cropping to a whole multiple of the input size
        # would take OpenCV's integer fast path, 0.14 instead of 0.90 ms at 640x480 -> 28x28 here, but shifts the
        # averaging grid: 4 of 64 golden frames changed class.
        img = preprocess.to_pixels(frame, size=(self.size[1], self.size[0]), channels=self.channels)
        return preprocess.apply(self.spec, img[None])

    def __call__(self, frame: np.ndarray) -> tuple[int, float]:
        logits = self.open().session.run(self.prepare(frame))[0].astype(np.float64)
        z = np.exp(logits - logits.max())
        probs = z / z.sum()
        k = int(probs.argmax())
        return k, float(probs[k])

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


def choose(b, artifact: str | None = None, runtime: str | None = None):
    """The (BundleArtifact, runtime) to run: named, or the fastest on the host among those runnable here.

    Raises:
        ConfigError: an unknown artifact or a runtime the bundle does not list for it.
        MissingDependency: no installed runtime runs any (or the named) artifact.
    """
    from edgekit.device.runtime import RUNTIMES

    def runnable(a):
        names = [r for r in a.runtimes if r in RUNTIMES and RUNTIMES.get(r).installed()]
        return [r for r in names if r == runtime] if runtime else names

    arts = [b.artifact(artifact)] if artifact else list(b.artifacts)
    if runtime and artifact and runtime not in b.artifact(artifact).runtimes:
        raise ConfigError(f"--runtime {runtime}: the bundle lists {', '.join(arts[0].runtimes)} for {artifact}")
    options = [(a, runnable(a)[0]) for a in arts if runnable(a)]
    if not options:
        extras = sorted({RUNTIMES.get(r).extra for a in arts for r in a.runtimes if r in RUNTIMES})
        raise MissingDependency(f"{b.path}: no installed runtime runs {artifact or 'any artifact of this bundle'}: "
                                + " or ".join(f'pip install "edgekit[{e}]"' for e in extras))

    def host_ms(opt):
        lat = (opt[0].expected.get("latency") or {}).get(opt[1]) or {}
        return (lat.get("1") or {}).get("p50_ms", float("inf"))

    return min(options, key=host_ms)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` (host 127.0.0.1) for --stream; port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    host = host if sep else "127.0.0.1"
    try:
        port_n = int(port)
    except ValueError:
        port_n = -1
    if not host or not 0 <= port_n <= 65535:
        raise ConfigError(f"--stream {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), port_n


class FrameHub:
    """The latest JPEG frame, handed to every stream client; clients wait on a condition for the next one."""

    def __init__(self):
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._clients = 0
        self.closed = False

    @property
    def clients(self) -> int:
        return self._clients

    def publish(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg, self._seq = jpeg, self._seq + 1
            self._cond.notify_all()

    def wait(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The next frame after sequence number ``after``; None on timeout or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self._seq > after, timeout=timeout)
            if self.closed or self._seq <= after or self._jpeg is None:
                return None
            return self._seq, self._jpeg

    def join(self) -> bool:
        with self._cond:
            if self._clients >= MAX_CLIENTS:
                return False
            self._clients += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._clients -= 1

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


_PAGE = (b"<!doctype html><title>edgekit camera</title><body style='margin:0;background:#111'>"
         b"<img src='/stream' style='width:100%;image-rendering:pixelated'></body>")


class _Handler(BaseHTTPRequestHandler):
    hub: FrameHub  # set on a subclass per server
    timeout = CLIENT_TIMEOUT_S  # socket timeout: a stalled client raises instead of holding its thread
    protocol_version = "HTTP/1.0"  # one request per connection: the stream ends when either side closes

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass  # one line per request would drown the demo's own output

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", _PAGE)
        elif path == "/stream":
            self._stream()
        elif path in ("/frame.jpg", "/snapshot.jpg"):
            got = self.hub.wait(0, timeout=CLIENT_TIMEOUT_S)
            if got is None:
                self._send(503, "text/plain", b"no frame yet\n")
            else:
                self._send(200, "image/jpeg", got[1])
        else:
            self._send(404, "text/plain", b"not found: try / or /stream\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client left: nothing to tell it

    def _stream(self) -> None:
        if not self.hub.join():
            self._send(503, "text/plain", f"at most {MAX_CLIENTS} stream clients\n".encode())
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq = 0
            while not self.hub.closed:
                got = self.hub.wait(seq, timeout=0.5)
                if got is None:
                    continue
                seq, jpeg = got
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                self.wfile.flush()
        except OSError:
            pass  # disconnected or stalled (BrokenPipe, ConnectionReset, timeout): end this client only
        finally:
            self.hub.leave()


class MjpegServer:
    """A ThreadingHTTPServer serving a FrameHub; ``close`` stops it and joins every client thread."""

    def __init__(self, host: str, port: int, hub: FrameHub):
        handler = type("Handler", (_Handler,), {"hub": hub})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"--stream {host}:{port}: cannot listen there ({exc.strerror or exc})") from None
        # Non-daemon handler threads, joined by server_close(): when the demo ends, no thread is left behind.
        self.httpd.daemon_threads = False
        self.httpd.block_on_close = True
        self.hub = hub
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edgekit-mjpeg", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def close(self) -> None:
        self.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()  # joins the client threads; they see hub.closed within 0.5 s
        self._thread.join()


class CameraDemo:
    """The demo loop, as an object so a caller (a test, a GUI) can watch it and stop it.

    Args:
        bundle: a bundle folder or Bundle (checksums are verified when it is a folder).
        source: a camera index ("0"), a video file or a URL (rtsp://, http://...).
        headless: never open a window.
        stream: ``HOST:PORT`` to serve the MJPEG stream on (port 0: a free one).
        frames: stop after this many frames (None: until the source ends or ``stop()``).
        json_lines: print one JSON line per frame to ``out``.
        output: write the annotated frames to this video file (.mp4: mp4v, .avi: MJPG).
        artifact, runtime, threads: what runs (see :class:`Classifier`).
        loop: start a video file again at its end.
        max_fps: pace the loop to at most this many frames per second (a file otherwise runs flat out).
        out: where --json lines go (default stdout).
    """

    def __init__(self, bundle, *, source: str | int = "0", headless: bool = False, stream: str | None = None,
                 frames: int | None = None, json_lines: bool = False, output: str | Path | None = None,
                 artifact: str | None = None, runtime: str | None = None, threads: int = 1, loop: bool = False,
                 max_fps: float | None = None, out=None):
        from edgekit.device.bundle import Bundle, load_bundle

        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        if frames is not None and frames < 1:
            raise ConfigError(f"--frames {frames}: must be at least 1")
        if threads < 1:
            raise ConfigError(f"--threads {threads}: must be at least 1")
        self.source = str(source)
        self.headless, self.frames_limit, self.json_lines = headless, frames, json_lines
        self.output = Path(output) if output else None
        if self.output and self.output.suffix.lower() not in (".mp4", ".avi"):
            raise ConfigError(f"--output {self.output}: use a .mp4 (mp4v) or .avi (MJPG) file name")
        if stream:
            parse_address(stream)  # fail on a bad address before anything opens
        self.stream = stream
        self.loop, self.max_fps, self.threads = loop, max_fps, threads
        self.out = out or sys.stdout
        self.classifier = Classifier(self.bundle, artifact, runtime, threads)
        self.frames = 0  # frames processed so far (read by watchers)
        self.server: MjpegServer | None = None
        self.ready = threading.Event()  # set once the source is open and the stream (if any) is listening
        self._stop = threading.Event()

    @property
    def url(self) -> str | None:
        return self.server.url if self.server else None

    def stop(self) -> None:
        """Ask the loop to finish after the current frame."""
        self._stop.set()

    def _open(self):
        cv2 = self.classifier.cv2
        src = self.source
        if src.isdigit():
            cap = cv2.VideoCapture(int(src))
            what = f"camera {src}"
        elif "://" in src:
            cap = cv2.VideoCapture(src)
            what = f"stream {src}"
        else:
            if not Path(src).is_file():
                raise DataError(f"--source {src}: no such file (give a camera index like 0, a video file or a URL)")
            cap = cv2.VideoCapture(src)
            what = f"video file {src}"
        if not cap.isOpened():
            cap.release()
            hint = (" (no camera at that index?)" if src.isdigit()
                    else " (FFmpeg says why with OPENCV_FFMPEG_LOGLEVEL=16 set)")
            raise DataError(f"--source {src}: OpenCV cannot open this {what.split()[0]}{hint}")
        return cap, what

    def _window(self) -> bool:
        if self.headless or not os.environ.get("DISPLAY") or self.stream:
            return False
        try:
            self.classifier.cv2.namedWindow("edgekit", self.classifier.cv2.WINDOW_AUTOSIZE)
            return True
        except self.classifier.cv2.error:
            print("edgekit: this OpenCV has no GUI (opencv-python-headless): streaming instead", file=sys.stderr)
            return False

    def run(self) -> DemoStats:
        """Run until the source ends, ``frames`` are done, ``stop()`` is called, or q/Esc in the window.

        Returns:
            DemoStats with the end-to-end FPS (capture, pre-processing, inference, overlay and output).

        Raises:
            DataError: the source cannot be opened.
            ConfigError: the stream address cannot be listened on.
        """
        cv2 = self.classifier.cv2
        cv2.setNumThreads(self.threads)
        cap, what = self._open()
        try:
            self.classifier.open()
        except BaseException:
            cap.release()
            raise
        window = self._window()
        stream = self.stream or (None if window or self.headless or self.output or self.json_lines
                                 else DEFAULT_STREAM)
        writer = tmp_out = None
        lat: list[float] = []
        fps_avg = 0.0
        try:
            if stream:
                host, port = parse_address(stream)
                self.server = MjpegServer(host, port, FrameHub())
                if host not in ("127.0.0.1", "localhost", "::1"):
                    print(f"edgekit: the stream is reachable from other machines on {host}", file=sys.stderr)
                print(f"edgekit: streaming {what} at {self.server.url}", file=sys.stderr, flush=True)
            self.ready.set()
            annotate = window or self.server is not None or self.output is not None
            t_start = t_prev = time.perf_counter()
            while not self._stop.is_set() and (self.frames_limit is None or self.frames < self.frames_limit):
                t_frame = time.perf_counter()
                ok, frame = cap.read()
                if not ok and self.loop and what.startswith("video file"):
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, frame = cap.read()
                if not ok:
                    break
                t0 = time.perf_counter()
                k, conf = self.classifier(frame)
                ms = (time.perf_counter() - t0) * 1e3
                lat.append(ms)
                label = self.classifier.labels[k] if k < len(self.classifier.labels) else str(k)
                if annotate:
                    overlay(cv2, frame, f"{label} {conf * 100:.0f}%", f"{fps_avg:.0f} FPS")
                if self.output is not None:
                    if writer is None:
                        writer, tmp_out = self._writer(cv2, cap, frame)
                    writer.write(frame)
                if self.server is not None and self.server.hub.clients:
                    ok_jpg, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                    if ok_jpg:
                        self.server.hub.publish(buf.tobytes())
                if window:
                    cv2.imshow("edgekit", frame)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        self._stop.set()
                self.frames += 1
                now = time.perf_counter()
                rate = 1 / (now - t_prev) if now > t_prev else 0.0
                fps_avg = rate if self.frames == 1 else 0.9 * fps_avg + 0.1 * rate  # shown on the next frame
                t_prev = now
                if self.json_lines:
                    res = FrameResult(self.frames - 1, label, k, round(conf, 5), round(ms, 3), round(fps_avg, 1))
                    self.out.write(json.dumps(asdict(res)) + "\n")
                    self.out.flush()
                if self.max_fps:
                    spare = 1 / self.max_fps - (time.perf_counter() - t_frame)
                    if spare > 0:
                        self._stop.wait(spare)
            seconds = time.perf_counter() - t_start
        finally:
            cap.release()
            if writer is not None:
                writer.release()
                os.replace(tmp_out, self.output)
            if self.server is not None:
                self.server.close()
            if window:
                cv2.destroyAllWindows()
            self.classifier.close()
            self.ready.set()
        arr = np.asarray(lat) if lat else np.zeros(1)
        return DemoStats(frames=self.frames, seconds=round(seconds, 4),
                         fps=round(self.frames / seconds, 2) if seconds > 0 else 0.0,
                         latency_p50_ms=float(np.median(arr)), latency_p90_ms=float(np.percentile(arr, 90)),
                         artifact=self.classifier.art.name, runtime=self.classifier.runtime, threads=self.threads,
                         source=self.source, url=self.server.url if self.server else None,
                         output=str(self.output) if self.output else None)

    def _writer(self, cv2, cap, frame):
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        fps = fps if 1 <= fps <= 240 else 30.0
        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.output.suffix.lower() == ".avi" else "mp4v"))
        self.output.parent.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name with the same suffix (OpenCV picks the container from it), renamed at the end.
        tmp = self.output.with_name(f".{self.output.stem}.partial{self.output.suffix}")
        writer = cv2.VideoWriter(str(tmp), fourcc, fps, (frame.shape[1], frame.shape[0]))
        if not writer.isOpened():
            raise DataError(f"--output {self.output}: OpenCV cannot write this video file")
        return writer, tmp


def overlay(cv2, frame: np.ndarray, text: str, fps: str) -> None:
    """Draw the label and confidence (left) and the FPS (right) on a dark bar across the top, in place."""
    h, w = frame.shape[:2]
    scale = max(0.3, min(1.0, w / 640))
    bar = max(12, int(26 * scale))
    frame[:bar] = (frame[:bar] * 0.35).astype(frame.dtype)
    thick = 1 if scale < 0.7 else 2
    cv2.putText(frame, text, (4, bar - int(7 * scale) - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (255, 255, 255),
                thick, cv2.LINE_AA)
    (tw, _), _ = cv2.getTextSize(fps, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, 1)
    cv2.putText(frame, fps, (w - tw - 4, bar - int(7 * scale) - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale,
                (0, 255, 0), 1, cv2.LINE_AA)


def run_camera(bundle, **options) -> DemoStats:
    """Run the camera demo on a bundle (see :class:`CameraDemo` for the options).

    Args:
        bundle: a bundle folder or Bundle.
        **options: source, headless, stream, frames, json_lines, output, artifact, runtime, threads, loop,
            max_fps, out.

    Returns:
        DemoStats.

    Raises:
        DataError: a tampered bundle or a source OpenCV cannot open.
        ConfigError: bad options (frames, stream address, output suffix, artifact name).
        MissingDependency: OpenCV or the runtime is not installed.

    Example:
        >>> run_camera("bundles/rpi5", source="0", stream="0.0.0.0:8080").fps
        240.5
    """
    return CameraDemo(bundle, **options).run()


__all__ = ["CameraDemo", "Classifier", "DemoStats", "FrameHub", "FrameResult", "MjpegServer", "choose", "overlay",
           "parse_address", "run_camera"]
