"""kill -9 anywhere, then the same command again: it completes, nothing that looks finished is half written, and
the artifacts verify like those of a run nobody interrupted.

The kills land at seeded moments spread over every stage: each is a line the command prints when it reaches a
stage (an epoch, pruning, distillation, an export, a verification, a benchmark) plus a seeded delay of up to a
second, so they fall inside the work that follows, not only at its boundaries.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgekit import rundir

from .conftest import RECIPES, ROOT, edgekit

pytestmark = pytest.mark.slow
SEED = 20261203
# The digits_run fixture's settings, so that the uninterrupted run to compare with is the session's own.
RUN_SETTINGS = ["--set", "export.targets=[onnx:fp32,onnx:int8,tflite:int8]", "--set", "bench.threads=[1]",
                "--set", "bench.iterations=30"]


def killed_at(cmd: list[str], triggers: list[str], delay: float, timeout: float = 900) -> tuple[int | None, str]:
    """Run ``cmd``; SIGKILL it ``delay`` seconds after its first stderr line matching one of ``triggers``.

    Returns the index of the trigger that fired (None: the command finished first) and what it printed.
    """
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines, patterns = [], [re.compile(t) for t in triggers]
    try:
        for line in proc.stderr:
            lines.append(line)
            hit = next((i for i, p in enumerate(patterns) if p.search(line)), None)
            if hit is not None:
                time.sleep(delay)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return (hit if proc.returncode == -signal.SIGKILL else None), "".join(lines)
        proc.wait()
        return None, "".join(lines)
    finally:
        watchdog.cancel()


def no_half_written_files(folder: Path) -> None:
    partial = [p for p in folder.rglob("*") if ".partial" in p.name]
    assert not partial, f"left behind: {partial}"
    for p in folder.rglob("*.json"):
        json.loads(p.read_text())  # every JSON file whole


def artifacts_match_their_results(folder: Path, res: dict) -> None:
    from edgekit.device.runtime import open_session

    for e in res["artifacts"]:
        path = folder / "artifacts" / Path(e["path"]).name
        if not path.is_file():
            path = folder / Path(e["path"]).name
        assert rundir.sha256(path) == e["sha256"], f"{path.name} is not the file its results describe"
        with open_session(path) as s:
            assert s.input_shape  # loads


def accuracies(res: dict) -> dict[str, float]:
    return {e["name"]: round(e["accuracy"], 4) for e in res["artifacts"] if e.get("accuracy") is not None}


def test_edgekit_run_killed_in_every_stage_completes_like_an_uninterrupted_run(digits_run, tmp_path):
    rng = random.Random(SEED)
    # train, prune, distill, export (the TFLite conversion after the ONNX int8), verify, bench, report
    triggers = [r"\[train\] epoch 2/", r"pruned:", r"\[distill\] epoch 2/", r"exported onnx:int8",
                r"verified onnx_int8", r"benched onnx_fp32", r"benched tflite_int8"]
    out = tmp_path / "runs"
    base = [sys.executable, "-m", "edgekit", "run", str(RECIPES / "digits_resnet8.yaml"), "--out", str(out),
            *RUN_SETTINGS]
    kills, run = [], None
    while triggers:  # each attempt dies at the first stage still ahead of it; stages it ran past are done
        cmd = base + (["--resume", str(run)] if run else [])
        hit, err = killed_at(cmd, triggers, rng.uniform(0.0, 0.5))
        if run is None:
            runs = list((out / "digits_resnet8").iterdir())
            assert len(runs) == 1, runs
            run = runs[0]
        assert "Traceback" not in err, err[-2000:]
        if hit is None:
            break
        kills.append(triggers[hit])
        triggers = triggers[hit + 1:]
    assert len(kills) >= 5, f"most kills must land before the run ends: {kills}"
    final = edgekit("run", str(RECIPES / "digits_resnet8.yaml"), "--out", str(out), *RUN_SETTINGS,
                    "--resume", str(run))
    assert final.returncode == 0, final.stderr[-3000:]

    no_half_written_files(run)
    res = json.loads((run / "results.json").read_text())
    artifacts_match_their_results(run, res)
    ref = json.loads((digits_run / "results.json").read_text())
    assert {e["name"] for e in res["artifacts"]} == {e["name"] for e in ref["artifacts"]}
    assert all(e["passed"] for e in res["artifacts"]), [e["verdict"] for e in res["artifacts"]]
    mine, theirs = accuracies(res), accuracies(ref)
    for name in theirs:
        assert abs(mine[name] - theirs[name]) <= 0.01, (name, mine[name], theirs[name])
    # and independently of results.json: the artifacts measured again on the held-out split
    names = [Path(e["path"]).name for e in res["artifacts"] if e.get("role", "compressed") == "compressed"]
    proc = edgekit("verify", *[str(run / "artifacts" / n) for n in names], "--recipe",
                   str(RECIPES / "digits_resnet8.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for e in res["artifacts"]:
        if e.get("role", "compressed") == "compressed":
            assert f"{e['accuracy']:.4f}" in proc.stdout, (e["name"], proc.stdout)


def test_edgekit_compress_killed_in_every_stage_completes_like_an_uninterrupted_run(digits_run, tmp_path):
    rng = random.Random(SEED + 1)
    model = digits_run / "artifacts" / "model_fp32.onnx"

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "edgekit", "compress", str(model), "--calib", "dataset:digits", "--eval",
                "dataset:digits", "--format", "onnx,tflite", "--precision", "fp32,int8", "--no-inc", "--out", str(out)]

    straight = edgekit(*cmd(tmp_path / "straight")[3:])
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "killed"
    # the ONNX int8 search, the TFLite conversion, the TFLite int8 search, verify, bench, report
    triggers = [r"ptq_u8s8_full_range", r"wrote model_int8\.onnx", r"TFLite int8 search", r"verified onnx_int8",
                r"benched onnx_int8", r"benched tflite_int8"]
    kills = []
    while triggers:
        hit, err = killed_at(cmd(out), triggers, rng.uniform(0.0, 1.0))
        assert "Traceback" not in err, err[-2000:]
        if hit is None:
            break
        kills.append(triggers[hit])
        triggers = triggers[hit + 1:]
        time.sleep(0.5)
        left = subprocess.run(["pgrep", "-f", f"edgekit.isolate.*{out.name}"], capture_output=True, text=True)
        assert not left.stdout.split(), f"a child process outlived the killed command ({kills[-1]})"
    assert len(kills) >= 4, f"most kills must land before the command ends: {kills}"
    final = edgekit(*cmd(out)[3:])
    assert final.returncode == 0, final.stderr[-3000:]
    assert "resuming" in final.stderr

    assert not (out / ".work").exists()
    no_half_written_files(out)
    res, ref = (json.loads((d / "results.json").read_text()) for d in (out, tmp_path / "straight"))
    artifacts_match_their_results(out, res)
    assert res["resumed"] and {e["name"] for e in res["artifacts"]} == {e["name"] for e in ref["artifacts"]}
    assert all(e["passed"] for e in res["artifacts"])
    mine, theirs = accuracies(res), accuracies(ref)
    for name in theirs:
        assert abs(mine[name] - theirs[name]) <= 0.01, (name, mine[name], theirs[name])
