"""DKIM signing and sender-domain DNS records: the building blocks of deliverability.

Receivers trust mail whose From domain vouches for it: a DKIM signature by a key that
domain publishes, an SPF record naming the servers that send for it, a DMARC policy
tying both to the From domain, and a return path that takes bounces. This package is
the library side of that; the node stores keys, signs outgoing mail and checks the
records of each sender domain with it.

- :mod:`postline.dkim.keys` — generate RSA and Ed25519 keys, PEM, the DNS ``p=`` value,
  selector names, sealing private keys at rest (AES-256-GCM under a key derived from a
  configured secret);
- :mod:`postline.dkim.canon` — relaxed canonicalization and body hashes (RFC 6376 §3.4);
- :mod:`postline.dkim.sign` — :class:`Signer`: the ``DKIM-Signature`` field of a
  message, with the body hashed once per distinct body;
- :mod:`postline.dkim.records` — the DKIM, SPF, DMARC and return-path records to
  publish, and an asynchronous check of what is published;
- :mod:`postline.dkim.errors` — the exceptions.
"""

from __future__ import annotations

from postline.dkim.canon import body_hash, normalize_newlines, split_message
from postline.dkim.errors import DkimError, KeyFormatError, MessageFormatError, SealError
from postline.dkim.keys import (
    ALGORITHMS,
    RSA_KEY_SIZES,
    Algorithm,
    DkimKey,
    generate_private_key,
    load_private_key,
    master_key,
    new_key,
    public_key_value,
    seal,
    selector_for,
    unseal,
)
from postline.dkim.records import (
    DnsRecord,
    RecordStatus,
    check,
    dkim_record,
    expected_records,
    make_resolver,
)
from postline.dkim.sign import DEFAULT_HEADERS, DEFAULT_OVERSIGN, Signer

__all__ = [
    "ALGORITHMS",
    "DEFAULT_HEADERS",
    "DEFAULT_OVERSIGN",
    "RSA_KEY_SIZES",
    "Algorithm",
    "DkimError",
    "DkimKey",
    "DnsRecord",
    "KeyFormatError",
    "MessageFormatError",
    "RecordStatus",
    "SealError",
    "Signer",
    "body_hash",
    "check",
    "dkim_record",
    "expected_records",
    "generate_private_key",
    "load_private_key",
    "make_resolver",
    "master_key",
    "new_key",
    "normalize_newlines",
    "public_key_value",
    "seal",
    "selector_for",
    "split_message",
    "unseal",
]
