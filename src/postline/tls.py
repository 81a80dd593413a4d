"""TLS material for postline's servers: configured PEM files or a self-signed pair."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from postline.errors import ConfigError

__all__ = ["ensure_self_signed", "load_server_context", "self_signed_paths", "server_context"]


def self_signed_paths(directory: Path) -> tuple[Path, Path]:
    """Where :func:`ensure_self_signed` keeps its certificate and key."""
    return directory / "tls-selfsigned.crt", directory / "tls-selfsigned.key"


def ensure_self_signed(directory: Path, hostname: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``hostname`` in ``directory``, made once and reused."""
    cert_path, key_path = self_signed_paths(directory)
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64] or "postline")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname or "postline")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def load_server_context(
    cert: Path, key: Path, *, cert_setting: str, key_setting: str
) -> ssl.SSLContext:
    """:func:`server_context`, or a :class:`ConfigError` naming the file that cannot be
    read or used and the setting that names it (e.g. ``submission.tls_cert``)."""
    for path, setting in ((cert, cert_setting), (key, key_setting)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from exc
    try:
        return server_context(cert, key)
    except ssl.SSLError as exc:
        if cert == key:
            what = f"{cert_setting}: {cert} does not hold a PEM certificate and its private key"
        else:
            what = (
                f"{cert_setting}, {key_setting}: {cert} and {key} are not a PEM certificate "
                "and its private key"
            )
        raise ConfigError(f"{what} ({exc.reason or exc})") from exc


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
