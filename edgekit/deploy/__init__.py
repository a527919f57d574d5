"""Deploy a bundle to a device: copy it, install edgekit and a runtime there, smoke-test, bring the report back.

The plan is a list of :class:`Step` argument lists built from the bundle, the device profile and a
transport (``TRANSPORTS``: ssh, adb, local); ``deploy(..., dry_run=True)`` returns it without running
anything, and the CLI prints it. Over ssh or locally the plan is::

    check the device     the device's Python reports its version, machine, glibc and packages (stdlib only)
    copy bundle          tar over ssh into <remote_dir>/bundles/<name>.partial, then renamed into place
    copy wheels          edgekit's wheel (built here with `pip wheel --no-deps`) and, with a wheelhouse, its wheels
    create environment   <remote_dir>/venv (python -m venv; --system-site-packages on request)
    install              pip install edgekit + the profile's runtime package(s); --no-index with a wheelhouse
    smoke test           python -m edgekit smoke BUNDLE --json: checksums, golden pairs, a short benchmark
    tensorrt ...         (Jetson) trtexec builds an fp32 and an fp16 engine from each ONNX fp32 file and times it

Over adb (Android: no Python) the bundle is pushed, its checksums verified on the device with
``sha256sum``, each TFLite artifact timed with TFLite's ``benchmark_model`` binary, and the results pulled.

The report (JSON) is saved next to the bundle as ``deploy-report-<device>.json`` and, when the
bundle's run folder is on this machine, as ``<run>/deploy/<device>.json`` where ``edgekit report``
shows it beside the host's numbers. Nothing here imports torch.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgekit import __version__
from edgekit.deploy.transports import (  # noqa: F401 - DeployError, TRANSPORTS, transport_for re-exported
    TRANSPORTS,
    AdbTransport,
    DeployError,
    LocalTransport,
    SshTransport,
    Step,
    Transport,
    flag_path,
    parse_host,
    remote_path,
    transport_for,
)
from edgekit.device.bundle import save_device_report
from edgekit.errors import CheckFailed, ConfigError, close_matches

REPORT_SCHEMA = 1
CAMERA_REQUIREMENT = "opencv-python-headless>=4.8"  # the camera demo's capture and drawing

@dataclass(frozen=True)
class DeployResult:
    """What ``deploy`` did: the plan, and (unless a dry run) the report and where it was saved."""

    device: str
    target: str
    steps: tuple[Step, ...]
    dry_run: bool
    report: dict | None = None
    report_path: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.report and self.report.get("passed"))


def wheel_name() -> str:
    """The file name of edgekit's own wheel (pure Python, so one name everywhere)."""
    return f"edgekit-{__version__}-py3-none-any.whl"


def build_wheel(dest: Path) -> Path:
    """Build edgekit's wheel from the source tree this edgekit was imported from (``pip wheel --no-deps``).

    The source is copied to a temporary folder first, so the build leaves nothing in the checkout.

    An edgekit installed from a wheel (no source tree) is packed again from its installed files instead
    (:func:`repack_installed`), so ``edgekit deploy`` works from ``pip install edgekit`` alone.

    Raises:
        DeployError: the build failed, or an installed edgekit whose files cannot be found.
    """
    import importlib.util

    src = Path(__file__).resolve().parents[2]
    if not (src / "pyproject.toml").is_file() or not (src / "edgekit").is_dir():
        return repack_installed(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgekit-src-") as tmp:
        tree = copy_source_tree(src, Path(tmp) / "edgekit-src")
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check", "-w", str(dest),
               str(tree)]
        if importlib.util.find_spec("setuptools") is not None:
            cmd.insert(4, "--no-build-isolation")  # build with this environment's setuptools: no download
        proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / wheel_name()
    if proc.returncode != 0 or not wheel.is_file():
        raise DeployError(f"building edgekit's wheel failed: {_last_line(proc.stderr)}")
    return wheel


def copy_source_tree(src: Path, tree: Path) -> Path:
    """What a build of edgekit reads from the checkout ``src``, copied to ``tree`` (a build then leaves nothing
    in the checkout): the package, the project files, and the devices/ and recipes/ that setup.py ships."""
    tree.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        if (src / name).is_file():
            shutil.copy2(src / name, tree / name)
    for name in ("edgekit", "devices", "recipes"):
        if (src / name).is_dir():
            shutil.copytree(src / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tree


def repack_installed(dest: Path) -> Path:
    """edgekit's wheel made again from the installed distribution's own files (its RECORD), for an edgekit
    that was installed from a wheel: pure Python, so the files are the wheel's content; RECORD is written anew
    with each file's sha256, as the wheel format asks, and what pip added at install time is left out.

    Raises:
        DeployError: the installed distribution lists no files (e.g. an editable install without its source).
    """
    import base64
    import hashlib
    import zipfile
    from importlib import metadata

    try:
        dist = metadata.distribution("edgekit")
    except metadata.PackageNotFoundError:
        dist = None
    files = [f for f in (dist.files or []) if f.parts and (f.parts[0] == "edgekit" or f.parts[0].endswith(
        ".dist-info"))] if dist else []
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    files = [f for f in files if "__pycache__" not in f.parts and f.name not in skip and not f.name.endswith(".pyc")]
    if not any(f.parts[0] == "edgekit" for f in files):
        raise DeployError(f"edgekit is installed without its files or a source tree to build its wheel from: pass "
                          f"--wheelhouse DIR holding {wheel_name()}")
    dest.mkdir(parents=True, exist_ok=True)
    wheel, info = dest / wheel_name(), next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    part, record = wheel.with_name(wheel.name + ".part"), []
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            data = Path(f.locate()).read_bytes()
            zf.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{f},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    part.replace(wheel)
    return wheel


def requirements(b, dev, *, runtimes: list[str] | None = None, camera: bool = False) -> tuple[list[str], list[str]]:
    """The runtimes to install for a bundle and their pip requirements (profile versions, plus their needs).

    By default one pip-installable runtime per artifact: the first the profile lists for it.

    Returns:
        (runtime names, requirement strings).

    Raises:
        ConfigError: a runtime name the profile does not list.
    """
    for r in runtimes or ():
        if r not in dev.runtimes:
            raise ConfigError(f"{dev.name}: no runtime '{r}' in the profile.{close_matches(r, dev.runtimes)} "
                              f"Choices: {', '.join(dev.runtimes)}")
    chosen: list[str] = []
    for art in b.artifacts:
        cands = [r for r in art.runtimes if dev.runtimes[r].requirement()]
        if runtimes:
            chosen += [r for r in cands if r in runtimes and r not in chosen]
        elif cands and not any(c in chosen for c in cands):
            chosen.append(cands[0])
    reqs: list[str] = []
    for r in chosen:
        for req in (dev.runtimes[r].requirement(), *dev.runtimes[r].requires):
            if req not in reqs:
                reqs.append(req)
    if camera:
        reqs.append(CAMERA_REQUIREMENT)
    return chosen, reqs


def _bundle_files(b) -> list[tuple[Path, str]]:
    from edgekit.device.bundle import MANIFEST
    from edgekit.device.signing import SIGNATURE

    signed = [(b.path / SIGNATURE, SIGNATURE)] if (b.path / SIGNATURE).is_file() else []
    return [(b.path / MANIFEST, MANIFEST), *signed] + [(b.path / rel, rel) for rel in b.manifest["files"]]


# The device's trusted-keys folder, as its shell finds it (edgekit.device.signing.trusted_dir on the device).
REMOTE_TRUSTED = '"${EDGEKIT_TRUSTED_KEYS:-${EDGEKIT_HOME:-$HOME/.config/edgekit}/trusted-keys}"'


def _trust_step(b, tr: Transport, policy) -> list[Step]:
    """Install the public key that signed the bundle (trusted here) into the device's trusted-keys folder."""
    from edgekit.device import signing
    sig = b.signature or {}
    if sig.get("status") != "verified":
        return []  # unsigned (allowed): nothing to trust; the device is told --allow-unsigned
    key = signing.trusted_keys(policy.trusted if policy else None)[sig["key_id"]]
    pem = signing.public_pem(key).decode()
    name = f"{key.name}-{key.key_id}.pub"
    cmd = (f"mkdir -p {REMOTE_TRUSTED} && printf %s {shlex.quote(pem)} > {REMOTE_TRUSTED}/.{name}.partial && "
           f"mv {REMOTE_TRUSTED}/.{name}.partial {REMOTE_TRUSTED}/{name}")
    return [Step(f"trust key {key.key_id}", tuple(tr.shell(cmd)), timeout=60)]


def plan(b, dev, tr: Transport, *, wheel: Path | None = None, wheelhouse: Path | None = None,
         remote_dir: str | None = None, python: str | None = None, system_site_packages: bool = False,
         fresh: bool = False, camera: bool = False, runtimes: list[str] | None = None, threads: int = 1,
         iterations: int = 50, tensorrt: bool = True, benchmark_binary: Path | None = None,
         results_dir: Path | None = None, policy=None) -> list[Step]:
    """The deploy's commands, in order, without running any (see the module docstring for what each does).

    Args:
        b: a verified Bundle.
        dev: the device profile.
        tr: the transport (``transport_for``).
        wheel: edgekit's wheel on this machine (a placeholder name is fine for a dry run).
        wheelhouse: a folder of wheels to copy and install from with ``--no-index`` (nothing downloaded there).
        remote_dir: the device folder for bundles, wheels and the environment (default: the profile's).
        python: the device's Python that creates the environment (default: the profile's).
        system_site_packages: create the environment with ``--system-site-packages`` (reuse the OS's numpy,
            OpenCV or runtime packages, e.g. Debian's python3-opencv on a Pi).
        fresh: delete the device's environment first.
        camera: also install OpenCV for the camera demo.
        runtimes: runtimes to install and smoke-test (default: one per artifact, see :func:`requirements`).
        threads, iterations: for the smoke test's benchmark (and benchmark_model on adb).
        tensorrt: on a profile with TensorRT, build and time engines with trtexec.
        benchmark_binary: adb: a local benchmark_model binary to push to the profile's path.
        results_dir: adb: the local folder the results are pulled into.
        policy: the signature policy (edgekit.device.signing.Policy): the signer's public key is installed in the
            device's trusted-keys folder; an unsigned bundle that the policy allows runs there with
            ``--allow-unsigned``.

    Returns:
        The Steps.
    """
    rd = (remote_dir or dev.transport.remote_dir).rstrip("/") or "/"
    bdir = f"{rd}/bundles/{b.path.name}"
    files = _bundle_files(b)
    if isinstance(tr, AdbTransport):
        return _adb_plan(b, dev, tr, rd, bdir, files, threads=threads, iterations=iterations,
                         benchmark_binary=benchmark_binary, results_dir=results_dir or Path("deploy-results"))
    from edgekit.devices import PROBE, probe_packages

    py = python or dev.transport.python
    if not py:
        raise ConfigError(f"{dev.name}: the profile names no Python on the device (transport.python); pass --python")
    wdir, venv = f"{rd}/wheels", f"{rd}/venv"
    vpy = f"{venv}/bin/python"
    wheel = wheel or Path(wheel_name())
    wheels = [(wheel, wheel.name)]
    if wheelhouse is not None:
        wheels += [(w, w.name) for w in sorted(Path(wheelhouse).glob("*.whl")) if w.name != wheel.name]
    chosen, reqs = requirements(b, dev, runtimes=runtimes, camera=camera)
    pip = f"{remote_path(vpy)} -m pip install --disable-pip-version-check --no-input -q"
    index = "--no-index " if wheelhouse is not None else ""
    whl = remote_path(f"{wdir}/{wheel.name}")
    install = (f"{pip} {index}--find-links {remote_path(wdir)} {whl} {' '.join(shlex.quote(r) for r in reqs)}".rstrip()
               + f" && {pip} --no-index --no-deps --force-reinstall {whl}")  # same version number, new code
    create = (f"{'rm -rf ' + remote_path(venv) + ' && ' if fresh else ''}if [ ! -x {remote_path(vpy)} ]; then "
              f"{remote_path(py)} -m venv "
              # JetPack installs TensorRT's Python package into the system Python, nowhere else
              f"{'--system-site-packages ' if system_site_packages or (tensorrt and 'tensorrt' in dev.runtimes) else ''}"
              f"{remote_path(venv)}; fi")
    smoke = (f"{remote_path(vpy)} -m edgekit smoke {remote_path(bdir)} --json --threads {int(threads)} "
             f"--iterations {int(iterations)}" + (f" --runtime {shlex.quote(','.join(chosen))}" if chosen else "")
             + (" --allow-unsigned" if (b.signature or {}).get("status") != "verified" else ""))
    steps = [
        Step("check the device", tuple(tr.shell(f"{remote_path(py)} -c {shlex.quote(PROBE)} "
                                                f"{shlex.quote(json.dumps(probe_packages(dev)))}")),
             capture="probe", timeout=120),
        *tr.upload_dir("copy bundle", files, bdir),
        *tr.upload_dir("copy wheels", wheels, wdir),
        *_trust_step(b, tr, policy),
        Step("create environment", tuple(tr.shell(create)), timeout=600),
        Step("install", tuple(tr.shell(install)), timeout=3600),
        Step("smoke test", tuple(tr.shell(smoke)), capture="smoke", ok_codes=(0, 1), timeout=1800),
    ]
    if tensorrt and "tensorrt" in dev.runtimes:
        from edgekit.deploy.jetson import golden_step, trtexec_steps

        steps += trtexec_steps(b, dev, tr, bdir, iterations=max(int(iterations), 100))
        golden = golden_step(b, tr, vpy, bdir, iterations=iterations,
                             allow_unsigned=(b.signature or {}).get("status") != "verified")
        steps += [golden] if golden else []
    return steps


def _adb_plan(b, dev, tr: AdbTransport, rd: str, bdir: str, files, *, threads: int, iterations: int,
              benchmark_binary: Path | None, results_dir: Path) -> list[Step]:
    from edgekit.deploy.android import benchmark_steps

    if not rd.startswith("/"):
        raise ConfigError(f"{dev.name}: remote_dir {rd!r} must be an absolute device path over adb, "
                          f"e.g. /data/local/tmp/edgekit")
    steps = [Step("check the device", tuple(tr.shell("getprop ro.product.cpu.abi")), capture="probe", timeout=60)]
    steps += tr.upload_dir("copy bundle", files, bdir)
    steps += benchmark_steps(b, dev, tr, bdir, [rel for _, rel in files], threads=threads, iterations=iterations,
                             benchmark_binary=benchmark_binary, results_dir=results_dir)
    return steps


def deploy(bundle, device=None, *, host: str | None = None, dry_run: bool = False,
           ssh_options: tuple[str, ...] | list[str] = (), wheelhouse: str | Path | None = None,
           remote_dir: str | None = None, python: str | None = None, system_site_packages: bool = False,
           fresh: bool = False, camera: bool = False, runtimes: list[str] | None = None, threads: int = 1,
           iterations: int = 50, tensorrt: bool = True, benchmark_binary: str | Path | None = None,
           log=None, policy=None) -> DeployResult:
    """Copy a bundle to a device, install edgekit and the runtime there, run the smoke test, save the report.

    The bundle's checksums are verified here before anything is copied (a tampered bundle is refused
    with nothing run), and again on the device before anything runs there.

    Args:
        bundle: a bundle folder or a Bundle.
        device: a profile name or Device; None = the device the bundle was made for (another one is refused).
        host: ``user@host[:port]`` (ssh) or an adb serial, instead of the profile's.
        dry_run: return the plan without running anything.
        ssh_options: extra ssh arguments (``-i KEY``, ``-o UserKnownHostsFile=FILE``); host keys stay checked.
        wheelhouse: a folder of wheels (numpy, the runtime, their dependencies for the device's platform and
            Python) copied to the device and installed with ``pip --no-index --find-links``: nothing is
            downloaded there. Fill one with ``pip download --only-binary=:all: --platform TAG
            --python-version X.Y -d DIR PACKAGES``. Without it, the device's pip downloads from its index.
        remote_dir, python, system_site_packages, fresh, camera, runtimes, threads, iterations, tensorrt,
            benchmark_binary: see :func:`plan`.
        log: called with one line per step (default: print to stderr).
        policy: which signatures to accept here (edgekit.device.signing.Policy, default: a trusted key's only);
            the signer's public key is installed on the device, which checks the signature again.

    Returns:
        A DeployResult; ``passed`` says whether the smoke test passed.

    Raises:
        DataError: the bundle fails its checksums (locally), or its device is not ``device``.
        DeployError: the device cannot be reached, a step fails on it (including the bundle failing its
            checksums there), or it does not match the profile (architecture, Python, glibc).
        ConfigError: bad options (unknown runtime, malformed host, missing host).

    Example:
        >>> deploy("bundles/rpi5", "rpi5", host="pi@192.168.1.20").passed
        True
    """
    from edgekit import devices
    from edgekit.device.bundle import Bundle, load_bundle

    # Verified again even when given a Bundle: files may have changed since it was loaded. Nothing has run yet.
    b = load_bundle(bundle.path if isinstance(bundle, Bundle) else bundle, policy=policy)
    dev = devices.load(device or b.device) if not isinstance(device, devices.Device) else device
    if dev.name != b.device:
        raise ConfigError(f"{b.path} was bundled for '{b.device}', not '{dev.name}': "
                          f"make one with edgekit bundle RUN --device {dev.name} --out DIR")
    tr = transport_for(dev, host=host, ssh_options=tuple(ssh_options))
    say = log or (lambda msg: print(f"[deploy] {msg}", file=sys.stderr, flush=True))
    wheelhouse = Path(wheelhouse) if wheelhouse is not None else None
    if wheelhouse is not None and not wheelhouse.is_dir():
        raise ConfigError(f"--wheelhouse {wheelhouse}: not a folder")
    opts = dict(wheelhouse=wheelhouse, remote_dir=remote_dir, python=python, system_site_packages=system_site_packages,
                fresh=fresh, camera=camera, runtimes=runtimes, threads=threads, iterations=iterations,
                tensorrt=tensorrt, benchmark_binary=Path(benchmark_binary) if benchmark_binary else None,
                policy=policy)
    if dry_run:
        return DeployResult(dev.name, tr.describe(), tuple(plan(b, dev, tr, **opts)), True)

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekit-deploy-") as tmp:
        tmp = Path(tmp)
        wheel = None
        if tr.python_capable:
            wheel = (wheelhouse / wheel_name()) if wheelhouse and not _source_tree() else None
            wheel = wheel if wheel and wheel.is_file() else build_wheel(tmp / "wheel")
        steps = plan(b, dev, tr, wheel=wheel, results_dir=tmp / "results", **opts)
        outputs, timings = {}, {}
        for step in steps:
            say(f"{step.name}: {step.render().splitlines()[0][:140]}")
            t0 = time.perf_counter()
            proc = _run(step, tr)
            timings[step.name] = round(time.perf_counter() - t0, 3)
            if step.capture:
                outputs[step.capture] = {"stdout": proc.stdout, "stderr": proc.stderr, "returncode": proc.returncode}
            if step.capture == "probe":
                _check_probe(dev, tr, b, proc.stdout, runtimes=runtimes, camera=camera)
        if isinstance(tr, AdbTransport):
            from edgekit.deploy.android import collect

            body = collect(b, outputs, tmp / "results")
        else:
            body = _python_body(b, dev, tr, outputs)
    chosen, reqs = requirements(b, dev, runtimes=runtimes, camera=camera)
    report = {
        "schema": REPORT_SCHEMA, "kind": "edgekit-deploy", "edgekit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": dev.name, "device_digest": dev.digest(),
        "target": tr.describe(), "transport": tr.kind, "bundle": str(b.path.resolve()),
        "remote_dir": (remote_dir or dev.transport.remote_dir), "recipe": b.manifest["recipe"],
        "install": {"runtimes": chosen, "requirements": reqs, "wheelhouse": str(wheelhouse) if wheelhouse else None,
                    "system_site_packages": system_site_packages, "fresh": fresh},
        "host": {a.name: {"runtime": a.host_runtime, "expected": a.expected} for a in b.artifacts},
        "host_machine": b.manifest.get("run", {}).get("host"), "signature": b.signature,
        **body,
        "timings_s": timings, "seconds": round(time.perf_counter() - t_start, 3),
        "commands": [s.render() for s in steps],
    }
    path = save_device_report(b, report)
    return DeployResult(dev.name, tr.describe(), tuple(steps), False, report, path)


def _source_tree() -> bool:
    return (Path(__file__).resolve().parents[2] / "pyproject.toml").is_file()


def _run(step: Step, tr: Transport) -> subprocess.CompletedProcess:
    stdin = None
    try:
        if step.upload:
            stdin = tempfile.TemporaryFile()
            with tarfile.open(fileobj=stdin, mode="w") as tar:
                for local, arc in step.upload:
                    tar.add(local, arcname=arc, recursive=False, filter=_plain)
            stdin.seek(0)
        try:
            proc = subprocess.run(list(step.argv), stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=step.timeout)
        except FileNotFoundError:
            hint = {"ssh": "apt-get install openssh-client", "adb": "apt-get install adb (Android platform tools)"}
            raise DeployError(f"'{step.argv[0]}' not found: {hint.get(step.argv[0], 'install it')}") from None
        except subprocess.TimeoutExpired:
            raise DeployError(f"{tr.describe()}: step '{step.name}' took more than {step.timeout:.0f} s") from None
    finally:
        if stdin is not None:
            stdin.close()
    if step.ok_codes and proc.returncode not in step.ok_codes:
        msg = _last_line(proc.stderr) or _last_line(proc.stdout) or "no output"
        hint = ""
        if "Host key verification failed" in proc.stderr:
            hint = (" (host keys are checked: connect once with ssh and compare the fingerprint, or add the key "
                    "to the known_hosts file given with -o UserKnownHostsFile=FILE)")
        raise DeployError(f"{tr.describe()}: step '{step.name}' failed (exit {proc.returncode}): {msg}{hint}")
    return proc


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""  # the device's user owns what it unpacks
    return info


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and "XNNPACK" not in ln]
    return lines[-1] if lines else ""


def _check_probe(dev, tr: Transport, b, stdout: str, *, runtimes, camera) -> None:
    """Stop before installing anything when the device cannot run what the bundle needs."""
    from edgekit.devices import compare

    if isinstance(tr, AdbTransport):
        abi = stdout.strip().splitlines()[-1] if stdout.strip() else ""
        if dev.arch == "aarch64" and abi and abi != "arm64-v8a":
            raise DeployError(f"{tr.describe()}: the device's ABI is {abi}, the profile {dev.name} says arm64-v8a")
        return
    try:
        found = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DeployError(f"{tr.describe()}: the device's Python printed no probe result: {stdout[-200:]!r}") from None
    chosen, _ = requirements(b, dev, runtimes=runtimes, camera=camera)
    keep = {"architecture", "python"} | {f"{r} needs glibc" for r in chosen}
    bad = [r for r in compare(dev, {"system python": found}) if r.item in keep and r.verdict == "FAIL"]
    if bad:
        raise DeployError(f"{tr.describe()} does not match the {dev.name} profile: "
                          + "; ".join(f"{r.item}: expected {r.expected}, found {r.found}" for r in bad))


def _python_body(b, dev, tr: Transport, outputs: dict) -> dict:
    probe = json.loads(outputs["probe"]["stdout"].strip().splitlines()[-1])
    smoke_out = outputs["smoke"]
    lines = [ln for ln in smoke_out["stdout"].splitlines() if ln.startswith("{")]
    if not lines:
        raise DeployError(f"{tr.describe()}: the smoke test printed no report (exit {smoke_out['returncode']}): "
                          f"{_last_line(smoke_out['stderr'])}")
    smoke = json.loads(lines[-1])
    body = {"probe": probe, "smoke": smoke}
    passed = bool(smoke.get("passed"))
    trt = [k for k in outputs if k.startswith("trtexec:")]
    if trt:
        from edgekit.deploy.jetson import parse_trtexec

        body["tensorrt"] = [{"artifact": k.split(":")[1], "mode": k.split(":")[2],
                             **parse_trtexec(outputs[k]["stdout"], outputs[k]["returncode"])} for k in trt]
        passed = passed and all(r["passed"] for r in body["tensorrt"])
    if "tensorrt-smoke" in outputs:  # golden pairs through TensorRT's Python API, with its latency
        out = outputs["tensorrt-smoke"]
        found = [ln for ln in out["stdout"].splitlines() if ln.startswith("{")]
        body["tensorrt_golden"] = (json.loads(found[-1]) if found else
                                   {"passed": False, "problems": [f"exit {out['returncode']}: "
                                                                  f"{_last_line(out['stderr'])}"]})
        passed = passed and bool(body["tensorrt_golden"].get("passed"))
    body["passed"] = passed
    return body


def check_result(result: DeployResult) -> None:
    """Raise CheckFailed when the smoke test failed (the report is saved first)."""
    if result.report is not None and not result.passed:
        problems = result.report.get("smoke", {}).get("problems") or result.report.get("problems") or []
        raise CheckFailed(f"{result.device}: smoke test failed: {'; '.join(problems) or 'see the report'} "
                          f"(report: {result.report_path})")


__all__ = ["TRANSPORTS", "DeployError", "DeployResult", "SshTransport", "Step", "build_wheel", "check_result",
           "deploy", "flag_path", "plan", "remote_path", "requirements", "save_device_report", "transport_for"]
