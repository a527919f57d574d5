"""Run work that can crash in native code or run unbounded in a child process, with a time limit.

Structured pruning and the model converters run third-party native code on graphs nobody tested them
on: seen here, glibc aborts (``corrupted double-linked list``), a SIGSEGV, and a pruning loop that never
ended. In the command's own process any of these takes the whole command down with no report, or
hangs it. :func:`call` runs a job function in a fresh Python process instead:

- the job gets JSON-able keyword arguments (paths, numbers) and returns a JSON-able result; big data
  travels in files the caller names;
- a crash (any signal), a time limit reached, or an exception in the job comes back as one
  :class:`JobFailed` whose message says which, with the native library's last message when it left one;
- the child's own output goes to a log file; lines edgekit itself prints (``[edgekit ...]``, progress)
  are passed on to the caller's stderr;
- the child dies with its parent (``PR_SET_PDEATHSIG``), so ``kill -9`` of the command leaves no orphan
  working on, and a time limit kills the child's whole process group.

Host side; the job function is imported only in the child.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError

_PASS_ON = ("[edgekit", "[distill", "[train", "[prune")  # child lines that are edgekit's own progress


class JobFailed(EdgekitError):
    """A child job crashed, ran past its time limit or raised.

    Attributes:
        kind: "crashed", "timed out" or "failed".
        detail: the signal and native message, the time limit, or the exception's first line.
        error_type: for "failed", the exception's class name (e.g. "ConfigError").
    """

    exit_code = 1

    def __init__(self, what: str, kind: str, detail: str, error_type: str = ""):
        super().__init__(f"{what} {kind}: {detail}" if kind != "failed" else f"{what} failed: {detail}")
        self.what, self.kind, self.detail, self.error_type = what, kind, detail, error_type


@dataclass(frozen=True)
class Outcome:
    """What a finished child returned, and how long it took."""

    result: Any
    seconds: float


def call(target: str, kwargs: dict, *, what: str, timeout: float, log: Path | None = None,
         env: dict | None = None, echo: bool = True) -> Outcome:
    """Run ``target`` (``"package.module:function"``) with ``kwargs`` in a new Python process.

    Args:
        target: the job function; it takes keyword arguments and returns something ``json.dumps`` takes.
        kwargs: its arguments, JSON-able.
        what: names the work in messages ("pruning", "TFLite conversion").
        timeout: seconds before the child and its own children are killed.
        log: a file that receives everything the child prints (appended); None: a temporary file.
        env: extra environment variables for the child.
        echo: pass the child's edgekit lines on to this process's stderr.

    Returns:
        An Outcome with the job's return value.

    Raises:
        JobFailed: the child crashed (signal or abort), ran past ``timeout``, or the job raised.

    Example:
        >>> call("edgekit.compress.prune_job:run", {"job": "work/prune.json"}, what="pruning", timeout=300)
    """
    with tempfile.TemporaryDirectory(prefix="edgekit-job-") as tmp:
        args_file, result_file = Path(tmp) / "args.json", Path(tmp) / "result.json"
        args_file.write_text(json.dumps(kwargs))
        log_path = Path(log) if log is not None else Path(tmp) / "child.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        t0 = time.perf_counter()
        with open(log_path, "a", encoding="utf-8", errors="replace") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "edgekit.isolate", target, str(args_file), str(result_file)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    env=child_env, start_new_session=True, text=True, errors="replace", bufsize=1)
            tail: list[str] = []
            reader = threading.Thread(target=_pump, args=(proc.stdout, sink, tail, echo), daemon=True)
            reader.start()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                reader.join(5)
                raise JobFailed(what, "timed out", f"stopped after {timeout:.0f} s (time limit)") from None
            except BaseException:  # Ctrl-C or the caller's own error: never leave the child running
                _kill_group(proc)
                raise
            reader.join(5)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not result_file.is_file():
            raise JobFailed(what, "crashed", _death(proc.returncode, tail))
        payload = json.loads(result_file.read_text())
    if "error" in payload:
        raise JobFailed(what, "failed", payload["error"], payload.get("type", ""))
    return Outcome(payload["result"], seconds)


def _pump(stream, sink, tail: list[str], echo: bool) -> None:
    for line in stream:
        sink.write(line)
        sink.flush()
        tail.append(line.rstrip())
        del tail[:-40]
        if echo and line.lstrip().startswith(_PASS_ON):
            sys.stderr.write(line)
            sys.stderr.flush()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


# What native libraries print just before they die; the first such line in the tail is quoted.
_NATIVE_HINTS = ("corrupted", "free():", "malloc", "double free", "Segmentation", "Aborted", "terminate called",
                 "std::", "Fatal Python error", "Assertion", "Illegal instruction", "Killed", "out of memory")


def _death(code: int | None, tail: list[str]) -> str:
    """One line saying how the child ended: the signal's name, and the native message it left, if any."""
    if code is not None and code < 0:
        try:
            how = f"{signal.Signals(-code).name} in native code"
        except ValueError:
            how = f"signal {-code}"
    else:
        how = f"exit code {code} without a result"
    hint = next((ln.strip() for ln in reversed(tail) if any(h in ln for h in _NATIVE_HINTS)), "")
    if code == -signal.SIGKILL and not hint:
        hint = "killed from outside (the system may have run out of memory)"
    return how + (f" ({hint[:200]})" if hint else "")


def _child(target: str, args_file: str, result_file: str) -> int:
    """The child's side: die with the parent, run the job, write its result (or its error) atomically."""
    _die_with_parent()
    from edgekit.log import setup

    setup()
    module, _, name = target.partition(":")
    kwargs = json.loads(Path(args_file).read_text())
    try:
        import importlib

        result = {"result": getattr(importlib.import_module(module), name)(**kwargs)}
    except Exception as exc:  # the job's failure is the caller's to report, in one line
        from edgekit.errors import describe

        detail = str(exc).strip() if isinstance(exc, EdgekitError) else describe(exc)
        result = {"error": detail.splitlines()[0][:400] if detail else type(exc).__name__, "type": type(exc).__name__}
    tmp = Path(result_file + ".partial")
    tmp.write_text(json.dumps(result, default=str))
    os.replace(tmp, result_file)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown: some native libraries crash in their exit handlers


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:4]))
