"""Browser against native: each artifact's batch-1 latency in the browser's runtime (headless Chromium, WASM:
onnxruntime-web for .onnx, LiteRT.js for .tflite) next to the native runtime's on the same file (onnxruntime,
LiteRT), measured side by side in one run, as a ratio.

    python bench/web_latency.py                 # newest runs/fashion_mnist_resnet8/* run, bundled for x86_64_linux
    python bench/web_latency.py bundles/x86     # an existing bundle

The browser numbers are what the page of `edgekit demo web` measures (30 timed runs after 5 warm-up runs, at
1 and 2 WASM threads); native is edgekit's own bench at 1 and 2 threads. The target (browser <= 3x native,
best of each) is for the default bundle's int8 TFLite; it is printed, not asserted.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def browser_numbers(bundle_dir: Path, device: str, threads: int) -> dict:
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "edgekit", "demo", "web", str(bundle_dir), "--port", str(port),
                               "--once", "--timeout", "600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/?threads={threads}&demo=0")
            page.wait_for_selector("body[data-done]", timeout=600_000)
            ua = page.evaluate("navigator.userAgent")
            browser.close()
        server.communicate(timeout=60)
    finally:
        server.kill()
    rep = json.loads((bundle_dir.parent / f"deploy-report-{device}-web.json").read_text())
    return {"ua": ua, "rows": {r["artifact"]: r for r in rep["smoke"]["results"] if r.get("runtime")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", help="a bundle folder or a run folder (default: newest fashion_mnist run)")
    args = ap.parse_args(argv)
    from edgekit.device.bench import bench
    from edgekit.device.bundle import load_bundle
    from edgekit.device.signing import Policy
    from edgekit.info import cpu_name
    from edgekit.pack import bundle
    from edgekit.rundir import latest_run

    src = Path(args.source) if args.source else latest_run(ROOT / "runs", "fashion_mnist_resnet8")
    if src is None:
        print("no run: `make run` first, or name a bundle", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="edgekit-web-bench-"))
    b = load_bundle(src, policy=Policy(allow_unsigned=True)) if (src / "manifest.json").is_file() else \
        bundle(src, "x86_64_linux", tmp / "x86")
    webs = {t: browser_numbers(b.path, b.device, t) for t in (1, 2)}
    print(f"# browser vs native, {time.strftime('%Y-%m-%d')}, {cpu_name()}; {webs[1]['ua']}")
    print("| artifact | browser runtime | 1T p50 ms | 2T p50 ms | native runtime | 1T p50 ms | 2T p50 ms | "
          "browser best / native best |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    golden = b.golden()
    ratios = {}
    for a in b.artifacts:
        if any(a.name not in w["rows"] for w in webs.values()):
            continue
        native = {t: bench(a.path, runtime=a.host_runtime, threads=t, warmup=20, iterations=200,
                           sample=golden["x"][:1]).p50_ms for t in (1, 2)}
        w = {t: webs[t]["rows"][a.name]["p50_ms"] for t in webs}
        ratios[a.name] = min(w.values()) / min(native.values())
        print(f"| {a.name} | {webs[1]['rows'][a.name]['runtime']} | {w[1]:.3f} | {w[2]:.3f} | {a.host_runtime} | "
              f"{native[1]:.3f} | {native[2]:.3f} | {ratios[a.name]:.2f}x |")
    if "tflite_int8" in ratios:
        r = ratios["tflite_int8"]
        print(f"target: tflite_int8 in the browser <= 3x native: {r:.2f}x ({'met' if r <= 3 else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
