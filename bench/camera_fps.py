"""The camera demo's end-to-end frames per second on a video file, at 1 thread, per artifact of a bundle.

End to end means what `edgekit demo camera --headless` does per frame: decode the next video frame
(MJPG, camera-sized), convert and resize it to the model input, pre-process, run the model, and
(in the "annotated" rows) draw the overlay and write the frame to a video file. The video is made
from the bundle's golden held-out images, scaled up to --size, so the frame accuracy is printed
next to the host runtime's accuracy on the same images.

    python bench/camera_fps.py                    # newest runs/fashion_mnist_resnet8/* run, bundled for x86_64_linux
    python bench/camera_fps.py bundles/rpi5       # an existing bundle
    python bench/camera_fps.py runs/digits_resnet8/20261125-153000 --frames 1000

Exit code 1 when an artifact's headless FPS is below --target (the issue's 60 FPS).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def latest_run(recipe: str) -> Path | None:
    from edgekit.rundir import latest_run as newest

    return newest(ROOT / "runs", recipe)


def make_video(raw: np.ndarray, path: Path, size: tuple[int, int]) -> None:
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for img in raw:
        frame = cv2.resize(img, size, interpolation=cv2.INTER_NEAREST)
        w.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame[..., ::-1])
    w.release()


def main() -> int:
    from edgekit.device.bundle import Bundle, load_bundle
    from edgekit.device.demos.camera import CameraDemo, choose
    from edgekit.pack import bundle

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", help="a bundle or a run folder (default: newest Fashion-MNIST run)")
    ap.add_argument("--device", default="x86_64_linux", help="device profile when bundling a run folder")
    ap.add_argument("--frames", type=int, default=2000, help="frames per measurement (the video loops)")
    ap.add_argument("--size", default="640x480", help="video frame size WxH, like a camera's (default 640x480)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target", type=float, default=60.0, help="minimum headless FPS (default 60)")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))

    src = Path(args.source) if args.source else latest_run("fashion_mnist_resnet8")
    if src is None:
        print("no bundle given and no runs/fashion_mnist_resnet8 run: run `make run` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="camera-fps-") as tmp:
        tmp = Path(tmp)
        b: Bundle = bundle(src, args.device, tmp / "bundle") if (src / "results.json").is_file() else load_bundle(src)
        golden = b.golden()
        video = tmp / "frames.avi"
        make_video(golden["raw"], video, size)
        print(f"# camera demo, end to end — bundle {src} ({b.manifest['recipe']['name']}), video {len(golden['raw'])} "
              f"held-out images at {size[0]}x{size[1]} MJPG, looped to {args.frames} frames, {args.threads} thread(s)\n")
        head = ["artifact", "runtime", "mode", "frames", "FPS", "pre+infer p50 ms", "frame acc", "host acc", "target"]
        rows, slow = [], []
        for art in b.artifacts:
            try:
                _, runtime = choose(b, art.name)
            except Exception as exc:  # noqa: BLE001 - a runtime missing here is a row, not a crash
                rows.append([art.name, "-", "-", "0", "-", "-", "-", "-", f"skipped: {exc}"])
                continue
            out = io.StringIO()
            acc_run = CameraDemo(b, source=str(video), headless=True, json_lines=True, out=out, artifact=art.name,
                                 threads=args.threads).run()
            preds = np.array([json.loads(line)["class_index"] for line in out.getvalue().splitlines()])
            frame_acc = float((preds == golden["y"][: len(preds)]).mean()) if acc_run.frames else float("nan")
            host_acc = float((golden[art.golden_key].argmax(1) == golden["y"]).mean())
            for mode in ("headless", "annotated"):
                demo = CameraDemo(b, source=str(video), headless=True, loop=True, frames=args.frames,
                                  artifact=art.name, threads=args.threads,
                                  output=tmp / "annotated.avi" if mode == "annotated" else None)
                s = demo.run()
                ok = s.fps >= args.target
                if mode == "headless" and not ok:
                    slow.append(art.name)
                rows.append([art.name, runtime, mode, str(s.frames), f"{s.fps:.0f}", f"{s.latency_p50_ms:.3f}",
                             f"{frame_acc:.4f}", f"{host_acc:.4f}",
                             f"{'ok' if ok else 'BELOW'} (>= {args.target:.0f})"])
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        for r in [head, ["-" * w for w in widths], *rows]:
            print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    if slow:
        print(f"\nbelow {args.target:.0f} FPS headless: {', '.join(slow)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
