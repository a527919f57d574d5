"""Work that can crash in native code or run forever runs in a child process: the caller gets one failure."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from edgekit import isolate

sys.path.insert(0, str(Path(__file__).resolve().parent))
ENV = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), *sys.path])}


def call(name: str, timeout: float = 30, **kwargs):
    return isolate.call(f"isolate_jobs:{name}", kwargs, what="the job", timeout=timeout, env=ENV)


def test_a_job_returns_its_result_and_only_edgekit_lines_reach_the_caller(capfd, tmp_path):
    out = isolate.call("isolate_jobs:double", {"n": 21}, what="the job", timeout=30, env=ENV, log=tmp_path / "j.log")
    assert out.result == {"n": 42}
    err = capfd.readouterr().err
    assert "[edgekit test] working" in err and "third-party noise" not in err
    assert "third-party noise" in (tmp_path / "j.log").read_text()  # kept for whoever debugs it


@pytest.mark.parametrize("job, signal_name", [("segfault", "SIGSEGV"), ("glibc_abort", "SIGABRT")])
def test_a_native_crash_is_one_failure_naming_the_signal_and_the_native_message(job, signal_name):
    with pytest.raises(isolate.JobFailed) as err:
        call(job)
    assert err.value.kind == "crashed" and signal_name in str(err.value)
    if job == "glibc_abort":
        assert "corrupted double-linked list" in str(err.value)


def test_a_job_past_its_time_limit_is_killed_with_its_own_children(tmp_path):
    marker = tmp_path / "child.pid"
    t0 = time.monotonic()
    with pytest.raises(isolate.JobFailed) as err:
        call("spawn_and_hang", timeout=3, marker=str(marker))
    assert err.value.kind == "timed out" and time.monotonic() - t0 < 20
    grandchild = int(marker.read_text())
    for _ in range(50):  # the whole process group went
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {grandchild} started by the job survived the time limit")


def test_an_exception_in_the_job_comes_back_as_its_first_line():
    with pytest.raises(isolate.JobFailed) as err:
        call("bad_input")
    assert err.value.kind == "failed" and err.value.error_type == "ConfigError"
    assert "train.lr = 'fast'" in str(err.value) and "nobody needs" not in str(err.value)
