#!/usr/bin/env python3
"""DKIM signing: signatures per second on one core, postline's signer vs dkimpy's.

Signs a 4 KB message (8 header fields, ~3.8 KB text body) over and over with each of:

* postline RSA-2048 and Ed25519 (``postline.dkim.Signer``: own relaxed
  canonicalization, OpenSSL through ``cryptography``), the body hashed every time;
* the same with the body hash computed once and passed in (``body_hash=``): a stored
  body sent to many recipients;
* the baseline, measured in the same run: ``dkim.sign`` of dkimpy with the same key,
  header list and ``relaxed/relaxed`` (RSA in pure Python; Ed25519 through PyNaCl).

Every signer's output is verified once with dkimpy before timing.

    .venv/bin/python bench/dkim.py [--seconds 3] [--rounds 5]

The signers take turns (``--rounds`` rounds of ``--seconds / --rounds`` each) and each
one's median round is reported, so load from elsewhere on the machine weighs on all of
them alike.

Final line: ``dkim rsa2048=…/s ed25519=…/s dkimpy_rsa=…/s dkimpy_ed25519=…/s
rsa_speedup=…x`` (signatures per second).
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This script is bench/dkim.py: without its directory on the path, "import dkim" is dkimpy.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

from cryptography.hazmat.primitives import serialization  # noqa: E402

import dkim  # noqa: E402
from postline.dkim import (  # noqa: E402
    DkimKey,
    Signer,
    body_hash,
    dkim_record,
    new_key,
    split_message,
)

HEADERS = (
    b"From: Shop <orders@shop.example>\r\n"
    b"To: Ann Example <ann@example.com>\r\n"
    b"Subject: Your order #12345 has shipped\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <01M8A0B1C2D3E4F5@shop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
)
LINE = b"Your parcel left our warehouse today and should arrive within 3 days.  \r\n"


def message(size: int = 4096) -> bytes:
    body = LINE * ((size - len(HEADERS) - 2) // len(LINE))
    return HEADERS + b"\r\n" + body


def rate(sign: Callable[[], object], seconds: float) -> float:
    """Calls of ``sign`` per second over about ``seconds``."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(10):
            sign()
        count += 10
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def interleaved(
    signers: dict[str, Callable[[], object]], seconds: float, rounds: int
) -> dict[str, float]:
    """The median rate of each signer over ``rounds`` rounds; every round runs each signer
    for ``seconds / rounds`` in turn, so a noisy neighbour slows them all alike."""
    for sign in signers.values():
        sign()  # warm up
    rates: dict[str, list[float]] = {name: [] for name in signers}
    for _ in range(rounds):
        for name, sign in signers.items():
            rates[name].append(rate(sign, seconds / rounds))
    return {name: statistics.median(values) for name, values in rates.items()}


def check(signature: bytes, msg: bytes, key: DkimKey) -> None:
    record = dkim_record(key.domain, key.selector, key.public_key, key.algorithm)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return record.value.encode()

    if not dkim.verify(signature + msg, dnsfunc=dnsfunc):
        raise SystemExit(f"signature of {key.algorithm} does not verify")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per signer")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    args = parser.parse_args()

    msg = message()
    bh = body_hash(split_message(msg)[1])
    rsa_key = new_key("shop.example", "rsa-sha256", selector="bench")
    ed_key = new_key("shop.example", "ed25519-sha256", selector="benche")
    rsa_signer, ed_signer = Signer(rsa_key), Signer(ed_key)
    include = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"]
    include += [b"content-type", b"content-transfer-encoding"]
    ed_private = serialization.load_pem_private_key(ed_key.private_pem, password=None)
    ed_seed = base64.b64encode(
        ed_private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )

    def dkimpy(key: DkimKey, private: bytes) -> bytes:
        return bytes(
            dkim.sign(
                msg,
                key.selector.encode(),
                key.domain.encode(),
                private,
                include_headers=include,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=key.algorithm.encode(),
            )
        )

    for signature, key in (
        (rsa_signer.sign(msg), rsa_key),
        (ed_signer.sign(msg), ed_key),
        (rsa_signer.sign(msg, body_hash=bh), rsa_key),
        (dkimpy(rsa_key, rsa_key.private_pem), rsa_key),
        (dkimpy(ed_key, ed_seed), ed_key),
    ):
        check(signature, msg, key)

    print(
        f"message: {len(msg)} bytes; {args.seconds:g} s per signer in {args.rounds} "
        "interleaved rounds; median rate",
        flush=True,
    )
    results = interleaved(
        {
            "rsa2048": lambda: rsa_signer.sign(msg),
            "ed25519": lambda: ed_signer.sign(msg),
            "rsa2048_body_hash_given": lambda: rsa_signer.sign(msg, body_hash=bh),
            "ed25519_body_hash_given": lambda: ed_signer.sign(msg, body_hash=bh),
            "body_hash_only": lambda: body_hash(split_message(msg)[1]),
            "dkimpy_rsa": lambda: dkimpy(rsa_key, rsa_key.private_pem),
            "dkimpy_ed25519": lambda: dkimpy(ed_key, ed_seed),
        },
        args.seconds,
        args.rounds,
    )
    for name, value in results.items():
        print(f"  {name:<26} {value:>10,.0f}/s  {1e6 / value:8.1f} µs each", flush=True)

    print(
        f"dkim rsa2048={results['rsa2048']:,.0f}/s ed25519={results['ed25519']:,.0f}/s "
        f"dkimpy_rsa={results['dkimpy_rsa']:,.0f}/s "
        f"dkimpy_ed25519={results['dkimpy_ed25519']:,.0f}/s "
        f"rsa_speedup={results['rsa2048'] / results['dkimpy_rsa']:.1f}x"
    )


if __name__ == "__main__":
    main()
