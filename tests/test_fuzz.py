"""Every reader of user files, fuzzed: whatever the bytes, edgekit answers with its own one-line error, never a
traceback, never a hang, and leaves nothing behind.

Property-based (hypothesis) with a fixed seed and a bounded number of examples per reader, so `make test`
stays quick and gives the same inputs every run; `make fuzz` runs the same properties with many more
examples (EDGEKIT_FUZZ_EXAMPLES, default there 2000) and a fresh seed.

Each target gets three kinds of input: random bytes or text; a real, valid file with a few bytes flipped,
cut or repeated (what a bad disk or a half copy gives); and the valid structure with one value replaced
by something of the wrong type or range (what a person editing the file gives).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgekit import cli  # noqa: E402
from edgekit.errors import EdgekitError  # noqa: E402

from .conftest import RECIPES, ROOT  # noqa: E402

EXAMPLES = int(os.environ.get("EDGEKIT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("EDGEKIT_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck), database=None)
MAX_LINES = 6


# ---- the properties -------------------------------------------------------------------------------------------

def handled(fn, *args, **kwargs):
    """``fn`` returns, or raises edgekit's own error with a short message; anything else fails the property."""
    try:
        return fn(*args, **kwargs)
    except EdgekitError as exc:
        assert len(str(exc).splitlines()) <= MAX_LINES, str(exc)
        assert str(exc).strip(), f"{type(exc).__name__} with an empty message"
        return exc


def cli_handled(argv: list[str], capsys) -> tuple[int, str, str]:
    """The command line on ``argv``: exit 0, 1 or 2, at most 6 lines, no traceback, no 'unexpected' error."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err and "(unexpected;" not in err, err
    if code == 2:
        assert len(err.strip().splitlines()) <= MAX_LINES, err
    return code, out, err


def listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def mutate(data: bytes, edits) -> bytes:
    """Apply (kind, position fraction, value) edits: flip a byte, cut the tail, repeat a slice, insert bytes."""
    b = bytearray(data)
    for kind, frac, value in edits:
        if not b:
            break
        i = min(int(frac * len(b)), len(b) - 1)
        if kind == "flip":
            b[i] ^= (value % 255) + 1
        elif kind == "cut":
            del b[i:]
        elif kind == "repeat":
            b[i:i] = b[i:i + 1 + value % 64]
        else:
            b[i:i] = bytes([value % 256]) * (1 + value % 16)
    return bytes(b)


edits = st.lists(st.tuples(st.sampled_from(["flip", "cut", "repeat", "insert"]), st.floats(0, 1),
                           st.integers(0, 10_000)), min_size=1, max_size=6)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=30), st.just("1e-3"), st.just(""), st.just("../../etc/passwd"))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=12)


def paths_in(tree, prefix=()):
    """Every key path of a nested dict/list."""
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from paths_in(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from paths_in(v, (*prefix, i))


def replaced(tree, path, value):
    if not path:
        return value
    tree = json.loads(json.dumps(tree))
    node = tree
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return tree


@st.composite
def edited(draw, tree):
    """``tree`` with one value somewhere replaced by an arbitrary one (or a key deleted)."""
    paths = list(paths_in(tree))
    path = draw(st.sampled_from(paths))
    if path and draw(st.booleans()):
        node = json.loads(json.dumps(tree))
        parent = node
        for k in path[:-1]:
            parent = parent[k]
        if isinstance(parent, dict):
            del parent[path[-1]]
            return node
    return replaced(tree, path, draw(json_values))


# ---- recipes and --set ----------------------------------------------------------------------------------------

RECIPE_TEXT = (RECIPES / "digits_resnet8.yaml").read_text()
RECIPE_TREE = yaml.safe_load(RECIPE_TEXT)


def _load_recipe(tmp: Path, text: str | bytes, sets=()):
    from edgekit import recipe

    path = tmp / "r.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    before = listing(tmp)
    handled(recipe.load, path, list(sets))
    assert listing(tmp) == before


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400)))
def test_recipe_random_bytes(tmp_path_factory, data):
    _load_recipe(tmp_path_factory.mktemp("r"), data)


@FUZZ
@given(e=edits)
def test_recipe_damaged(tmp_path_factory, e):
    _load_recipe(tmp_path_factory.mktemp("r"), mutate(RECIPE_TEXT.encode(), e))


@FUZZ
@given(tree=edited(RECIPE_TREE))
def test_recipe_edited(tmp_path_factory, tree):
    _load_recipe(tmp_path_factory.mktemp("r"), yaml.safe_dump(tree, allow_unicode=True))


@FUZZ
@given(sets=st.lists(st.one_of(st.text(max_size=40),
                               st.builds(lambda k, v: f"{k}={v}",
                                         st.sampled_from(["train.epochs", "train.lr", "prune.macs_ratio", "data",
                                                          "export.targets", "train", "x.y.z", "", "train.epochs.x"]),
                                         st.text(max_size=20))), min_size=1, max_size=3))
def test_set_values(tmp_path_factory, sets):
    _load_recipe(tmp_path_factory.mktemp("r"), RECIPE_TEXT, sets)


# ---- device profiles -------------------------------------------------------------------------------------------

DEVICE_TEXT = (ROOT / "devices" / "rpi5.yaml").read_text()


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), st.builds(lambda e: mutate(DEVICE_TEXT.encode(), e), edits),
                      st.builds(lambda t: yaml.safe_dump(t).encode(), edited(yaml.safe_load(DEVICE_TEXT)))))
def test_device_profiles(tmp_path_factory, capsys, data):
    tmp = tmp_path_factory.mktemp("d")
    (tmp / "dev.yaml").write_bytes(data)
    before = listing(tmp)
    cli_handled(["devices", "show", str(tmp / "dev.yaml")], capsys)
    assert listing(tmp) == before


# ---- WAV files ------------------------------------------------------------------------------------------------

def _wav_bytes(fmt=1, channels=1, rate=16000, bits=16, frames=200, extensible=False) -> bytes:
    block = channels * max(bits // 8, 1)
    data = bytes(min(frames * block, 20_000))
    fmt_chunk = struct.pack("<HHIIHH", 0xFFFE if extensible else fmt, channels, rate, (rate * block) % 2**32,
                            block % 65536, bits)
    if extensible:
        fmt_chunk += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", fmt) + bytes(14)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


wav_headers = st.builds(_wav_bytes, fmt=st.sampled_from([0, 1, 2, 3, 6, 0xFFFE, 65535]),
                        channels=st.integers(0, 70000 - 1).map(lambda c: c % 65536),
                        rate=st.one_of(st.sampled_from([0, 1, 8000, 16000, 44100, 2**31, 2**32 - 1]),
                                       st.integers(0, 2**32 - 1)),
                        bits=st.sampled_from([0, 1, 7, 8, 12, 16, 24, 32, 64, 65535]), frames=st.integers(0, 300),
                        extensible=st.booleans())


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), wav_headers,
                      st.builds(mutate, wav_headers, edits)))
def test_wav_files(tmp_path_factory, data):
    from edgekit.device.audio import parse_wav, read_wav

    tmp = tmp_path_factory.mktemp("w")
    (tmp / "a.wav").write_bytes(data)
    out = handled(read_wav, tmp / "a.wav")
    if isinstance(out, np.ndarray):
        assert out.dtype == np.float32 and out.ndim == 1 and np.isfinite(out).all()
    handled(parse_wav, data, "stdin")


# ---- .npy / .npz -----------------------------------------------------------------------------------------------

def _npy(arr) -> bytes:
    import io

    f = io.BytesIO()
    np.save(f, arr, allow_pickle=True)
    return f.getvalue()


def _npz(**arrays) -> bytes:
    import io

    f = io.BytesIO()
    np.savez(f, **arrays)
    return f.getvalue()


arrays = st.one_of(
    st.builds(lambda s: np.zeros(s, np.float32), st.lists(st.integers(0, 5), max_size=5).map(tuple)),
    st.just(np.array([{"a": 1}], dtype=object)), st.just(np.array(["a", "b"])), st.just(np.array([np.nan, 1.0])),
    st.builds(lambda n: np.arange(n, dtype=np.int64).reshape(n, 1), st.integers(0, 4)),
)
npy_files = st.one_of(st.binary(max_size=200), st.builds(_npy, arrays), st.builds(lambda a, e: mutate(_npy(a), e), arrays, edits))
npz_files = st.one_of(st.binary(max_size=200), st.builds(lambda x, y: _npz(x=x, y=y), arrays, arrays),
                      st.builds(lambda x: _npz(data=x), arrays), st.builds(lambda a, e: mutate(_npz(x=a), e), arrays, edits))


@FUZZ
@given(data=npy_files, suffix=st.sampled_from([".npy", ".npz"]), npz=npz_files)
def test_numpy_files_never_unpickle(tmp_path_factory, monkeypatch, data, suffix, npz):
    import pickle

    from edgekit.compress import samples
    from edgekit.device.verify import _read_inputs

    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled a user file"))
    tmp = tmp_path_factory.mktemp("n")
    path = tmp / f"a{suffix}"
    path.write_bytes(data if suffix == ".npy" else npz)
    handled(_read_inputs, path)
    handled(samples.load, str(path), input_shape=None)


# ---- image folders ---------------------------------------------------------------------------------------------

def _png() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3))
    return buf.tobytes()


PNG = _png()


@FUZZ
@given(files=st.lists(st.tuples(st.sampled_from(["a.png", "b.jpg", "c/d.png", "c/e.bmp", "f/g/h.png", "i.txt"]),
                                st.one_of(st.binary(max_size=100), st.builds(lambda e: mutate(PNG, e), edits),
                                          st.just(PNG))), min_size=1, max_size=4),
       shape=st.one_of(st.none(), st.lists(st.integers(-2, 70000), min_size=1, max_size=5)))
def test_image_folders_and_input_shapes(tmp_path_factory, files, shape):
    from edgekit.compress import samples

    tmp = tmp_path_factory.mktemp("i")
    root = tmp / "images"
    for name, data in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    before = listing(tmp)
    handled(samples.load, str(root), input_shape=None if shape is None else [1, *shape])
    assert listing(tmp) == before


@FUZZ
@given(text=st.one_of(st.text(max_size=30), st.lists(st.integers(-3, 10**9), max_size=6).map(
    lambda v: ",".join(map(str, v)))))
def test_input_shape_option(capsys, text):
    """--input-shape is checked when parsed: positive sizes, at most 4 of them, a sample of bounded size."""
    code, _, err = cli_handled(["compress", "nothing.onnx", "--calib", "none/", "--out", "/nonexistent/x",
                                "--input-shape", text], capsys)
    assert code == 2
    dims = [int(t) for t in text.split(",") if t.strip()] if all(t.strip().lstrip("-").isdigit()
                                                                for t in text.split(",") if t.strip()) else None
    if dims and (any(d < 1 for d in dims) or len(dims) > 4 or np.prod(dims, dtype=np.float64) > 2**28):
        assert "--input-shape" in err and "nothing.onnx" not in err  # refused when parsed, before any file is read


# ---- model file headers (read before any runtime gets the file) ------------------------------------------------

@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A real ONNX and a real TFLite file with edgekit metadata (from the MLPerf Tiny references when present)."""
    import onnx
    from onnx import TensorProto, helper

    tmp = tmp_path_factory.mktemp("models")
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g)
    m.metadata_props.add(key="edgekit", value=json.dumps({"labels": ["a", "b"]}))
    onnx.save(m, tmp / "m.onnx")
    ref = sorted((ROOT.parent / "shared" / "reference-models").rglob("*.tflite"), key=lambda p: p.stat().st_size)
    if ref:
        shutil.copy(ref[0], tmp / "m.tflite")
    return {".onnx": (tmp / "m.onnx").read_bytes(),
            ".tflite": (tmp / "m.tflite").read_bytes() if ref else b"\x1c\x00\x00\x00TFL3" + bytes(64)}


@FUZZ
@given(suffix=st.sampled_from([".onnx", ".tflite", ".bin"]), e=edits, raw=st.binary(max_size=120),
       use_raw=st.booleans())
def test_model_headers(tmp_path_factory, model_files, suffix, e, raw, use_raw):
    from edgekit.device.runtime import read_metadata

    tmp = tmp_path_factory.mktemp("m")
    base = model_files.get(suffix, model_files[".tflite"])
    (tmp / f"x{suffix}").write_bytes(raw if use_raw else mutate(base, e))
    out = handled(read_metadata, tmp / f"x{suffix}")
    assert isinstance(out, (dict, EdgekitError))


# ---- --host ----------------------------------------------------------------------------------------------------

@FUZZ
@given(host=st.one_of(st.text(max_size=40), st.from_regex(r"[-a-z@:\[\]0-9. ;$`]{0,30}", fullmatch=True)))
def test_host_option(host):
    from edgekit.deploy import transport_for
    from edgekit.devices import load

    out = handled(transport_for, load("rpi5"), host=host)
    if not isinstance(out, EdgekitError):  # whatever was accepted cannot become an ssh option or a second command
        argv = out.shell("true")
        dest = argv[argv.index("--") + 1]
        assert not dest.startswith("-") and all(c not in dest for c in " ;$`\n")


# ---- bundle manifests (through `edgekit smoke`) ----------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_bundle(digits_run, tmp_path_factory):
    from edgekit.pack import bundle

    return bundle(digits_run, "x86_64_linux", tmp_path_factory.mktemp("fb") / "b", artifacts=["onnx_int8"])


@settings(parent=FUZZ, max_examples=max(EXAMPLES // 3, 10))
@given(tree_edit=st.data(), damage=st.one_of(st.none(), edits), resign=st.booleans())
def test_bundle_manifests(tmp_path_factory, capsys, fuzz_bundle, tree_edit, damage, resign):
    from edgekit.device import signing
    from edgekit.device.bundle import MANIFEST, manifest_digest

    tmp = tmp_path_factory.mktemp("b")
    b = tmp / "b"
    shutil.copytree(fuzz_bundle.path, b)
    manifest = json.loads((b / MANIFEST).read_text())
    if damage is not None:
        (b / MANIFEST).write_bytes(mutate((b / MANIFEST).read_bytes(), damage))
    else:
        tree = tree_edit.draw(edited(manifest))
        if isinstance(tree, dict):
            tree["digest"] = manifest_digest(tree)
        (b / MANIFEST).write_text(json.dumps(tree))
        if resign and isinstance(tree, dict) and isinstance(tree["digest"], str):
            signing.sign(b, tree["digest"], signing.default_key())  # past the signature: the structure is tested
    before = listing(tmp)
    cli_handled(["smoke", str(b), "--iterations", "1", "--warmup", "0", "--json"], capsys)
    assert listing(tmp) == before
