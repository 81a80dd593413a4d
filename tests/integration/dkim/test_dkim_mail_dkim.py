"""Our signatures verified by Perl's Mail::DKIM (Debian's libmail-dkim-perl).

A second independent verifier beside dkimpy (tests/unit/dkim): a small Perl script
reads the signed message on stdin and verifies it with ``Mail::DKIM::Verifier``, whose
DNS queries go (through ``Mail::DKIM::DNS::resolver``, a ``Net::DNS::Resolver`` pointed
at loopback) to the simulator's DNS server publishing our key record — the record as
:func:`postline.dkim.dkim_record` writes it, split into 255-byte strings by DNS.

Without perl or Mail::DKIM the tests are skipped (``apt-get install libmail-dkim-perl``);
under CI (``CI`` set, as ``.ci/run`` does) they fail instead, so they are never silently
lost there. Mail::DKIM versions without Ed25519 (Debian 12 ships 1.20230212, which
knows only rsa-sha1 and rsa-sha256) skip the Ed25519 cases; dkimpy covers them.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import AsyncIterator

import pytest

from postline.dkim import DkimKey, Signer, dkim_record, new_key
from postline.sim.dns import DNSServer, Zone
from support.mail_dkim import mail_dkim as verify_with_mail_dkim
from support.mail_dkim import require_mail_dkim

HAS_ED25519 = (
    'use Mail::DKIM::Signature; exit(Mail::DKIM::Signature->get_algorithm_class("ed25519-sha256")'
    " ? 0 : 1);"
)

PLAIN = (
    b"From: Shop <orders@shop.example>\r\n"
    b"To: Ann <ann@example.com>\r\n"
    b"Subject: Your order\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <01M8A@shop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"It shipped.\r\n"
)
MULTIPART = (
    b"From: Shop <orders@shop.example>\r\n"
    b"To: ann@example.com\r\n"
    b"Subject: Newsletter\r\n"
    b"List-Unsubscribe: <https://shop.example/u/1>,\r\n <mailto:u-1@shop.example>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello   there\t \r\n"
    b"--b1\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Hello there</p>\r\n"
    b"--b1--\r\n"
)
EIGHT_BIT = (
    b"From: Shop <orders@shop.example>\r\n"
    b"To: ann@example.com\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n" + "Grüße aus Köln — ça va ?\r\n\r\n\r\n".encode()
)
SMTPUTF8 = (
    "From: José <josé@shop.example>\r\n"
    "To: Jürgen <jürgen@bücher.example>\r\n"
    "Subject: Grüße, 你好\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Grüße\r\n"
).encode()
SAMPLES = {"plain": PLAIN, "multipart": MULTIPART, "8bit": EIGHT_BIT, "smtputf8": SMTPUTF8}


@functools.cache
def _perl_has_ed25519() -> bool:
    return subprocess.run(["perl", "-e", HAS_ED25519], capture_output=True).returncode == 0


@pytest.fixture(scope="module", params=["rsa-sha256", "ed25519-sha256"])
def key(request: pytest.FixtureRequest) -> DkimKey:
    require_mail_dkim()
    if request.param == "ed25519-sha256" and not _perl_has_ed25519():
        pytest.skip("this Mail::DKIM has no ed25519-sha256 (RFC 8463); dkimpy verifies it")
    return new_key("shop.example", request.param, selector=f"pl202611{request.param[0]}")


@pytest.fixture
async def server(key: DkimKey) -> AsyncIterator[DNSServer]:
    record = dkim_record(key.domain, key.selector, key.public_key, key.algorithm)
    async with DNSServer(Zone(txt={record.name: [record.value]})) as dns_server:
        yield dns_server


async def mail_dkim(message: bytes, server: DNSServer) -> str:
    return await verify_with_mail_dkim(message, server.host, server.port)


@pytest.mark.parametrize("sample", SAMPLES)
async def test_mail_dkim_verifies(key: DkimKey, server: DNSServer, sample: str) -> None:
    message = SAMPLES[sample]
    result = await mail_dkim(Signer(key).sign(message) + message, server)
    assert result.split("\t")[0] == "pass", result
    assert server.count(f"{key.selector}._domainkey.shop.example", "TXT") >= 1


async def test_mail_dkim_verifies_lf_input_as_sent(key: DkimKey, server: DNSServer) -> None:
    signature = Signer(key).sign(PLAIN.replace(b"\r\n", b"\n"))
    result = await mail_dkim(signature + PLAIN, server)
    assert result.startswith("pass"), result


@pytest.mark.parametrize(
    ("find", "replace"),
    [
        (b"Hello there</p>", b"Hello there!</p>"),
        (b"Subject: Newsletter", b"Subject: Newsletter!"),
        (b"From: Shop", b"From: evil@attacker.example\r\nFrom: Shop"),
        (b"From: Shop", b"Subject: Act now\r\nFrom: Shop"),
    ],
    ids=["body", "subject", "added-from", "added-subject"],
)
async def test_mail_dkim_rejects_tampering(
    key: DkimKey, server: DNSServer, find: bytes, replace: bytes
) -> None:
    signed = Signer(key).sign(MULTIPART) + MULTIPART
    assert find in signed
    result = await mail_dkim(signed.replace(find, replace, 1), server)
    assert result.split("\t")[0] == "fail", result
