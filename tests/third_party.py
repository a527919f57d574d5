"""Third-party models and real images for the compress tests, made from files the set-up installs.

- Models: the MLPerf Tiny reference float models (Keras-trained, published as .tflite), turned into ONNX by
  tflite2onnx (a converter edgekit does not own), so edgekit sees an ONNX file it did not make: opset 11, NCHW
  input with the graph's own layout handling, a Softmax output.
- Real images: OpenCV's sample data from Debian's opencv-doc: frames of ``vtest.avi`` (pedestrians in a
  street) and the sample photos, split alternately into calibration and evaluation folders.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

MLPERF = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "reference-models" / "mlperf-tiny",
                            Path("/work/shared/reference-models/mlperf-tiny")) if p.is_dir()),
              Path("/work/shared/reference-models/mlperf-tiny"))  # beside the checkout, or where test_runtime looks
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
NOT_PHOTOS = ("chessboard", "logo", "Logo", "text", "Text", "notes", "mask", "digits", "gradient", "pic", "ml.png",
              "cards", "detect_blob", "ellipses", "box", "left", "right", "aloe", "graf", "HappyFish", "blox",
              "Blender", "licenseplate", "pca", "board", "chicky", "ela_")


def mlperf_onnx(name: str, out: Path) -> Path:
    """``name``.tflite from the MLPerf Tiny references, converted to ONNX in ``out`` (skips when unavailable)."""
    src = MLPERF / f"{name}.tflite"
    if not src.is_file():
        pytest.skip(f"{src} not found (the MLPerf Tiny reference models live beside the repository)")
    pytest.importorskip("tflite2onnx")
    dst = out / f"{name}.onnx"
    proc = subprocess.run([sys.executable, "-c", "import sys, tflite2onnx; tflite2onnx.convert(sys.argv[1], sys.argv[2])",
                           str(src), str(dst)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dst


def real_images(out: Path, *, every: int = 2) -> tuple[Path, Path]:
    """Calibration and evaluation folders of real images (every ``every``-th video frame, and the photos)."""
    cv2 = pytest.importorskip("cv2")
    video = OPENCV_DATA / "vtest.avi"
    if not video.is_file():
        pytest.skip(f"{video} not found: the Debian package opencv-doc (scripts/setup-system.sh installs it)")
    calib, ev = out / "calib", out / "eval"
    calib.mkdir(parents=True)
    ev.mkdir()
    cap = cv2.VideoCapture(str(video))
    i = k = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == 0:
            cv2.imwrite(str((calib if k % 2 else ev) / f"vtest_{i:04d}.jpg"), frame)
            k += 1
        i += 1
    photos = [p for p in sorted(OPENCV_DATA.glob("*.jpg")) + sorted(OPENCV_DATA.glob("*.png"))
              if not any(s in p.name for s in NOT_PHOTOS)]
    for j, p in enumerate(photos):
        img = cv2.imread(str(p))
        if img is not None:
            cv2.imwrite(str((calib if j % 2 else ev) / f"{p.stem}.png"), img)
    return calib, ev
