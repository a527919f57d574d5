"""How edgekit reaches a device: argument lists for OpenSSH, adb, or this machine's ``sh``.

A transport only builds argument lists (never one shell string with names pasted in); the deploy
plan runs them with ``subprocess``. Commands that run *on* the device are POSIX ``sh`` strings whose
every path is quoted with :func:`remote_path` (``shlex.quote``, with a leading ``~/`` kept as
``"$HOME"/``), because ssh and adb hand the device's shell one string.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import ConfigError, EdgekitError
from edgekit.registry import Registry

# ssh options edgekit always sets. They come before the user's own options because ssh keeps the first value
# it reads for an option: host-key checking stays on whatever else is passed.
SSH_FIXED = ("-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]")


def remote_path(path: str) -> str:
    """Quote a device path for the device's shell; ``~`` and ``~/x`` become ``"$HOME"`` and ``"$HOME"/'x'``."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def flag_path(flag: str, path: str) -> str:
    """``--flag=PATH`` as one shell word, e.g. ``--onnx="$HOME"/'b/model.onnx'``."""
    return shlex.quote(f"{flag}=") + remote_path(path)


@dataclass(frozen=True)
class Step:
    """One command of a deploy plan.

    Attributes:
        name: what it does, e.g. "copy bundle".
        argv: the argument list run on this machine (ssh/adb/sh and their arguments).
        upload: (local file, name in the archive) pairs streamed to the command's stdin as one tar archive.
        capture: keep the command's stdout under this key of the results.
        ok_codes: exit statuses that do not stop the plan (a failed smoke test exits 1 and still reports).
        timeout: seconds.
    """

    name: str
    argv: tuple[str, ...]
    upload: tuple[tuple[str, str], ...] = ()
    capture: str | None = None
    ok_codes: tuple[int, ...] = (0,)
    timeout: float = 1800.0

    def render(self) -> str:
        """The command as one copy-pasteable line (what --dry-run prints)."""
        text = shlex.join(self.argv)
        if self.upload:
            text += f"  < tar of {len(self.upload)} file(s): " + ", ".join(a for _, a in self.upload[:6])
            text += ", ..." if len(self.upload) > 6 else ""
        return text


@dataclass(frozen=True)
class Transport:
    """Base: runs device commands and copies folders there."""

    kind = "base"
    python_capable = True  # runs edgekit's Python smoke test there (adb: a benchmark binary instead)

    def describe(self) -> str:
        raise NotImplementedError

    def shell(self, command: str) -> list[str]:
        """The argv that runs ``command`` (a POSIX sh string) on the device."""
        raise NotImplementedError

    def upload_dir(self, name: str, files: list[tuple[Path, str]], dest: str) -> list[Step]:
        """Steps that replace the device folder ``dest`` with ``files`` ((local file, relative name) pairs).

        The files land in ``dest.partial`` first and are renamed over ``dest`` at the end, so an interrupted
        copy never leaves a folder that looks complete.
        """
        tmp = dest.rstrip("/") + ".partial"
        cmd = (f"rm -rf {remote_path(tmp)} && mkdir -p {remote_path(tmp)} && tar -xf - -C {remote_path(tmp)} && "
               f"rm -rf {remote_path(dest)} && mv {remote_path(tmp)} {remote_path(dest)}")
        return [Step(name, tuple(self.shell(cmd)), upload=tuple((str(p), a) for p, a in files))]


@dataclass(frozen=True)
class LocalTransport(Transport):
    """This machine, through ``sh -c`` (the same commands as over ssh, without the network)."""

    kind = "local"

    def describe(self) -> str:
        return "local"

    def shell(self, command: str) -> list[str]:
        return ["sh", "-c", command]


@dataclass(frozen=True)
class SshTransport(Transport):
    """OpenSSH's ``ssh`` with host-key checking on and no password prompts (keys or an agent)."""

    host: str
    user: str | None = None
    port: int = 22
    options: tuple[str, ...] = field(default=())  # extra ssh arguments: -i KEY, -o UserKnownHostsFile=...

    kind = "ssh"

    def __post_init__(self):
        if not _HOST.fullmatch(self.host):
            raise ConfigError(f"ssh host {self.host!r} is not a host name or address")
        if self.user is not None and not _USER.fullmatch(self.user):
            raise ConfigError(f"ssh user {self.user!r} is not a valid login name")
        if not 1 <= int(self.port) <= 65535:
            raise ConfigError(f"ssh port {self.port} is outside 1..65535")

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def describe(self) -> str:
        return f"{self.destination}:{self.port}"

    def base(self) -> list[str]:
        # "--" ends ssh's options: a destination can never be read as one.
        return ["ssh", *SSH_FIXED, *self.options, "-p", str(self.port), "--", self.destination]

    def shell(self, command: str) -> list[str]:
        return [*self.base(), command]


@dataclass(frozen=True)
class AdbTransport(Transport):
    """Android Debug Bridge: ``adb [-s SERIAL] shell|push|pull``."""

    serial: str | None = None

    kind = "adb"
    python_capable = False

    def __post_init__(self):
        if self.serial is not None and (self.serial.startswith("-")
                                        or not re.fullmatch(r"[A-Za-z0-9._:-]+", self.serial)):
            raise ConfigError(f"adb serial {self.serial!r} is not a device serial (see `adb devices`)")

    def describe(self) -> str:
        return f"adb:{self.serial or 'the attached device'}"

    def base(self) -> list[str]:
        return ["adb", *(["-s", self.serial] if self.serial else [])]

    def shell(self, command: str) -> list[str]:
        # adb joins its arguments into one string for the device's sh: pass exactly one, already quoted.
        return [*self.base(), "shell", command]

    def push(self, local: Path | str, remote: str) -> list[str]:
        return [*self.base(), "push", str(local), remote]  # adb's sync protocol: no shell, no quoting

    def pull(self, remote: str, local: Path | str) -> list[str]:
        return [*self.base(), "pull", remote, str(local)]

    def upload_dir(self, name: str, files: list[tuple[Path, str]], dest: str) -> list[Step]:
        """adb push of a folder (``files`` must all lie in one local folder, keeping their relative names)."""
        roots = {str(p)[: len(str(p)) - len(a)].rstrip("/") for p, a in files}
        if len(roots) != 1:
            raise ConfigError("adb uploads one local folder at a time")
        tmp = dest.rstrip("/") + ".partial"
        parent = dest.rstrip("/").rsplit("/", 1)[0] or "/"
        return [
            Step(f"{name}: prepare", tuple(self.shell(f"rm -rf {remote_path(tmp)} && mkdir -p {remote_path(parent)}"))),
            Step(f"{name}: push", tuple(self.push(roots.pop(), tmp))),
            Step(f"{name}: move into place",
                 tuple(self.shell(f"rm -rf {remote_path(dest)} && mv {remote_path(tmp)} {remote_path(dest)}"))),
        ]


def parse_host(text: str) -> tuple[str | None, str, int | None]:
    """Split ``user@host[:port]`` (IPv6 as ``[::1]:2222``) into (user, host, port).

    Raises:
        ConfigError: an empty part, a bad port, or anything that could be read as an option.
    """
    m = re.fullmatch(r"(?:([^@\s]+)@)?(\[[^\]]+\]|[^:@\s]+)(?::(\d+))?", text.strip())
    if not m or text.strip().startswith("-"):
        raise ConfigError(f"--host {text!r}: expected user@host[:port], e.g. pi@raspberrypi.local or root@127.0.0.1:2222")
    user, host, port = m.group(1), m.group(2), m.group(3)
    return user, host, int(port) if port else None


class DeployError(EdgekitError):
    """A device could not be reached, or a command on it failed; the message has the command's own words."""



TRANSPORTS = Registry("transport")
TRANSPORTS.register("ssh", SshTransport)
TRANSPORTS.register("adb", AdbTransport)
TRANSPORTS.register("local", LocalTransport)



def transport_for(dev, *, host: str | None = None, ssh_options: tuple[str, ...] | list[str] = ()) -> Transport:
    """The transport that reaches ``dev``: its profile's, or ssh to ``host`` (``user@host[:port]``).

    For an adb profile ``host`` is the device serial. A local profile given a host is reached over ssh.

    Raises:
        ConfigError: an ssh profile without a host and no ``host``; a malformed host; ssh options for adb.
    """
    t = dev.transport
    kind = "ssh" if host and t.kind == "local" else t.kind
    cls = TRANSPORTS.get(kind, where=f"{dev.name}: transport.kind")
    if cls is AdbTransport:
        if ssh_options:
            raise ConfigError(f"{dev.name} is reached over adb: ssh options do not apply")
        return cls(serial=host or t.serial)
    if cls is LocalTransport:
        return cls()
    if host:
        user, name, port = parse_host(host)
    elif t.host:
        user, name, port = t.user, t.host, t.port
    else:
        raise ConfigError(f"{dev.name}: the profile names no host (transport.host): pass --host user@host[:port]")
    return cls(host=name, user=user or t.user, port=port or t.port, options=tuple(ssh_options))


__all__ = ["TRANSPORTS", "AdbTransport", "DeployError", "LocalTransport", "SshTransport", "Step", "Transport",
           "flag_path", "parse_host", "remote_path", "transport_for"]
