"""The self-signed certificate of ``edgekit demo web --https``: a phone on the LAN gets a secure context.

Browsers give a page the camera and the microphone only in a secure context: ``http://localhost`` (what
``adb reverse`` provides) or HTTPS. On a LAN, without adb, ``--https`` serves with a certificate that edgekit
makes once per machine and keeps in ``$EDGEKIT_HOME/web-tls/`` (so a phone that accepted it keeps accepting
it), valid for ``localhost``, this machine's name and the addresses it is asked to serve on. The phone shows a
warning for a self-signed certificate; comparing the SHA-256 fingerprint edgekit prints with the one the
browser shows proves it is this server's.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from edgekit.device.signing import home
from edgekit.errors import DataError


def _names(host: str) -> list[str]:
    names = {"localhost", "127.0.0.1", socket.gethostname()}
    if host not in ("0.0.0.0", "::", ""):
        names.add(host)
    try:  # the address other machines reach this one by (no packet is sent: UDP connect picks a route)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            names.add(s.getsockname()[0])
    except OSError:
        pass
    return sorted(names)


def _covers(cert_pem: bytes, names: list[str]) -> bool:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    if cert.not_valid_after_utc < datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = set(san.get_values_for_type(x509.DNSName)) | {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return set(names) <= have


def certificate(host: str, folder: Path | None = None) -> tuple[Path, Path, str]:
    """(cert.pem, key.pem, SHA-256 fingerprint "AB:CD:..."), made (or remade, when it no longer covers the
    names or expires within a day) in ``folder`` (default ``$EDGEKIT_HOME/web-tls``). Writes are atomic."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = folder or home() / "web-tls"
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    names = _names(host)
    if not (cert_path.is_file() and key_path.is_file() and _covers(cert_path.read_bytes(), names)):
        folder.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        alt = []
        for n in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgekit demo web")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), mode=0o600)
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    return cert_path, key_path, ":".join(fingerprint[i:i + 2] for i in range(0, len(fingerprint), 2))


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise DataError(f"{cert}: cannot use this certificate ({exc}); delete {cert.parent} and run again") from None
    return ctx
