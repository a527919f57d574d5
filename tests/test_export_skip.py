"""A target whose converter fails is recorded as skipped, with the reason, and the other targets go on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgekit import pipeline
from edgekit.errors import ConfigError
from edgekit.recipe import load
from tests.conftest import RECIPES


def fake_exporters(monkeypatch, fail: dict[str, Exception]):
    import edgekit.export as export

    def get(target, where=None):
        def exporter(model, example, path, *, metadata, calib):
            path.parent.mkdir(parents=True, exist_ok=True)  # as the real exporters do
            if target in fail:
                path.write_bytes(b"half-written")  # a converter may leave a partial file behind
                raise fail[target]
            path.write_bytes(b"model")
        return exporter

    monkeypatch.setattr(export.EXPORTERS, "get", get)


def splits():
    return SimpleNamespace(labels=("a", "b"), input_shape=[1, 1, 49, 10], preprocess={"kind": "mfcc"})


def test_a_failing_converter_is_recorded_and_the_rest_exported(tmp_path, monkeypatch):
    recipe = load(RECIPES / "kws_gru.yaml", ["export.targets=[onnx:fp32,tflite:int8]", "export.baseline=false"])
    fake_exporters(monkeypatch, {"tflite:int8": IndexError("list index out of range")})
    skipped: list[dict] = []
    arts = pipeline.export_all(recipe, tmp_path, None, None, splits(), np.zeros((2, 1, 49, 10), np.float32),
                               skipped=skipped)
    assert [a.name for a in arts] == ["onnx_fp32"]
    assert skipped == [{"name": "tflite_int8", "target": "tflite:int8", "skipped": skipped[0]["skipped"]}]
    assert skipped[0]["skipped"].startswith("IndexError: list index out of range (in ")
    assert not (tmp_path / "artifacts" / "model_int8.tflite").exists()  # no half-written file is left


def test_bad_configuration_still_fails_and_without_a_list_errors_propagate(tmp_path, monkeypatch):
    recipe = load(RECIPES / "kws_gru.yaml", ["export.targets=[tflite:int8]", "export.baseline=false"])
    fake_exporters(monkeypatch, {"tflite:int8": ConfigError("calibration samples needed")})
    with pytest.raises(ConfigError):
        pipeline.export_all(recipe, tmp_path, None, None, splits(), np.zeros((1, 1, 49, 10), np.float32), skipped=[])
    fake_exporters(monkeypatch, {"tflite:int8": RuntimeError("boom")})
    with pytest.raises(RuntimeError):
        pipeline.export_all(recipe, tmp_path, None, None, splits(), np.zeros((1, 1, 49, 10), np.float32))


def test_the_report_lists_what_was_not_exported():
    from edgekit.report import skipped_section

    lines = skipped_section({"skipped": [{"name": "tflite_int8", "target": "tflite:int8", "skipped": "why"}]})
    assert "## Not exported" in lines and "- tflite:int8 (tflite_int8): why" in lines
    assert skipped_section({}) == []
