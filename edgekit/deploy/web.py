"""Deploy to a phone's browser over adb: ``edgekit deploy BUNDLE --device android_arm64 --web``.

A phone runs no Python, but its browser runs the bundle's .onnx and .tflite files (edgekit demo web). Over
USB, adb makes the phone's ``localhost:PORT`` this machine's (``adb reverse``), and ``http://localhost`` is a
secure context, so the page gets the camera and the microphone without a certificate. The plan::

    serve                 edgekit demo web's server on 127.0.0.1:PORT (this machine only)
    forward port          adb reverse tcp:PORT tcp:PORT
    open page             adb shell am start -a android.intent.action.VIEW -d http://localhost:PORT/
    wait                  the page runs the golden pairs and posts its report: deploy-report-<device>-web.json
    demo                  the page goes on to the camera or microphone demo while this keeps serving
                          (--demo-seconds; 0 opens the page without the demo and stops at the report)
    remove forward        adb reverse --remove tcp:PORT

Nothing here imports torch.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from edgekit.deploy.transports import AdbTransport, DeployError, Step
from edgekit.errors import ConfigError


@dataclass(frozen=True)
class WebDeployResult:
    """What ``deploy_web`` did: its adb steps and (unless a dry run) the page's report and where it went."""

    device: str
    target: str
    url: str
    steps: tuple[Step, ...]
    dry_run: bool
    report: dict | None = None
    report_path: object = None

    @property
    def passed(self) -> bool:
        return bool(self.report and self.report.get("passed"))


def web_steps(tr: AdbTransport, port: int, *, demo: bool = True) -> tuple[list[Step], Step]:
    """(steps before the page runs, the step that undoes the port forward) for one adb device."""
    url = f"http://localhost:{port}/" + ("" if demo else "?demo=0")
    return ([Step("forward port", (*tr.base(), "reverse", f"tcp:{port}", f"tcp:{port}"), timeout=30),
             Step("open page", tuple(tr.shell(f"am start -a android.intent.action.VIEW -d '{url}'")), timeout=30)],
            Step("remove forward", (*tr.base(), "reverse", "--remove", f"tcp:{port}"), timeout=30, ok_codes=()))


def deploy_web(b, dev, tr, *, port: int = 8080, artifact: str | None = None, timeout: float = 600,
               demo_seconds: float | None = None, dry_run: bool = False, log=None) -> WebDeployResult:
    """Open the bundle's page in the phone's browser over adb and wait for what it measured.

    Args:
        b: a verified Bundle for ``dev``.
        dev: the device profile (an adb one).
        tr: its AdbTransport.
        port: the port served here and forwarded from the phone.
        artifact: serve this artifact only (default: every ONNX and TFLite one).
        timeout: seconds to wait for the page's report.
        demo_seconds: after the report, keep serving the page's demo this long (None: until Ctrl-C; 0: open
            the page without the demo and return at the report).
        dry_run: return the adb steps without serving or running anything.
        log: called with one line per step (default: stderr).

    Raises:
        ConfigError: the profile is not reached over adb; the port is taken (nothing was run on the phone).
        DeployError: adb is missing or a step fails on the phone; no report within ``timeout``.
    """
    from edgekit.deploy import _run
    from edgekit.device.web.server import WebDemo

    if not isinstance(tr, AdbTransport):
        raise ConfigError(f"{dev.name}: --web opens the page on an Android phone over adb; this profile is reached "
                          f"over {tr.kind} (run `edgekit demo web BUNDLE` and open its address there)")
    demo = demo_seconds is None or demo_seconds > 0
    steps, undo = web_steps(tr, port, demo=demo)
    url = f"http://localhost:{port}/"
    if dry_run:
        return WebDeployResult(dev.name, tr.describe(), url, (*steps, undo), True)
    say = log or (lambda msg: print(f"[deploy] {msg}", file=sys.stderr, flush=True))
    server = WebDemo(b, host="127.0.0.1", port=port, artifact=artifact)  # listening before the phone asks
    server.start()
    forwarded = False
    try:
        for step in steps:
            say(f"{step.name}: {step.render()}")
            _run(step, tr)
            forwarded = forwarded or step is steps[0]
        say(f"waiting for the page's report (up to {timeout:.0f} s): unlock the phone if its screen is off")
        if not server.received.wait(timeout):
            raise DeployError(f"{tr.describe()}: no report from the phone's browser within {timeout:.0f} s (is the "
                              f"page open at {url}? a browser other than the default may need it typed in)")
        result = WebDeployResult(dev.name, tr.describe(), url, (*steps, undo), False, server.report, server.report_path)
        if demo:
            say("the demo runs on the phone" + (f" for {demo_seconds:.0f} s" if demo_seconds else "; Ctrl-C stops"))
            try:
                time.sleep(demo_seconds if demo_seconds else 10 ** 9)
            except KeyboardInterrupt:
                pass
        return result
    finally:
        server.stop()
        if forwarded:
            try:
                subprocess.run(list(undo.argv), capture_output=True, timeout=undo.timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
