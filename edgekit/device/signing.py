"""Signed bundles: who made a bundle, not only that it arrived whole.

The manifest's sha256 digest covers every file of a bundle, so a changed byte is caught; but anyone
who can write to the device's folder can change a file *and* recompute the digest. An Ed25519
signature over the digest, checked against public keys the device owner chose to trust, closes that:
a bundle runs only when one of those keys signed exactly this manifest.

Files, all PEM so that ``openssl pkey`` reads them too:

    <keys>/NAME.key              private key (PKCS#8, mode 0600): signs bundles; never leaves the host
    <keys>/NAME.pub              its public key (SubjectPublicKeyInfo): give it to devices
    <trusted>/*.pub              the public keys this machine accepts bundles from
    BUNDLE/signature.json        key id, key name, the manifest digest, the signature (base64)

``<keys>`` is ``$EDGEKIT_HOME/keys`` and ``<trusted>`` is ``$EDGEKIT_TRUSTED_KEYS`` or
``$EDGEKIT_HOME/trusted-keys``; ``$EDGEKIT_HOME`` defaults to ``~/.config/edgekit``. A key id is the
first 16 hex digits of the sha256 of the raw 32-byte public key.

Like Android's debug keystore, a machine that bundles without naming a key signs with its own
``default`` key, made on first use and trusted on this machine only: bundles made here run here,
and a device trusts them once ``edgekit deploy`` (or ``edgekit keys trust``) installs the public key.

Device side: the ``cryptography`` package (a base dependency; no torch).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgekit import rundir
from edgekit.errors import ConfigError, DataError, MissingDependency

SIGNATURE = "signature.json"
KIND = "edgekit-bundle-signature"
SCHEMA = 1
DEFAULT_KEY = "default"
# What is signed: a domain prefix, so that a signature made for a bundle means nothing anywhere else.
_CONTEXT = b"edgekit-bundle-signature-v1\n"


def home() -> Path:
    """edgekit's per-user folder: ``$EDGEKIT_HOME``, else ``$XDG_CONFIG_HOME/edgekit``, else ``~/.config/edgekit``."""
    if os.environ.get("EDGEKIT_HOME"):
        return Path(os.environ["EDGEKIT_HOME"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "edgekit"


def keys_dir() -> Path:
    return home() / "keys"


def trusted_dir() -> Path:
    """The folder of trusted public keys: ``$EDGEKIT_TRUSTED_KEYS``, else ``<home>/trusted-keys``."""
    return Path(os.environ["EDGEKIT_TRUSTED_KEYS"]) if os.environ.get("EDGEKIT_TRUSTED_KEYS") else home() / "trusted-keys"


@dataclass(frozen=True)
class Policy:
    """What a device accepts.

    Attributes:
        allow_unsigned: run a bundle that is unsigned, or signed by a key that is not trusted, or whose
            signature does not verify (the checksums still must pass); the report says so.
        trusted: the trusted-keys folder (None: :func:`trusted_dir`).
    """

    allow_unsigned: bool = False
    trusted: Path | None = None


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key and the file it came from."""

    raw: bytes
    name: str
    path: Path | None = None

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:16]


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MissingDependency("bundle signatures need the cryptography package: pip install cryptography") from None
    return serialization, ed25519


def _raw(public) -> bytes:
    serialization, _ = _crypto()
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def new_key(name: str = DEFAULT_KEY, folder: str | Path | None = None, *, trust: bool = True,
            overwrite: bool = False) -> tuple[Path, PublicKey]:
    """Make an Ed25519 key pair: ``NAME.key`` (mode 0600) and ``NAME.pub`` in ``folder``.

    Args:
        name: file stem; letters, digits, ``-``, ``_`` and ``.``.
        folder: where to write (default: :func:`keys_dir`).
        trust: also put the public key in this machine's trusted-keys folder (you trust what you sign here).
        overwrite: replace an existing key of that name (refused otherwise: a lost key cannot be recovered).

    Returns:
        The private key's path and the public key.
    """
    serialization, ed25519 = _crypto()
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ConfigError(f"key name {name!r}: use letters, digits, '-', '_' and '.'")
    folder = Path(folder) if folder is not None else keys_dir()
    key_path, pub_path = folder / f"{name}.key", folder / f"{name}.pub"
    if key_path.exists() and not overwrite:
        raise ConfigError(f"{key_path}: exists; choose another name (a replaced key cannot be recovered)")
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    folder.mkdir(parents=True, exist_ok=True)
    _write_private(key_path, pem)
    pub_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    rundir.write_bytes(pub_path, pub_pem)
    public = PublicKey(_raw(private.public_key()), name, pub_path)
    if trust:
        trust_key(pub_path)
    return key_path, public


def _write_private(path: Path, pem: bytes) -> None:
    """Written 0600 from the first byte (never briefly readable by others), then renamed into place."""
    tmp = path.with_name(f".{path.name}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def find_key(spec: str | Path) -> Path:
    """A private key file: a path, or the name of one in :func:`keys_dir` (``release`` -> keys/release.key)."""
    p = Path(spec)
    if p.is_file():
        return p
    named = keys_dir() / f"{spec}.key"
    if named.is_file():
        return named
    have = sorted(k.stem for k in keys_dir().glob("*.key")) if keys_dir().is_dir() else []
    raise ConfigError(f"{spec}: no such key file, and no key of that name in {keys_dir()} "
                      f"({'have: ' + ', '.join(have) if have else 'none there'}); make one with: edgekit keys new NAME")


def load_private(path: str | Path):
    """The Ed25519 private key in a PEM file (DataError naming the file when it is anything else)."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: not an unencrypted PEM private key ({_reason(exc)})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise DataError(f"{path}: a {type(key).__name__.lstrip('_')}, not an Ed25519 key (make one: edgekit keys new)")
    return key


def load_public(path: str | Path) -> PublicKey:
    """The Ed25519 public key in a PEM file (a private key file gives its public half)."""
    serialization, ed25519 = _crypto()
    path = Path(path)
    data = path.read_bytes()
    try:
        if b"PRIVATE KEY" in data:
            key = load_private(path).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise DataError(f"{path}: not a PEM public key ({_reason(exc)})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise DataError(f"{path}: not an Ed25519 public key")
    return PublicKey(_raw(key), path.stem, path)


def _reason(exc: BaseException) -> str:
    """cryptography's message up to its first sentence (the rest is a URL and OpenSSL's error stack)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split(". ")[0].rstrip(".")


def public_pem(key: PublicKey) -> bytes:
    serialization, ed25519 = _crypto()
    return ed25519.Ed25519PublicKey.from_public_bytes(key.raw).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def trust_key(path: str | Path, folder: str | Path | None = None) -> Path:
    """Add a public key to a trusted-keys folder as ``<name>-<key id>.pub``; returns the file written."""
    key = load_public(path)
    folder = Path(folder) if folder is not None else trusted_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for have in folder.glob("*.pub"):
        try:
            if load_public(have).raw == key.raw:
                return have
        except DataError:
            continue
    return rundir.write_bytes(folder / f"{key.name}-{key.key_id}.pub", public_pem(key))


def trusted_keys(folder: str | Path | None = None) -> dict[str, PublicKey]:
    """The trusted public keys by key id (unreadable files are skipped: they trust nothing)."""
    folder = Path(folder) if folder is not None else trusted_dir()
    keys = {}
    if folder.is_dir():
        for p in sorted(folder.glob("*.pub")):
            try:
                k = load_public(p)
            except (DataError, OSError):
                continue
            keys[k.key_id] = k
    return keys


def default_key() -> Path:
    """This machine's default signing key, made (and trusted here) on first use."""
    path = keys_dir() / f"{DEFAULT_KEY}.key"
    if not path.is_file():
        new_key(DEFAULT_KEY, trust=True)
    return path


def sign(bundle_dir: str | Path, digest: str, key_path: str | Path) -> dict:
    """Write ``signature.json`` into a bundle folder: the key's Ed25519 signature of the manifest digest."""
    private = load_private(key_path)
    public = PublicKey(_raw(private.public_key()), Path(key_path).stem)
    sig = {"kind": KIND, "schema": SCHEMA, "algorithm": "ed25519", "key_id": public.key_id, "key_name": public.name,
           "manifest_digest": digest,
           "signature": base64.b64encode(private.sign(_CONTEXT + digest.encode())).decode()}
    rundir.write_json(Path(bundle_dir) / SIGNATURE, sig)
    return sig


def check(bundle_dir: str | Path, digest: str, policy: Policy | None = None) -> dict:
    """Verify a bundle's signature against the trusted keys; the result goes into reports.

    Args:
        bundle_dir: the bundle folder.
        digest: its manifest's digest (already checked against the manifest).
        policy: what to accept (default: signed by a trusted key only).

    Returns:
        ``{"status": "verified", "key_id", "key_name"}``, or with ``allow_unsigned`` a status of
        ``"unsigned"``, ``"untrusted"`` or ``"invalid"``, ``"allowed": True`` and the reason.

    Raises:
        DataError: the signature is missing, unreadable, by a key not trusted here, or does not verify
            (one line naming the bundle and the key id), unless the policy allows unsigned bundles.
    """
    policy = policy or Policy()
    root = Path(bundle_dir)
    folder = Path(policy.trusted) if policy.trusted is not None else trusted_dir()
    status, reason, key_id, name = _status(root, digest, folder)
    if status == "verified":
        return {"status": status, "key_id": key_id, "key_name": name}
    if not policy.allow_unsigned:
        raise DataError(f"{root}: refused: {reason}; or pass --allow-unsigned to run it anyway")
    return {"status": status, "allowed": True, "key_id": key_id, "reason": reason}


def _status(root: Path, digest: str, folder: Path) -> tuple[str, str, str | None, str | None]:
    path = root / SIGNATURE
    if not path.is_file():
        return ("unsigned", f"the bundle is unsigned (no {SIGNATURE}); sign it: edgekit bundle RUN --device NAME "
                            "--out DIR --sign KEY", None, None)
    try:
        sig = json.loads(path.read_text(encoding="utf-8"))
        key_id, name = str(sig["key_id"]), str(sig.get("key_name", "?"))
        raw_sig = base64.b64decode(sig["signature"], validate=True)
        if sig.get("kind") != KIND or sig.get("algorithm") != "ed25519":
            raise ValueError("not an Ed25519 bundle signature")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        return "invalid", f"{SIGNATURE} is unreadable ({type(exc).__name__}: {str(exc)[:120]})", None, None
    if sig.get("manifest_digest") != digest:
        return "invalid", f"{SIGNATURE} (key {key_id}) signs another manifest than this one", key_id, name
    keys = trusted_keys(folder)
    if key_id not in keys:
        return ("untrusted", f"signed by key {key_id} ({name}), which is not trusted here ({folder}); trust it: "
                             f"edgekit keys trust {name}.pub", key_id, name)
    _, ed25519 = _crypto()
    from cryptography.exceptions import InvalidSignature

    try:
        ed25519.Ed25519PublicKey.from_public_bytes(keys[key_id].raw).verify(raw_sig, _CONTEXT + digest.encode())
    except InvalidSignature:
        return "invalid", f"the signature by key {key_id} ({name}) does not verify (the bundle changed after " \
                          "signing)", key_id, name
    return "verified", "", key_id, name


def describe(sig: dict) -> str:
    """One line for reports: who signed, or why it runs anyway."""
    if sig.get("status") == "verified":
        return f"signature: verified, key {sig.get('key_name')} ({sig.get('key_id')})"
    return f"signature: NOT verified ({sig.get('status')}: {sig.get('reason')}); allowed by --allow-unsigned"


__all__ = ["Policy", "PublicKey", "SIGNATURE", "check", "default_key", "describe", "find_key", "home", "keys_dir",
           "load_private", "load_public", "new_key", "sign", "trust_key", "trusted_dir", "trusted_keys"]
