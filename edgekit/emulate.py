"""Run the device side on an arm64 CPU model under qemu-user: the same Python, C library and wheels as the board.

Emulation proves that a bundle's runtimes install for the device's platform and compute the same numbers
on its instruction set. It proves nothing about speed: latency measured here is marked as emulated.

Two steps, split by network use:

- :func:`prepare` (``edgekit devices prepare-emulation NAME``, run by ``make setup``) downloads what a
  profile needs into a cache: the Debian arm64 packages of its Python (``apt-get download``) and the
  aarch64 wheels of edgekit's device side and of each runtime (``pip download --platform``).
- :func:`sysroot` builds the sysroot from that cache, offline, and :func:`run_python` runs the arm64
  ``python3.11`` in it with ``qemu-aarch64-static -cpu <the profile's qemu_cpu>``.

The recipe (measured in ../shared/ARM64.md): unpack the debs with ``dpkg -x``; install the wheels with the
host's pip (``--target``, explicit manylinux tags); give onnxruntime a Cortex-A ``/proc/cpuinfo`` inside
the sysroot (it parses the file and segfaults on an x86 one); always name a CPU model (qemu's default
``max`` ran ~10x slower).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EdgekitError

DEBIAN_RELEASE = "bookworm"  # glibc 2.36, Python 3.11: Raspberry Pi OS 12
SYSROOT_PYTHON = "3.11"
SYSROOT_GLIBC = "2.36"
# python3.11:arm64 and what it loads (apt-cache depends --recurse, minus dpkg/tar/perl), plus libstdc++ for
# onnxruntime's and LiteRT's wheels.
ARM64_DEBS = (
    "libc6", "libgcc-s1", "gcc-12-base", "libstdc++6", "python3.11-minimal", "libpython3.11-minimal",
    "libpython3.11-stdlib", "python3.11", "libssl3", "libffi8", "zlib1g", "libexpat1", "libbz2-1.0", "liblzma5",
    "libzstd1", "libcrypt1", "libuuid1", "libsqlite3-0", "libncursesw6", "libtinfo6", "libreadline8", "libtirpc3",
    "libnsl2", "libdb5.3", "libgssapi-krb5-2", "libkrb5-3", "libk5crypto3", "libkrb5support0", "libkeyutils1",
    "libcom-err2", "libmd0", "libselinux1", "libpcre2-8-0", "libacl1",
)
BASE_REQUIREMENTS = ("numpy", "pyyaml>=6", "tqdm>=4.60", "cryptography>=42")  # cryptography: bundle signatures
# CPU part numbers that onnxruntime's cpuinfo parser expects to find (ARM implementer 0x41).
CPU_PARTS = {"cortex-a53": "0xd03", "cortex-a55": "0xd05", "cortex-a72": "0xd08", "cortex-a76": "0xd0b",
             "cortex-a78ae": "0xd42", "neoverse-n1": "0xd0c", "max": "0xd08"}


class EmulationUnavailable(EdgekitError):
    """Something the host needs for emulation is missing; the message says how to get it."""


@dataclass(frozen=True)
class Sysroot:
    """A built arm64 sysroot: ``root`` (debs unpacked), ``sites`` per runtime (its wheels), ``base`` (edgekit)."""

    root: Path
    cpu: str
    installed: dict  # runtime name -> True, or the pip error text when its wheel does not exist there
    approximations: tuple[str, ...]

    @property
    def python(self) -> Path:
        return self.root / "usr" / "bin" / f"python{SYSROOT_PYTHON}"


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKIT_CACHE", Path.home() / ".cache" / "edgekit")) / "arm64"


def host_problems() -> list[str]:
    """What this host lacks to emulate arm64, each with the command that fixes it."""
    problems = []
    if shutil.which("qemu-aarch64-static") is None:
        problems.append("qemu-aarch64-static not found: apt-get install qemu-user-static (make setup does)")
    if shutil.which("dpkg") is None:
        problems.append("dpkg not found: emulation builds its sysroot from Debian packages (Debian/Ubuntu hosts)")
    return problems


def platform_tags(glibc: str) -> list[str]:
    """pip ``--platform`` tags a device with this glibc accepts (a single newest tag finds nothing)."""
    major, minor = (int(x) for x in glibc.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_aarch64" for m in range(minor, 16, -1)]
    return [*tags, "manylinux2014_aarch64"]


def _pip_platform_args(glibc: str) -> list[str]:
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", SYSROOT_PYTHON,
            "--abi", f"cp{SYSROOT_PYTHON.replace('.', '')}"]
    for tag in platform_tags(glibc):
        args += ["--platform", tag]
    return args


def _runtime_requirements(profile) -> dict[str, list[str]]:
    """pip requirements per runtime edgekit can drive that the profile says pip installs (not TensorRT)."""
    from edgekit.device.runtime import RUNTIMES

    return {name: [rt.package + (rt.version or ""), *rt.requires] for name, rt in profile.runtimes.items()
            if rt.package and rt.install and name in RUNTIMES}


def _glibc(profile) -> str:
    return str(getattr(profile.os, "glibc", SYSROOT_GLIBC) or SYSROOT_GLIBC)


def _key(profile) -> str:
    from edgekit import __version__

    blob = json.dumps({"v": __version__, "rt": _runtime_requirements(profile), "glibc": _glibc(profile),
                       "base": BASE_REQUIREMENTS,
                       "release": DEBIAN_RELEASE}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def prepare(profile, *, quiet: bool = True) -> Path:
    """Download the arm64 debs and aarch64 wheels a profile needs into the cache (network; explicit).

    Args:
        profile: a device profile (edgekit.devices) with ``os.glibc``, ``runtimes`` and ``qemu_cpu``.

    Returns:
        The cache folder of this profile.

    Raises:
        EmulationUnavailable: dpkg/apt or qemu missing, or the arm64 architecture not added to dpkg.
    """
    problems = host_problems()
    if problems:
        raise EmulationUnavailable("; ".join(problems))
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
    if "arm64" not in foreign:
        raise EmulationUnavailable("dpkg has no arm64 architecture: dpkg --add-architecture arm64 && apt-get update "
                                   "(scripts/setup-system.sh does it as root)")
    cache = cache_dir() / _key(profile)
    debs = cache_dir() / "debs"
    if not (debs / ".complete").exists():
        debs.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["apt-get", "download", "-o", "APT::Sandbox::User=root",
                               *[f"{p}:arm64" for p in ARM64_DEBS]], cwd=debs, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EmulationUnavailable(f"apt-get download of the arm64 packages failed: {proc.stderr.strip()[-400:]}"
                                       " (run apt-get update after dpkg --add-architecture arm64)")
        (debs / ".complete").write_text("ok\n")
    wheels = cache / "wheels"
    failures = {}
    for name, reqs in {"base": list(BASE_REQUIREMENTS), **_runtime_requirements(profile)}.items():
        target = wheels / name
        if (target / ".complete").exists():
            continue
        shutil.rmtree(target, ignore_errors=True)  # a failure may have been transient: try again
        target.mkdir(parents=True)
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(target),
                               *_pip_platform_args(_glibc(profile)), *reqs], capture_output=True, text=True)
        if proc.returncode != 0:
            err = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
            (target / ".unavailable").write_text("\n".join(err) or proc.stderr[-500:])
            failures[name] = err
        else:
            (target / ".complete").write_text("ok\n")
    if not quiet:
        print(f"arm64 cache: {cache} (unavailable: {', '.join(failures) or 'none'})")
    return cache


def sysroot(profile, *, edgekit_wheel: Path | None = None) -> Sysroot:
    """Build (or reuse) the profile's arm64 sysroot from the cache, offline.

    Raises:
        EmulationUnavailable: the cache was never prepared (``edgekit devices prepare-emulation NAME``).
    """
    problems = host_problems()
    if problems:
        raise EmulationUnavailable("; ".join(problems))
    cache = cache_dir() / _key(profile)
    debs = cache_dir() / "debs"
    if not (debs / ".complete").exists() or not (cache / "wheels" / "base" / ".complete").exists():
        raise EmulationUnavailable(f"no arm64 packages cached for '{profile.name}': run "
                                   f"edgekit devices prepare-emulation {profile.name} (downloads ~80 MB once)")
    cpu = getattr(profile, "qemu_cpu", None) or "cortex-a72"
    root = cache / f"root-{cpu}"
    if not (root / ".complete").exists():
        tmp = cache / f".root-{cpu}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
        _fake_cpu(tmp, cpu)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
        (root / ".complete").write_text("ok\n")
    installed = {}
    for wheel_dir in sorted((cache / "wheels").iterdir()):
        name = wheel_dir.name
        site = root / "opt" / "site" / name
        if (wheel_dir / ".unavailable").exists():
            installed[name] = (wheel_dir / ".unavailable").read_text().strip() or "no wheel for this platform"
            continue
        if not (site / ".complete").exists():
            shutil.rmtree(site, ignore_errors=True)
            proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-warn-conflicts", "--no-index",
                                   "--find-links", str(wheel_dir), "--target", str(site),
                                   *_pip_platform_args(_glibc(profile)), *map(str, wheel_dir.glob("*.whl"))],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                installed[name] = f"pip could not install the cached wheels: {proc.stderr.strip()[-300:]}"
                continue
            (site / ".complete").write_text("ok\n")
        installed[name] = True
    _install_edgekit(root, edgekit_wheel)
    approx = []
    if _glibc(profile) != SYSROOT_GLIBC or str(getattr(profile.os, "python", SYSROOT_PYTHON)) != SYSROOT_PYTHON:
        approx.append(f"Debian {DEBIAN_RELEASE} sysroot (glibc {SYSROOT_GLIBC}, Python {SYSROOT_PYTHON}) stands in "
                      f"for the profile's glibc {_glibc(profile)}, Python {getattr(profile.os, 'python', '?')}; "
                      f"wheels were chosen for glibc {_glibc(profile)}")
    return Sysroot(root=root, cpu=cpu, installed=installed, approximations=tuple(approx))


def _install_edgekit(root: Path, wheel: Path | None) -> None:
    """Copy this edgekit's package (pure Python) into the sysroot, replacing an older copy."""
    import edgekit

    dest = root / "opt" / "edgekit"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(Path(edgekit.__file__).parent, dest / "edgekit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _fake_cpu(root: Path, cpu: str) -> None:
    part = CPU_PARTS.get(cpu, "0xd08")
    block = (f"BogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
             f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 3\n")
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "cpuinfo").write_text("".join(f"processor\t: {i}\n{block}\n" for i in range(2)))
    cpus = root / "sys" / "devices" / "system" / "cpu"
    cpus.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpus / name).write_text("0-1\n")


def run_python(root: Sysroot, args: list[str], *, runtime: str, timeout: int = 600,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the sysroot's arm64 Python with ``args``, with edgekit, the base packages and one runtime importable.

    Each runtime has its own site folder (tflite-runtime needs numpy<2, the others numpy 2), so one
    process sees exactly one runtime, as a device with that runtime installed would.
    """
    paths = [f"/opt/site/{runtime}", "/opt/site/base", "/opt/edgekit"]
    full_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(paths), "PYTHONDONTWRITEBYTECODE": "1",
                "QEMU_CPU": root.cpu, "QEMU_LD_PREFIX": str(root.root), "HOME": str(Path.home()),
                "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    cmd = ["qemu-aarch64-static", "-cpu", root.cpu, "-L", str(root.root), str(root.python), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


EMULATED_FLOAT_TOLERANCE = 1e-4  # max abs diff of float outputs, arm64 vs x86 (measured ~5e-5 on values to ~140)
INT8_STEP_FRACTION = 0.01  # int8 not bit-identical: allowed diff as a fraction of the host outputs' range


def emulated_check(bundle_dir: str | Path, device: str, *, iterations: int = 5, timeout: int = 900,
                   policy=None) -> dict:
    """Prove a bundle on its device's instruction set: every artifact on every runtime the profile installs.

    The bundle's checksums are verified on the host first; then, per runtime, one arm64 process runs
    ``edgekit smoke`` (golden inputs through each artifact, compared with the host's outputs stored in the
    bundle). int8 artifacts must match the host bit for bit on the runtime that made the host outputs,
    float artifacts within :data:`EMULATED_FLOAT_TOLERANCE`. A runtime with no wheel for the device's
    platform is reported with pip's error. Latency under emulation is recorded but marked as emulated:
    it is not the board's.

    Args:
        bundle_dir: a bundle folder (edgekit bundle).
        device: a device profile name with ``arch: aarch64`` and a ``qemu_cpu``.
        iterations: timed runs per artifact (few: emulated timing means little).

    Returns:
        The report dict (also written as ``emulated-report-<device>.json`` beside the bundle), with ``passed``.

    Raises:
        EmulationUnavailable: qemu or the cached packages are missing (the message says how to get them).
        DataError: the bundle fails its checksums.
        ConfigError: the profile is not an arm64 device.
    """
    import time

    from edgekit import devices, rundir
    from edgekit.device.bundle import load_bundle
    from edgekit.errors import ConfigError

    t0 = time.perf_counter()
    profile = devices.load(device)
    if profile.arch != "aarch64":
        raise ConfigError(f"{profile.source}: arch {profile.arch}: emulation runs aarch64 profiles only")
    from edgekit.device import signing
    policy = policy or signing.Policy()
    b = load_bundle(bundle_dir, policy=policy)  # checksums and signature on the host first: a tampered bundle
    root = sysroot(profile)                      # never reaches the emulator, which checks both again itself
    trust = ["--trusted-keys", str(Path(policy.trusted or signing.trusted_dir()).resolve())]
    trust += ["--allow-unsigned"] if policy.allow_unsigned else []
    rows, problems = [], []
    for rt, state in root.installed.items():
        if rt == "base":
            continue
        arts = [a for a in b.artifacts if rt in a.runtimes]
        if not arts:
            continue
        if state is not True:
            for a in arts:
                rows.append({"artifact": a.name, "runtime": rt, "installed": False, "passed": None,
                             "verdict": f"cannot install {rt} on {profile.name}: {state}"})
            continue
        proc = run_python(root, ["-m", "edgekit", "smoke", str(Path(bundle_dir).resolve()), "--json", "--runtime", rt,
                                 "--warmup", "2", "--iterations", str(iterations), *trust], runtime=rt, timeout=timeout)
        try:
            rep = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            problems.append(f"{rt}: the arm64 smoke test crashed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
            continue
        pre = rep.get("preprocessing")
        if pre is not None and not any(row["artifact"] == "pre-processing" for row in rows):
            # the same numpy code runs in every runtime's process: report it once
            if not pre["passed"]:
                problems.append(f"pre-processing: {pre['verdict']}")
            rows.append({"artifact": "pre-processing", "runtime": "numpy", "installed": True,
                         "passed": pre["passed"], "verdict": pre["verdict"]})
        for r in rep["results"]:
            if r.get("runtime") is None:  # an artifact this runtime could not load, or one for another runtime
                if r["artifact"] not in {a.name for a in arts}:
                    continue  # its own runtime's process runs it
                if not r["passed"]:
                    problems.append(f"{r['artifact']} ({rt}): {r['verdict']}")
                rows.append({"artifact": r["artifact"], "runtime": rt, "installed": True, "passed": r["passed"],
                             "verdict": r["verdict"]})
                continue
            art = next(a for a in arts if a.name == r["artifact"])
            exact_required = r["precision"] == "int8" and rt == r.get("host_runtime")
            if exact_required:
                # LiteRT's int8 kernels give bit-identical outputs on x86 and arm64. onnxruntime's can differ by
                # a step of the output's quantization (measured 0.088 on Fashion-MNIST logits): the float
                # ReduceMean between its int8 layers sums in another order on NEON than on AVX2.
                bound = INT8_STEP_FRACTION * r.get("host_range", 0.0)
                ok = r["max_abs_diff"] == 0.0 or (r["top1_agreement"] == 1.0 and r["max_abs_diff"] <= bound)
                verdict = ("bit-identical to the host" if r["max_abs_diff"] == 0.0 else
                           f"differs from the host by {r['max_abs_diff']:.2e} "
                           f"({'<=' if ok else '>'} {bound:.2e}, 1 % of the output range), "
                           f"top-1 agreement {r['top1_agreement']:.4f}")
            elif r["precision"] == "fp32":
                ok = r["max_abs_diff"] <= EMULATED_FLOAT_TOLERANCE
                verdict = f"max abs diff {r['max_abs_diff']:.1e} ({'<=' if ok else '>'} {EMULATED_FLOAT_TOLERANCE:.0e})"
            else:
                ok = r["passed"]
                verdict = r["verdict"]
            if not ok:
                problems.append(f"{art.name} on {rt}: {verdict}")
            rows.append({"artifact": art.name, "runtime": rt, "installed": True, "precision": r["precision"],
                         "max_abs_diff": r["max_abs_diff"], "top1_agreement": r["top1_agreement"],
                         "accuracy": r["accuracy"], "emulated_p50_ms": r["p50_ms"], "passed": ok, "verdict": verdict,
                         "versions": rep["environment"].get("versions", {})})
    report = {
        "schema": 1, "kind": "edgekit-emulated-check", "device": profile.name, "qemu_cpu": root.cpu,
        "bundle": str(bundle_dir), "signature": b.signature, "sysroot": f"Debian {DEBIAN_RELEASE} arm64, glibc {SYSROOT_GLIBC}, "
                                              f"Python {SYSROOT_PYTHON}",
        "approximations": list(root.approximations),
        "latency_note": "emulated_p50_ms is qemu-user on this x86 host: not a measurement of the device",
        "results": rows, "problems": problems, "passed": not problems and any(r["passed"] for r in rows),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    rundir.write_json(Path(bundle_dir).parent / f"emulated-report-{profile.name}.json", report)
    return report


def format_emulated(rep: dict) -> str:
    lines = [f"{rep['device']}: arm64 ({rep['qemu_cpu']}, emulated; {rep['sysroot']})"]
    lines += [f"  note: {a}" for a in rep["approximations"]]
    for r in rep["results"]:
        status = "n/a " if r["passed"] is None else ("ok  " if r["passed"] else "FAIL")
        lines.append(f"  {status} {r['artifact']:14} {r['runtime']:15} {r['verdict']}")
    lines.append(f"{'verified on arm64 (emulated)' if rep['passed'] else 'FAILED on arm64 (emulated)'} for "
                 f"{rep['device']} in {rep['seconds']} s" + ("" if rep["passed"] else ": " + "; ".join(rep["problems"])))
    return "\n".join(lines)
