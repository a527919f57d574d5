"""The camera demo on video made from held-out images: its predictions reach the bundle's accuracy, its MJPEG
stream serves several clients and survives one that leaves mid-stream, and bad input exits 2 with one line."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time

import numpy as np
import pytest

from edgekit import data, recipe
from edgekit.device.demos.camera import CameraDemo, parse_address, run_camera
from edgekit.errors import ConfigError, DataError
from edgekit.pack import bundle

from .conftest import edgekit

cv2 = pytest.importorskip("cv2", reason="the camera demo needs opencv-python-headless (edgekit[camera])")

FRAME = 112  # test images are scaled up to 112x112 BGR frames, as a camera would see a larger image
# Each frame goes through MJPG compression and a resize back to the model's 8x8: a few borderline images may
# change class. 0.02 is 7 of the 359 held-out digits.
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def camera_bundle(digits_run, tmp_path_factory):
    return bundle(digits_run, "x86_64_linux", tmp_path_factory.mktemp("cam") / "bundle")


@pytest.fixture(scope="module")
def held_out(digits_run, tmp_path_factory):
    """The run's whole held-out test split as a video: one frame per image, MJPG in .avi."""
    splits = data.load(recipe.load(digits_run / "recipe.json").data)
    path = tmp_path_factory.mktemp("video") / "test_split.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (FRAME, FRAME))
    for img in splits.test_x:
        w.write(cv2.cvtColor(cv2.resize(img, (FRAME, FRAME), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR))
    w.release()
    return path, splits.test_y


@pytest.mark.parametrize("artifact", ["onnx_fp32", "onnx_int8", "tflite_int8"])
def test_predictions_on_held_out_frames_reach_the_bundles_expected_accuracy(camera_bundle, held_out, artifact):
    video, y = held_out
    out = io.StringIO()
    stats = run_camera(camera_bundle, source=str(video), headless=True, json_lines=True, out=out, artifact=artifact)
    preds = np.array([json.loads(line)["class_index"] for line in out.getvalue().splitlines()])
    assert stats.frames == len(preds) == len(y)
    expected = camera_bundle.artifact(artifact).expected["accuracy"]
    accuracy = float((preds == y).mean())
    assert accuracy >= expected - TOLERANCE, f"{artifact}: {accuracy:.4f} on frames vs {expected:.4f} expected"


def test_cli_json_prints_one_line_per_frame(camera_bundle, held_out):
    video, _ = held_out
    proc = edgekit("demo", "camera", str(camera_bundle.path), "--source", str(video), "--headless", "--json",
                   "--frames", "25", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["frame"] for r in rows] == list(range(25))
    for r in rows:
        assert set(r) == {"frame", "label", "class_index", "confidence", "latency_ms", "fps"}
        assert r["label"] == str(r["class_index"]) and 0 < r["confidence"] <= 1 and r["latency_ms"] > 0
    assert "25 frames" in proc.stderr and "FPS end to end" in proc.stderr


def test_annotated_video_file(camera_bundle, held_out, tmp_path):
    video, _ = held_out
    out = tmp_path / "annotated.mp4"
    stats = run_camera(camera_bundle, source=str(video), headless=True, frames=30, output=out)
    assert stats.frames == 30 and stats.output == str(out)
    cap = cv2.VideoCapture(str(out))
    n, first = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        first = frame if first is None else first
        n += 1
    assert n == 30 and first.shape == (FRAME, FRAME, 3)
    assert first[:10].mean() < first[10:].mean() + 60  # the dark overlay bar is drawn at the top
    assert [p.name for p in tmp_path.iterdir()] == ["annotated.mp4"]  # no partial file left


def _get(port: int, path: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


def _headers(f) -> dict:
    status = f.readline().decode()
    assert status.startswith("HTTP/1.") and " 200 " in status, status
    headers = {}
    while (line := f.readline().decode().strip()):
        k, _, v = line.partition(":")
        headers[k.lower()] = v.strip()
    return headers


def _parts(f, n: int) -> list[bytes]:
    frames = []
    for _ in range(n):
        assert f.readline().strip() == b"--frame"
        head = {}
        while (line := f.readline().decode().strip()):
            k, _, v = line.partition(":")
            head[k.lower()] = v.strip()
        assert head["content-type"] == "image/jpeg"
        frames.append(f.read(int(head["content-length"])))
        assert f.readline() == b"\r\n"
    return frames


def _wait(cond, timeout=5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_mjpeg_stream_serves_two_clients_and_survives_one_that_leaves(camera_bundle, held_out):
    video, _ = held_out
    before = set(threading.enumerate())
    # A file played in a loop at 100 FPS at most; 3000 frames bound the run should the test misbehave.
    demo = CameraDemo(camera_bundle, source=str(video), stream="127.0.0.1:0", loop=True, max_fps=100, frames=3000,
                      headless=True)
    stats = {}
    runner = threading.Thread(target=lambda: stats.update(s=demo.run()), name="demo-runner")
    runner.start()
    try:
        assert demo.ready.wait(10) and demo.url.startswith("http://127.0.0.1:")
        port = int(demo.url.rsplit(":", 1)[1].strip("/"))

        one = _get(port, "/stream")
        f1 = one.makefile("rb")
        h = _headers(f1)
        assert h["content-type"] == "multipart/x-mixed-replace; boundary=frame"
        two = _get(port, "/stream")  # a second client at the same time
        f2 = two.makefile("rb")
        _headers(f2)
        for jpeg in _parts(f1, 2) + _parts(f2, 2):
            assert jpeg[:2] == b"\xff\xd8"
            assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (FRAME, FRAME, 3)

        # A client that disconnects mid-frame, with a reset rather than a polite close.
        rude = _get(port, "/stream")
        rude.recv(200)
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.close()
        n = demo.frames
        assert _wait(lambda: demo.frames > n + 20), "the demo stopped after a client left"
        assert _wait(lambda: demo.server.hub.clients == 2), "the departed client's thread did not end"
        assert len(_parts(f1, 2)) == 2 and len(_parts(f2, 1)) == 1  # the others still get frames

        snap = _get(port, "/frame.jpg")
        fs = snap.makefile("rb")
        assert _headers(fs)["content-type"] == "image/jpeg"
        assert fs.read()[:2] == b"\xff\xd8"
        snap.close()

        # The stream is a source too: a second demo reads it by URL.
        out = io.StringIO()
        url_stats = run_camera(camera_bundle, source=f"{demo.url}stream", headless=True, json_lines=True, frames=5,
                               out=out)
        assert url_stats.frames == 5 and len(out.getvalue().splitlines()) == 5
        one.close()
        two.close()
    finally:
        demo.stop()
        runner.join(15)
    assert not runner.is_alive()
    assert stats["s"].frames == demo.frames > 20 and stats["s"].url
    assert _wait(lambda: set(threading.enumerate()) <= before), set(threading.enumerate()) - before


def test_a_window_needs_a_gui_else_it_streams(camera_bundle, held_out, monkeypatch, capsys):
    video, _ = held_out
    monkeypatch.setenv("DISPLAY", ":99")
    try:
        cv2.namedWindow("probe")
        cv2.destroyAllWindows()
        pytest.skip("this OpenCV has a GUI (and there may be a display)")
    except cv2.error:
        pass  # opencv-python-headless: no GUI
    demo = CameraDemo(camera_bundle, source=str(video))
    assert demo._window() is False
    assert "streaming instead" in capsys.readouterr().err
    assert CameraDemo(camera_bundle, source=str(video), headless=True)._window() is False


@pytest.mark.parametrize("args, message", [
    (["--source", "/nonexistent/video.avi"], "no such file"),
    (["--source", "9"], "OpenCV cannot open this camera (no camera at that index?)"),
    (["--source", "rtsp://127.0.0.1:1/none"], "OpenCV cannot open this stream"),
    (["--stream", "localhost:99999"], "expected HOST:PORT"),
    (["--frames", "0"], "--frames 0: must be at least 1"),
    (["--artifact", "tflite_int9"], "Did you mean 'tflite_int8'"),
    (["--output", "x.gif"], "use a .mp4 (mp4v) or .avi (MJPG) file name"),
])
def test_bad_input_exits_2_with_one_line(camera_bundle, held_out, args, message):
    video, _ = held_out
    full = ["--source", str(video), "--headless", *args] if "--source" not in args else ["--headless", *args]
    proc = edgekit("demo", "camera", str(camera_bundle.path), *full, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("edgekit: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr


def test_stream_addresses():
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address("8081") == ("127.0.0.1", 8081)
    assert parse_address("[::1]:0") == ("::1", 0)
    with pytest.raises(ConfigError):
        parse_address("host:http")


def test_a_tampered_bundle_is_refused(camera_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(camera_bundle.path, copy)
    onnx = copy / "artifacts" / "model_fp32.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1])
    with pytest.raises(DataError, match="model_fp32.onnx"):
        CameraDemo(copy, source="0")


@pytest.mark.parametrize("size, channels", [((28, 28), 1), ((96, 96), 3), ((200, 300), 3)])
def test_one_picture_gives_one_tensor_as_training_data_and_as_a_camera_frame(tmp_path, size, channels):
    """A photo in an image folder (training, compress) and the same photo arriving as a camera frame go through
    one decode-and-resize path: the tensors are identical, shrinking and enlarging, gray and colour."""
    from edgekit.data.image_folder import read_image
    from edgekit.device import preprocess
    from edgekit.device.demos.camera import Classifier

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:120, 0:160]
    photo = np.stack([(xx * 1.5) % 256, (yy * 2.0) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    photo = cv2.GaussianBlur((photo + rng.integers(0, 40, photo.shape)).astype(np.uint8), (5, 5), 0)
    path = tmp_path / "photo.png"
    assert cv2.imwrite(str(path), photo)
    spec = preprocess.image_spec(size=size, channels=channels, mean=[0.5] * channels, std=[0.25] * channels)

    trained_on = preprocess.apply(spec, read_image(path, size=size, channels=channels)[None])
    camera = Classifier.__new__(Classifier)  # the demo's pre-processing alone, without a bundle or a runtime
    camera.spec, camera.size, camera.channels = spec, (size[1], size[0]), channels
    seen = camera.prepare(cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR))  # as a frame arrives: BGR
    assert seen.shape == trained_on.shape == (1, channels, *size)
    assert np.array_equal(seen, trained_on)
