"""A screenshot of `edgekit demo web` running: golden pairs proven, then the camera demo on held-out images.

    python scripts/web_screenshot.py BUNDLE docs/images/web-demo.png

Headless Debian chromium through Playwright; its fake camera plays the bundle's golden inputs (held-out test
images, turned back into pixels and enlarged 8x) from a y4m file. For the README; not a test.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    args = argv or sys.argv[1:]
    if len(args) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from edgekit.device.bundle import load_bundle
    from edgekit.device.signing import Policy
    from edgekit.device.web.fake_media import enlarge, golden_pixels, write_y4m

    bundle_dir, out = Path(args[0]), Path(args[1])
    b = load_bundle(bundle_dir, policy=Policy(allow_unsigned=True))
    tmp = Path(tempfile.mkdtemp(prefix="edgekit-shot-"))
    video = write_y4m(tmp / "camera.y4m", np.repeat(enlarge(golden_pixels(b)[:16], 8), 6, axis=0), fps=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "edgekit", "demo", "web", str(bundle_dir), "--port", str(port)],
                              stdout=subprocess.DEVNULL)
    try:
        time.sleep(2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-background-networking", "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={video}"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("body[data-demo]", timeout=300_000)
            page.wait_for_function("window.edgekitCamera && window.edgekitCamera.count >= 12", timeout=60_000)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            print(f"{out}: {page.inner_text('#verdict')} | {page.inner_text('#demo-status')}")
            browser.close()
    finally:
        server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
