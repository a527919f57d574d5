"""Bad input, whatever the command: exit 2, one line naming the file and the problem, no traceback, nothing left
behind that could block a retry. The CLI's last line of defence holds for what no check foresaw; --debug shows
the traceback."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit import cli

from .conftest import edgekit


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """A working folder of bad inputs, as a user's would look."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "syntax.py").write_text("def build(:\n")
    (tmp_path / "raises.py").write_text("def build():\n    raise RuntimeError('boom')\n")
    (tmp_path / "imports.py").write_text("import no_such_module_here\ndef build():\n    pass\n")
    (tmp_path / "not_a_model.py").write_text("def build():\n    return 42\n")
    (tmp_path / "garbage.pub").write_text("garbage\n")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "tab.yaml").write_text("data:\n\tname: digits\n")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07" + bytes(40))
    (tmp_path / "model.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(30))
    (tmp_path / "emptydir").mkdir()
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 8, 8), np.float32))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return tmp_path


BAD = [
    ["smoke", "empty.txt"], ["smoke", "emptydir"], ["smoke", "emptydir", "--threads", "0"],
    ["bench", "nothing.onnx"], ["bench", "empty.txt"], ["bench", "model.onnx"], ["bench", "model.tflite"],
    ["bench", "model.onnx", "--iterations", "0"], ["bench", "model.onnx", "--threads", "0,1"],
    ["report", "empty.txt"], ["report", "emptydir"],
    ["verify", "nothing.onnx", "--data", "x.npy"], ["verify", "model.onnx", "--data", "objects.npy"],
    ["compress", "syntax.py:build", "--calib", "x.npy", "--out", "o"],
    ["compress", "raises.py:build", "--calib", "x.npy", "--out", "o"],
    ["compress", "imports.py:build", "--calib", "x.npy", "--out", "o"],
    ["compress", "not_a_model.py:build", "--calib", "x.npy", "--out", "o"],
    ["compress", "missing.py:build", "--calib", "x.npy", "--out", "o"],
    ["compress", "model.onnx", "--calib", "x.npy", "--out", "o"],
    ["compress", "model.onnx", "--calib", "emptydir", "--out", "o"],
    ["compress", "model.onnx", "--calib", "bad.wav", "--out", "o"],
    ["compress", "model.onnx", "--calib", "objects.npy", "--out", "o"],
    ["compress", "model.onnx", "--calib", "x.npy", "--out", "o", "--budget", "7"],
    ["compress", "model.onnx", "--calib", "x.npy", "--out", "o", "--prune", "3"],
    ["compress", "model.onnx", "--calib", "x.npy", "--out", "o", "--calib-samples", "0"],
    ["compress", "model.onnx", "--calib", "x.npy", "--out", "o", "--input-shape", "3,0,8"],
    ["compress", "model.onnx", "--calib", "x.npy", "--out", "empty.txt"],
    ["keys", "trust", "garbage.pub", "--dir", "t"], ["keys", "show", "garbage.pub"], ["keys", "show", "nokey"],
    ["keys", "new", "../x"],
    ["bundle", "empty.txt", "--device", "rpi5", "--out", "b"], ["bundle", "emptydir", "--device", "nodevice", "--out", "b"],
    ["deploy", "emptydir", "--dry-run"], ["deploy", "emptydir", "--host", "-oProxyCommand=x"],
    ["devices", "show", "nope"], ["devices", "show", "list.yaml"], ["devices", "show", "empty.txt"],
    ["devices", "check", "rpi5", "--host", "a b"],
    ["demo", "mic", "emptydir", "--wav", "bad.wav"], ["demo", "camera", "emptydir"],
    ["run", "empty.txt"], ["run", "nope"], ["run", "x.npy"], ["run", "list.yaml"], ["run", "tab.yaml"],
    ["run", "digits_resnet8", "--set", "train.lr=fast"], ["run", "digits_resnet8", "--set", "nokey"],
    ["run", "digits_resnet8", "--resume", "empty.txt"], ["train", "digits_resnet8", "--resume", "emptydir/x"],
    ["recipes", "nope"], ["schema", "recipe", "--out", "emptydir"], ["schema", "nothing"], ["nocommand"],
]


@pytest.mark.parametrize("argv", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_input_is_one_line_and_exit_2_with_nothing_left_behind(inputs, capsys, argv):
    before = sorted(p.relative_to(inputs).as_posix() for p in inputs.rglob("*"))
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "(unexpected;" not in err, err
    assert lines[0].startswith(("edgekit: error: ", "edgekit ")), err
    assert sorted(p.relative_to(inputs).as_posix() for p in inputs.rglob("*")) == before


def test_what_no_check_foresaw_is_still_one_line_and_debug_shows_the_traceback(capsys, monkeypatch, tmp_path):
    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "cmd_info", broken)
    assert cli.main(["info"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["edgekit: error: edgekit info: KeyError: 'a bug' (unexpected; --debug shows "
                                        "the traceback)"]
    with pytest.raises(KeyError):
        cli.main(["--debug", "info"])
    def disk_error(args):
        raise OSError(28, "No space left on device", "/data/out/model.onnx")

    monkeypatch.setattr(cli, "cmd_info", disk_error)
    assert cli.main(["info"]) == 2
    assert capsys.readouterr().err.startswith("edgekit: error: /data/out/model.onnx: No space left on device")


def test_on_the_real_command_line_too(tmp_path):
    (tmp_path / "raises.py").write_text("def build():\n    raise RuntimeError('boom')\n")
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 8, 8), np.float32))
    proc = edgekit("compress", f"{tmp_path / 'raises.py'}:build", "--calib", str(tmp_path / "x.npy"), "--out",
                   str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"edgekit: error: {tmp_path / 'raises.py'}:build: the factory raised "
                                        "RuntimeError: boom"]
    assert not (tmp_path / "o").exists()
