"""An int8 search its parent stops (time limit, native crash) hands over every candidate it had measured."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from edgekit import isolate
from edgekit.compress.onnx_files import ship_stopped
from edgekit.compress.search import JOURNAL, read_journal

ENV = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parent), *sys.path])}


def _stopped_search(work: Path) -> isolate.JobFailed:
    work.mkdir()
    with pytest.raises(isolate.JobFailed) as err:
        isolate.call("isolate_jobs:measure_then_hang", {"work": str(work)}, what="ONNX int8 search", timeout=8,
                     env=ENV)
    return err.value


def test_a_search_killed_at_its_time_limit_ships_the_candidate_it_had_measured_within_budget(tmp_path):
    stop = _stopped_search(tmp_path / "candidates")
    assert stop.kind == "timed out"
    out = tmp_path / "out"
    out.mkdir()
    rec = ship_stopped(tmp_path / "candidates", out / "model_int8.onnx", out, 0.01, "onnx", f"{stop.kind} (test)")
    assert rec["winner"] == "within_budget"
    assert (out / "model_int8.onnx").read_bytes() == b"int8 model within_budget"
    assert [c["name"] for c in rec["candidates"]] == ["within_budget", "over_budget"]
    assert "timed out" in rec["stages"]["int8_search"]["note"] and "2 candidate(s)" in rec["stages"]["int8_search"]["note"]


def test_a_line_torn_by_the_kill_and_a_candidate_whose_file_is_gone_are_left_out(tmp_path):
    _stopped_search(tmp_path / "candidates")
    journal = tmp_path / "candidates" / JOURNAL
    with open(journal, "a") as f:
        f.write('{"name": "half_writ')
    (tmp_path / "candidates" / "over_budget.onnx").unlink()
    assert [c["name"] for c in read_journal(journal)] == ["within_budget"]


def test_a_search_stopped_before_it_measured_anything_ships_nothing(tmp_path):
    (tmp_path / "candidates").mkdir()
    (tmp_path / "candidates" / JOURNAL).write_text("")
    assert ship_stopped(tmp_path / "candidates", tmp_path / "m.onnx", tmp_path, 0.01, "onnx", "timed out") is None
    assert ship_stopped(tmp_path / "nowhere", tmp_path / "m.onnx", tmp_path, 0.01, "onnx", "timed out") is None
