"""A self-signed certificate for the simulated mail exchangers, made at start.

One ECDSA P-256 key and certificate cover every simulated host name and address
(subjectAltName), valid from one hour ago for 30 days. Nothing is written to disk for
longer than it takes ``ssl`` to load it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["self_signed_context", "self_signed_pem"]


def self_signed_pem(names: Iterable[str], addresses: Iterable[str] = ()) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for ``names`` and IP ``addresses``."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(dict.fromkeys(names)) or ["mx.sim.test"]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt.extend(x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(addresses))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert_pem, key_pem


def self_signed_context(names: Iterable[str], addresses: Iterable[str] = ()) -> ssl.SSLContext:
    """A server-side TLS context with a fresh self-signed certificate."""
    cert_pem, key_pem = self_signed_pem(names, addresses)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory(prefix="postline-sim-tls-") as tmp:
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as fh:
            fh.write(cert_pem)
        with open(key_path, "wb") as fh:
            fh.write(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context
