"""An installed edgekit, as `pip install edgekit` leaves it: outside the checkout, with no source tree beside it.

The wheel carries the device profiles and the recipes as package data, so `edgekit devices` and
`edgekit run NAME` work from it; and `edgekit deploy`, which ships edgekit's own wheel to the device, can
make that wheel again from the installed files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from edgekit import shipped
from edgekit.deploy import build_wheel, copy_source_tree

from .conftest import ROOT

WHEELHOUSE = ROOT / ".cache" / "wheelhouse"  # numpy, pyyaml, tqdm, packaging: filled by `make caches`


def _venv(where: Path, wheel: Path, extras: str = "") -> Path:
    """A fresh environment holding ``wheel`` (with ``extras``) and its dependencies, installed offline."""
    if not any(WHEELHOUSE.glob("numpy-*.whl")):
        pytest.skip("no wheelhouse: run `make caches`")
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=300)
    proc = subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
                           "--disable-pip-version-check", "--find-links", str(WHEELHOUSE), f"{wheel}{extras}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return where / "bin"


def _run(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir / "edgekit"), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _record_holds(wheel: Path) -> None:
    """Every file of the wheel is in its RECORD with the right sha256 and size (what the wheel format asks)."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (record,) = [n for n in names if n.endswith(".dist-info/RECORD")]
        rows = [line.split(",") for line in zf.read(record).decode().splitlines() if line]
        assert {r[0] for r in rows} == names
        for name, digest, size in rows:
            if name == record:
                continue
            data = zf.read(name)
            assert digest == "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert int(size) == len(data)


def test_the_sdist_and_the_wheel_built_from_it_carry_the_profiles_and_recipes_and_pass_twine_check(tmp_path):
    pytest.importorskip("build", reason='needs pip install "edgekit[dev]"')
    pytest.importorskip("twine", reason='needs pip install "edgekit[dev]"')
    tree = copy_source_tree(ROOT, tmp_path / "src")
    # No --sdist/--wheel: `build` makes the sdist, then the wheel from the unpacked sdist, so MANIFEST.in counts.
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path / "dist"), "."],
                          cwd=tree, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sdist,), (wheel,) = sorted((tmp_path / "dist").glob("*.tar.gz")), sorted((tmp_path / "dist").glob("*.whl"))
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with tarfile.open(sdist) as tf:
        in_sdist = {Path(*Path(n).parts[1:]).as_posix() for n in tf.getnames()}
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = set(zf.namelist())
    for kind in shipped.KINDS:
        stems = shipped.names(kind)
        assert stems and {f"{kind}/{s}.yaml" for s in stems} <= in_sdist, kind
        assert {f"edgekit/_shipped/{kind}/{s}.yaml" for s in stems} <= in_wheel, kind
    _record_holds(wheel)


def test_a_wheel_installed_outside_the_checkout_lists_runs_smokes_and_plans_a_deploy_from_itself(digits_run, tmp_path):
    from edgekit.pack import bundle

    wheel = build_wheel(tmp_path / "built")  # what `edgekit deploy` ships from a checkout
    _record_holds(wheel)
    made = bundle(digits_run, "x86_64_linux", tmp_path / "bundle")
    away = tmp_path / "elsewhere"  # no checkout and no recipes/ folder here
    away.mkdir()
    bin_dir = _venv(tmp_path / "venv", wheel, extras="[onnx,tflite]")
    profiles = shipped.names("devices")

    listed = _run(bin_dir, "devices", "list", cwd=away)
    assert listed.returncode == 0 and all(p in listed.stdout for p in profiles), listed.stdout + listed.stderr
    shown = _run(bin_dir, "devices", "show", "rpi5", cwd=away)
    assert shown.returncode == 0 and "aarch64" in shown.stdout, shown.stderr
    listed = _run(bin_dir, "recipes", cwd=away)
    assert listed.returncode == 0 and all(r in listed.stdout for r in shipped.names("recipes")), listed.stderr
    printed = _run(bin_dir, "recipes", "kws_dscnn", cwd=away)
    assert printed.returncode == 0 and "schema: 1" in printed.stdout, printed.stderr
    unknown = _run(bin_dir, "recipes", "kws_dscn", cwd=away)
    assert unknown.returncode == 2 and "Did you mean 'kws_dscnn'" in unknown.stderr
    assert "Traceback" not in unknown.stderr and len(unknown.stderr.splitlines()) == 1
    # A shipped recipe by name, found and checked; without torch here, one line names the extra training needs.
    run = _run(bin_dir, "run", "digits_resnet8", cwd=away)
    assert run.returncode == 2 and run.stderr.splitlines() == [
        'edgekit: error: `edgekit run` needs torch, which is not installed here: pip install "edgekit[train]"'], run.stderr
    assert not (away / "runs").exists()

    smoke = _run(bin_dir, "smoke", str(made.path), "--json", "--iterations", "5", cwd=away)
    assert smoke.returncode == 0 and json.loads(smoke.stdout)["passed"], smoke.stderr[-2000:]
    plan = _run(bin_dir, "deploy", str(made.path), "--device", "x86_64_linux", "--host", "pi@192.0.2.1",
                "--dry-run", cwd=away)
    assert plan.returncode == 0 and wheel.name in plan.stdout, plan.stdout[-2000:] + plan.stderr[-2000:]

    # What that dry run would ship: edgekit's wheel made again from the installed files; it installs and works.
    proc = subprocess.run([str(bin_dir / "python"), "-c", "import sys; from pathlib import Path; "
                           "from edgekit.deploy import build_wheel; print(build_wheel(Path(sys.argv[1])))",
                           str(tmp_path / "again")], cwd=away, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = Path(proc.stdout.strip())
    assert again.name == wheel.name
    _record_holds(again)
    with zipfile.ZipFile(wheel) as a, zipfile.ZipFile(again) as b:
        assert {n for n in b.namelist() if n.startswith("edgekit/")} == {n for n in a.namelist() if n.startswith("edgekit/")}
    listed = _run(_venv(tmp_path / "venv2", again), "devices", "list", cwd=away)
    assert listed.returncode == 0 and all(p in listed.stdout for p in profiles), listed.stderr


def test_a_shipped_recipe_runs_by_name_from_the_installed_wheel(tmp_path):
    """The wheel in a fresh environment that borrows the training stack (torch and the rest) from the test
    environment through a .pth line; edgekit itself, and so the recipe, comes from the wheel: run from a folder
    with no recipes/ in it, `edgekit run digits_resnet8` trains, exports and reports."""
    import site

    wheel = build_wheel(tmp_path / "built")
    bin_dir = _venv(tmp_path / "venv", wheel)
    (purelib,) = (tmp_path / "venv" / "lib").glob("python*/site-packages")
    (purelib / "borrowed_training_stack.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    away = tmp_path / "elsewhere"
    away.mkdir()
    where = subprocess.run([str(bin_dir / "python"), "-c", "import edgekit, torch; print(edgekit.__file__)"],
                           cwd=away, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0 and str(tmp_path / "venv") in where.stdout, where.stdout + where.stderr
    proc = _run(bin_dir, "run", "digits_resnet8", "--out", str(away / "runs"), "--set", "train.epochs=1",
                "--set", "prune.enabled=false", "--set", "distill.enabled=false", "--set", "export.targets=[onnx:fp32]",
                "--set", "export.baseline=false", "--set", "bench.threads=[1]",
                "--set", "bench.iterations=5", cwd=away)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((away / "runs" / "digits_resnet8").iterdir())
    assert (run / "results.json").is_file() and (run / "artifacts" / "model_fp32.onnx").is_file()
