"""Device profiles: one YAML file a target under ``devices/`` (in the wheel too: :mod:`edgekit.shipped`),
validated into frozen dataclasses.

A profile is data, like a recipe (``yaml.safe_load``, a ``schema:`` version, unknown keys rejected
with a close match; the checks are :func:`edgekit.recipe.from_dict`'s). It says what the device is
(architecture, CPU, memory, OS, glibc, Python), what it runs (formats, precisions, and the runtime
packages with the versions known to install there), how to reach it (ssh, adb, local) and what
sensors it has. ``bundle`` reads it to pack only what the device runs, ``deploy`` to reach and
install it, ``check`` to compare it with what a real device reports.

Device side: the standard library, pyyaml and numpy only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgekit.device.artifact import FORMATS, PRECISIONS
from edgekit.errors import ConfigError, DataError, close_matches
from edgekit.recipe import _check, content_dict, content_digest, from_dict
from edgekit.registry import Registry

SCHEMA_VERSION = 1
ARCHES = ("aarch64", "x86_64", "armv7l")
TRANSPORT_KINDS = ("ssh", "adb", "local")
# Runtimes a profile may name: edgekit's own (edgekit.device.runtime.RUNTIMES) plus TensorRT, which edgekit drives
# through NVIDIA's trtexec on the device rather than through a Python session.
RUNTIME_NAMES = ("onnxruntime", "litert", "tflite-runtime", "tensorrt")
PYTHON_MIN = (3, 10)  # edgekit's requires-python
DEVICES_ENV = "EDGEKIT_DEVICES"  # a folder of extra profiles; its files win over the shipped ones


@dataclass(frozen=True)
class CpuSpec:
    model: str  # e.g. "Cortex-A72"
    cores: int = field(metadata=_check(1, 1024))
    freq_mhz: int | None = field(default=None, metadata=_check(1, 10_000))  # top clock


@dataclass(frozen=True)
class OsSpec:
    name: str  # e.g. "Raspberry Pi OS 12 (bookworm), 64-bit"
    glibc: str | None = None  # "2.36"; None where the C library is not glibc (Android's bionic)
    python: str | None = None  # the Python the OS ships, "3.11"; None where there is none


@dataclass(frozen=True)
class RuntimeSpec:
    package: str | None = None  # pip package; None = it comes with the OS or SDK (TensorRT in JetPack)
    version: str = ""  # pip version specifier known to install there, e.g. ">=1.18,<1.24"
    formats: list = field(default_factory=list)  # model formats it runs here
    precisions: list = field(default_factory=list)  # precisions it runs here; [] = the device's precisions
    requires: list = field(default_factory=list)  # further pip requirements it needs there, e.g. "numpy<2"
    min_glibc: str | None = None  # the glibc its wheels need (manylinux_2_X tag = glibc 2.X)
    wheel: str = ""  # the wheel platform tag published on PyPI, for `pip download --platform`
    binary: str | None = None  # device path of its command-line tool (benchmark_model, trtexec)
    install: bool = True  # deploy pip-installs it into the device's environment
    note: str = ""

    def requirement(self) -> str | None:
        """The pip requirement string, e.g. ``"onnxruntime>=1.18"``; None when pip does not install it."""
        if not self.package or not self.install:
            return None
        return f"{self.package}{self.version}"


@dataclass(frozen=True)
class TransportSpec:
    kind: str = field(metadata=_check(choices=TRANSPORT_KINDS))
    host: str | None = None  # ssh: host name or address (user@host[:port] on the command line overrides)
    user: str | None = None  # ssh: login name; None = ssh's default
    port: int = field(default=22, metadata=_check(1, 65_535))  # ssh port
    serial: str | None = None  # adb: the device's serial (`adb devices`); None = the only one attached
    remote_dir: str = "~/edgekit"  # where bundles and the virtual environment go on the device
    python: str | None = "python3"  # the device's Python that creates the environment; None = none (Android)


@dataclass(frozen=True)
class CameraSpec:
    kind: str = field(default="none", metadata=_check(choices=("none", "usb", "csi", "builtin")))
    # What `edgekit demo camera --source` takes there: an index, a file or a URL. (Not named "source": that key is
    # reserved for the file a profile came from.)
    capture: str = "0"
    resolution: list = field(default_factory=lambda: [640, 480])  # width, height the demo asks for
    note: str = ""


@dataclass(frozen=True)
class MicrophoneSpec:
    kind: str = field(default="none", metadata=_check(choices=("none", "usb", "builtin", "i2s")))
    sample_rate: int = field(default=16_000, metadata=_check(8_000, 192_000))  # Hz the demo records at
    note: str = ""


@dataclass(frozen=True)
class Device:
    """One validated device profile."""

    schema: int
    name: str
    arch: str = field(metadata=_check(choices=ARCHES))
    cpu: CpuSpec
    memory_mb: int = field(metadata=_check(16, 16_000_000))  # RAM the OS sees
    os: OsSpec
    formats: list  # model formats the device runs: onnx, tflite
    precisions: list  # fp32, fp16, int8
    runtimes: dict[str, RuntimeSpec]  # name (edgekit.device.runtime.RUNTIMES or "tensorrt") -> what installs there
    transport: TransportSpec
    description: str = ""
    camera: CameraSpec = field(default_factory=CameraSpec)
    microphone: MicrophoneSpec = field(default_factory=MicrophoneSpec)
    qemu_cpu: str | None = None  # `qemu-aarch64 -cpu` model closest to the CPU, for emulated checks
    source: str = ""  # the file it came from (filled by load)

    def to_dict(self) -> dict:
        return content_dict(self)

    def digest(self) -> str:
        """A short hash of the validated content, recorded in bundles made for this device."""
        return content_digest(self)

    def runtimes_for(self, fmt: str, precision: str) -> list[str]:
        """The profile's runtimes that run ``fmt`` at ``precision`` here, in profile order."""
        if fmt not in self.formats or precision not in self.precisions:
            return []
        return [name for name, rt in self.runtimes.items()
                if fmt in rt.formats and precision in (rt.precisions or self.precisions)]


def shipped_dir() -> Path:
    """The folder of the profiles that come with edgekit: the checkout's ``devices/``, or the wheel's copy."""
    from edgekit import shipped

    return shipped.folder("devices")


def _devices_dirs() -> list[Path]:
    dirs = [shipped_dir()]
    if os.environ.get(DEVICES_ENV):
        dirs.append(Path(os.environ[DEVICES_ENV]))
    return dirs


def _registry() -> Registry:
    reg = Registry("device")
    for folder in _devices_dirs():
        for path in sorted(folder.glob("*.yaml")):
            reg.register(path.stem, path)  # a Path, not a "module:attr" string: Registry returns it as is
    return reg


DEVICES = _registry()


def load(name_or_path: str | Path) -> Device:
    """Read and validate a device profile.

    Args:
        name_or_path: a name in ``DEVICES`` (``rpi4``) or a YAML file.

    Returns:
        The validated Device.

    Raises:
        ConfigError: unknown name (with a close match), unreadable YAML, or a bad key or value (naming the
            file, the key path, the value and the valid choices).

    Example:
        >>> load("rpi5").runtimes_for("tflite", "int8")
        ['litert', 'tflite-runtime']
    """
    text = str(name_or_path)
    path = Path(text)
    if path.suffix in (".yaml", ".yml") or "/" in text:
        if not path.is_file():
            raise ConfigError(f"{path}: device profile not found")
    else:
        path = DEVICES.get(text, where="device")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return from_raw(raw, str(path), stem=path.stem)


def from_raw(raw: object, file: str, *, stem: str | None = None) -> Device:
    """Validate a parsed profile; ``stem`` (the file name) must equal its ``name`` when given."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: is empty" if raw is None else f"{file}: expected a mapping at the top level, got {type(raw).__name__}")
    if "schema" not in raw:
        raise ConfigError(f"{file}: missing 'schema' (this edgekit reads device schema {SCHEMA_VERSION})")
    if raw["schema"] != SCHEMA_VERSION:
        raise ConfigError(f"{file}: schema {raw['schema']!r} is not supported (this edgekit reads {SCHEMA_VERSION})")
    dev = from_dict(Device, raw, file, "")
    if stem is not None and dev.name != stem:
        raise ConfigError(f"{file}: name '{dev.name}' differs from the file name; call it '{stem}'")
    _check_items(dev.formats, FORMATS, file, "formats")
    _check_items(dev.precisions, PRECISIONS, file, "precisions")
    runtimes = {}
    for name, spec in dev.runtimes.items():
        where = f"runtimes.{name}"
        if name not in RUNTIME_NAMES:
            raise ConfigError(f"{file}: unknown runtime '{name}' at {where}.{close_matches(name, RUNTIME_NAMES)} "
                              f"Choices: {', '.join(RUNTIME_NAMES)}")
        rt = from_dict(RuntimeSpec, spec, file, where)
        if rt.version:
            from packaging.specifiers import InvalidSpecifier, SpecifierSet

            try:
                SpecifierSet(rt.version)
            except InvalidSpecifier:
                raise ConfigError(f"{file}: {where}.version = {rt.version!r} is not a pip version specifier "
                                  f"(e.g. '>=1.18,<1.24')") from None
        _check_items(rt.formats, dev.formats, file, f"{where}.formats")
        _check_items(rt.precisions, dev.precisions, file, f"{where}.precisions")
        if not rt.formats:
            raise ConfigError(f"{file}: {where}.formats is empty; name the formats it runs ({', '.join(dev.formats)})")
        for version in (rt.min_glibc, dev.os.glibc):
            if version is not None and not re.fullmatch(r"\d+\.\d+", str(version)):
                raise ConfigError(f"{file}: glibc version {version!r} is not MAJOR.MINOR, e.g. '2.36'")
        runtimes[name] = rt
    if not runtimes:
        raise ConfigError(f"{file}: runtimes is empty; name at least one of {', '.join(RUNTIME_NAMES)}")
    if dev.camera.resolution and (len(dev.camera.resolution) != 2
                                  or not all(isinstance(v, int) and v > 0 for v in dev.camera.resolution)):
        raise ConfigError(f"{file}: camera.resolution = {dev.camera.resolution!r}: expected [width, height]")
    return dataclasses.replace(dev, runtimes=runtimes, source=file)


def _check_items(values: list, choices: tuple | list, file: str, where: str) -> None:
    for v in values:
        if v not in choices:
            raise ConfigError(f"{file}: {where} = {v!r}: must be one of {', '.join(map(str, choices))}."
                              f"{close_matches(v, choices)}")


# ---------------------------------------------------------------------------------------------- checking a device

# Runs on the device with the standard library alone: what Python, C library, CPU and packages it has.
PROBE = (
    "import json,os,platform,sys\n"
    "from importlib import metadata as m\n"
    "def v(n):\n try: return m.version(n)\n except Exception: return None\n"
    "try: g=os.confstr('CS_GNU_LIBC_VERSION').split()[-1]\nexcept Exception: g=None\n"
    "try: mem=int(open('/proc/meminfo').readline().split()[1])//1024\nexcept Exception: mem=None\n"
    "print(json.dumps({'python':platform.python_version(),'executable':sys.executable,'machine':platform.machine(),"
    "'system':platform.system(),'platform':platform.platform(),'glibc':g,'cpus':os.cpu_count(),'memory_mb':mem,"
    "'packages':{n:v(n) for n in json.loads(sys.argv[1])}}))"
)


@dataclass(frozen=True)
class CheckRow:
    """One line of a device check: what the profile says, what was found, and the verdict."""

    item: str
    expected: str
    found: str
    verdict: str  # "ok", "warn" (differs but works) or "FAIL"


@dataclass(frozen=True)
class DeviceCheck:
    device: str
    target: str  # where it connected: "local", "user@host:port", "adb:serial"
    rows: list[CheckRow]
    probes: dict  # python label -> what the probe reported

    @property
    def passed(self) -> bool:
        return all(r.verdict != "FAIL" for r in self.rows)


def probe_packages(device: Device) -> list[str]:
    pkgs = {"edgekit", "numpy", "opencv-python-headless"}
    for rt in device.runtimes.values():
        if rt.package:
            pkgs.add(rt.package)
    return sorted(pkgs)


def check(device: Device | str, *, host: str | None = None, ssh_options: tuple[str, ...] = (),
          python: str | None = None, timeout: float = 60) -> DeviceCheck:
    """Connect to a device and compare what it has with its profile.

    Runs a standard-library probe with the device's Python (and with the environment ``edgekit deploy``
    made there, when one exists): Python version, architecture, glibc, memory, and the installed version
    of every runtime package the profile names, each checked against the profile's version specifier.

    Args:
        device: a Device or a profile name.
        host: ``user@host[:port]`` to reach it over ssh instead of the profile's transport.
        ssh_options: extra ssh arguments, e.g. ``("-i", "key", "-o", "UserKnownHostsFile=kh")``.
        python: the device's Python, instead of the profile's ``transport.python``.
        timeout: seconds for each probe.

    Returns:
        A DeviceCheck; ``passed`` is False when the architecture differs, Python is older than edgekit
        needs, glibc is older than a runtime's wheels need, or an installed runtime misses its version spec.
        Runtimes that are merely not installed yet are reported, not failed (``edgekit deploy`` installs them).

    Raises:
        DataError: the device cannot be reached or the probe fails (the message has ssh's own words).
        ConfigError: the profile has no Python to probe with (Android over adb).
    """
    from edgekit.deploy.transports import transport_for

    dev = load(device) if isinstance(device, str) else device
    tr = transport_for(dev, host=host, ssh_options=ssh_options)
    base = python or dev.transport.python
    if not base:
        raise ConfigError(f"{dev.name}: the profile names no Python on the device (transport.python); "
                          f"check it with: {shlex.join(tr.shell('getprop ro.product.cpu.abi'))}")
    pkgs = probe_packages(dev)
    probes = {"system python": _probe(tr, base, pkgs, timeout, required=True)}
    venv_python = f"{dev.transport.remote_dir.rstrip('/')}/venv/bin/python"
    found = _probe(tr, venv_python, pkgs, timeout, required=False)
    if found is not None:
        probes["edgekit environment"] = found
    return DeviceCheck(dev.name, tr.describe(), compare(dev, probes), probes)


def _probe(tr, python: str, pkgs: list[str], timeout: float, *, required: bool) -> dict | None:
    from edgekit.deploy.transports import remote_path

    cmd = f"{remote_path(python)} -c {shlex.quote(PROBE)} {shlex.quote(json.dumps(pkgs))}"
    if not required:  # the environment may not exist yet: ask quietly
        cmd = f"test -x {remote_path(python)} && {cmd} || true"
    try:
        proc = subprocess.run(tr.shell(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"{tr.describe()}: cannot run the probe ({exc})") from None
    out = proc.stdout.strip()
    if proc.returncode != 0 or (required and not out):
        err = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise DataError(f"{tr.describe()}: probing {python} failed: {err}")
    if not out:
        return None
    try:
        return json.loads(out.splitlines()[-1])
    except ValueError:
        raise DataError(f"{tr.describe()}: the probe printed no JSON: {out[-200:]!r}") from None


def compare(dev: Device, probes: dict[str, dict]) -> list[CheckRow]:
    """Check rows for what the probes found against the profile (pure: no connection)."""
    base = probes["system python"]
    rows = [
        CheckRow("architecture", dev.arch, str(base.get("machine")),
                 "ok" if _same_arch(dev.arch, base.get("machine")) else "FAIL"),
    ]
    py = base.get("python") or "?"
    pyv = _vtuple(py)
    verdict = "FAIL" if pyv[:2] < PYTHON_MIN else ("ok" if dev.os.python is None
                                                  or pyv[:2] == _vtuple(dev.os.python)[:2] else "warn")
    rows.append(CheckRow("python", f"{dev.os.python or 'any'} (edgekit needs >= {'.'.join(map(str, PYTHON_MIN))})",
                         f"{py} ({base.get('executable')})", verdict))
    glibc = base.get("glibc")
    rows.append(CheckRow("glibc", str(dev.os.glibc), str(glibc),
                         "ok" if glibc and dev.os.glibc and _vtuple(glibc) >= _vtuple(dev.os.glibc)
                         else ("ok" if dev.os.glibc is None else "warn")))
    if base.get("memory_mb"):
        ratio = base["memory_mb"] / dev.memory_mb
        rows.append(CheckRow("memory", f"{dev.memory_mb} MB", f"{base['memory_mb']} MB",
                             "ok" if 0.8 <= ratio <= 1.25 else "warn"))
    cpus = base.get("cpus")
    rows.append(CheckRow("cpu cores", str(dev.cpu.cores), str(cpus), "ok" if cpus == dev.cpu.cores else "warn"))
    for name, rt in dev.runtimes.items():
        if rt.min_glibc:
            ok = glibc is not None and _vtuple(glibc) >= _vtuple(rt.min_glibc)
            rows.append(CheckRow(f"{name} needs glibc", f">= {rt.min_glibc}", str(glibc), "ok" if ok else "FAIL"))
        if not rt.package:
            continue
        for label, found in probes.items():
            have = (found.get("packages") or {}).get(rt.package)
            want = f"{rt.package}{rt.version}"
            if have is None:  # deploy installs one runtime per format: a missing one is news, not a failure
                note = "not installed" + (f" (edgekit deploy --runtime {name} installs it)" if rt.install else "")
                rows.append(CheckRow(f"{name} [{label}]", want, note, "warn"))
            else:
                rows.append(CheckRow(f"{name} [{label}]", want, have,
                                     "ok" if version_satisfies(have, rt.version) else "FAIL"))
    if "edgekit environment" in probes:
        from edgekit import __version__

        have = probes["edgekit environment"].get("packages", {}).get("edgekit")
        rows.append(CheckRow("edgekit [edgekit environment]", __version__, str(have),
                             "ok" if have == __version__ else "warn"))
    return rows


def _same_arch(profile: str, machine: str | None) -> bool:
    aliases = {"aarch64": {"aarch64", "arm64"}, "x86_64": {"x86_64", "amd64"}, "armv7l": {"armv7l", "armv7"}}
    return (machine or "").lower() in aliases.get(profile, {profile})


def _vtuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts) or (0,)


def version_satisfies(version: str, spec: str) -> bool:
    """Whether ``version`` meets a pip specifier like ``">=1.18,<1.24"``, as pip decides it (``packaging``).

    A version that is not PEP 440 (a vendor build string) satisfies nothing but an empty specifier.

    Raises:
        ConfigError: the specifier itself is malformed (profiles are checked for this when loaded).
    """
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    if not spec.strip():
        return True
    try:
        specifier = SpecifierSet(spec)
    except InvalidSpecifier:
        raise ConfigError(f"version specifier {spec!r} is not valid (expected e.g. '>=1.18,<1.24')") from None
    try:
        return specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def describe(dev: Device) -> str:
    """A readable multi-line summary of a profile, for ``edgekit devices show``."""
    lines = [f"{dev.name}: {dev.description}", f"  file:        {dev.source}",
             f"  arch:        {dev.arch}, {dev.cpu.cores}x {dev.cpu.model}"
             + (f" @ {dev.cpu.freq_mhz} MHz" if dev.cpu.freq_mhz else ""),
             f"  memory:      {dev.memory_mb} MB",
             f"  os:          {dev.os.name} (glibc {dev.os.glibc or 'none'}, python {dev.os.python or 'none'})",
             f"  formats:     {', '.join(dev.formats)}; precisions: {', '.join(dev.precisions)}",
             "  runtimes:"]
    for name, rt in dev.runtimes.items():
        req = rt.requirement() or (f"{rt.binary} (not pip-installed)" if rt.binary else "comes with the OS")
        extra = f" + {', '.join(rt.requires)}" if rt.requires else ""
        glibc = f"; glibc >= {rt.min_glibc}" if rt.min_glibc else ""
        wheel = f"; wheels {rt.wheel}" if rt.wheel else ""
        lines.append(f"    {name:15} {req}{extra} [{', '.join(rt.formats)}]{glibc}{wheel}")
        if rt.note:
            lines.append(f"    {'':15} {rt.note}")
    t = dev.transport
    where = {"ssh": f"ssh {t.user + '@' if t.user else ''}{t.host or '<--host>'}:{t.port}",
             "adb": f"adb{' -s ' + t.serial if t.serial else ''}", "local": "this machine"}[t.kind]
    lines += [f"  transport:   {where}, files in {t.remote_dir}, python {t.python or 'none'}",
              f"  camera:      {dev.camera.kind} (--source {dev.camera.capture}, {dev.camera.resolution[0]}x"
              f"{dev.camera.resolution[1]}){' - ' + dev.camera.note if dev.camera.note else ''}",
              f"  microphone:  {dev.microphone.kind} ({dev.microphone.sample_rate} Hz)"
              f"{' - ' + dev.microphone.note if dev.microphone.note else ''}",
              f"  qemu cpu:    {dev.qemu_cpu or 'n/a'}"]
    return "\n".join(lines)


__all__ = ["DEVICES", "CheckRow", "Device", "DeviceCheck", "check", "compare", "describe", "load", "version_satisfies"]
