"""Files appear complete or not at all."""

from __future__ import annotations

import os

import pytest

from edgekit import rundir


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "model.bin"
    with pytest.raises(RuntimeError):
        with rundir.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_and_has_normal_permissions(tmp_path):
    target = tmp_path / "a" / "r.json"
    rundir.write_json(target, {"x": 1})
    rundir.write_json(target, {"x": 2})
    assert target.read_text().strip().endswith("}") and '"x": 2' in target.read_text()
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_stage_markers_and_unique_run_folders(tmp_path):
    a, b = rundir.new_run_dir(tmp_path, "r"), rundir.new_run_dir(tmp_path, "r")
    assert a != b and a.parent == b.parent == tmp_path / "r"
    assert not rundir.stage_done(a, "train") and rundir.stage_summary(a, "train") is None
    rundir.mark_stage(a, "train", {})
    assert rundir.stage_done(a, "train")  # an empty summary still marks the stage finished
    rundir.mark_stage(a, "train", {"val_accuracy": 0.9})
    assert rundir.stage_summary(a, "train") == {"val_accuracy": 0.9}
