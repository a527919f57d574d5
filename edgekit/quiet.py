"""Third-party noise kept off the terminal: a command prints edgekit's lines and the ones that matter.

TensorFlow Lite, absl, oneDNN, torchao and torch write banners and notices straight to file descriptor 2 from
native code, where Python's warning filters and logging levels never see them ("Created TensorFlow Lite
XNNPACK delegate", "All log messages before absl::InitializeLog()", torchao's "Failed to load ... .so" for
GPU kernels a CPU never uses). :func:`filter_stderr` puts a pipe in front of descriptor 2 for the whole
process (and the children it starts, which inherit it) and forwards every line except those that match
:data:`NOISE`. Errors are never noise: glog's E/F lines, Python warnings and tracebacks pass. ``edgekit
--verbose`` (or ``EDGEKIT_VERBOSE=1``) turns the filter off.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# Known informational lines of the libraries edgekit drives; each seen in edgekit's own runs.
NOISE = tuple(re.compile(p) for p in (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
    r"^INFO: Initialized TensorFlow Lite runtime\.",
    r"^[IW]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] ",  # glog/absl INFO and WARNING lines (port.cc, flatbuffer_export.cc)
    r"^Failed to load .*torchao.*\.so: Could not load this library",
))


def is_noise(line: str) -> bool:
    """True for a line one of the known libraries prints for information only."""
    return any(p.search(line) for p in NOISE)


_state: dict = {}


def filter_stderr() -> None:
    """Filter descriptor 2 from now until the process exits (idempotent; a no-op where there is no fd 2)."""
    if _state or os.environ.get("EDGEKIT_VERBOSE") == "1":
        return
    try:
        real = os.dup(2)
    except OSError:
        return
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(ln + b"\n" for ln in lines if not is_noise(ln.decode("utf-8", "replace")))
                if out:
                    os.write(real, out)
            if pending and not is_noise(pending.decode("utf-8", "replace")):
                os.write(real, pending)

    thread = threading.Thread(target=forward, name="edgekit-stderr", daemon=True)
    thread.start()
    _state.update(real=real, thread=thread)
    atexit.register(restore)


def restore() -> None:
    """Give descriptor 2 back and let the last lines through (at exit; safe to call twice)."""
    if not _state or "restored" in _state:
        return
    _state["restored"] = True
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(_state["real"], 2)  # closes the pipe's last write end in this process: the reader sees the end
    _state["thread"].join(timeout=5)
