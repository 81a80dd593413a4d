"""The SPAMC client against a small spamd stand-in written here: the request it sends,
the verdict and report it reads, and how it fails (refused, silent, protocol error)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from postline.check import check_message
from postline.check.spamd import SpamdClient, SpamdError, parse_report
from postline.config import load_config
from support.node import free_port

REPORT = """Spam detection software, running on the system "mx",
has identified this incoming email as possible spam.

Content preview:  buy now

Content analysis details:   (7.2 points, 5.0 required)

 pts rule name              description
---- ---------------------- --------------------------------------------------
 3.5 BAYES_99               BODY: Bayes spam probability is 99 to 100%
                            [score: 1.0000]
-0.0 NO_RELAYS              Informational: message was not relayed via SMTP
 2.5 URIBL_BLACK            Contains an URL listed in the URIBL blacklist
                            [URIs: spam.example]
1.2 MISSING_DATE           Missing Date: header
 0.0 TVD_SPACE_RATIO        No description available.

"""

Handler = Callable[[bytes, dict[str, str], bytes], Awaitable[bytes | None]]


@contextlib.asynccontextmanager
async def responder(handler: Handler) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A TCP server on loopback that reads one SPAMC request per connection and
    answers what ``handler`` returns (None: close without answering)."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = b""
            if "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            seen.append(head + body)
            answer = await handler(lines[0].encode(), headers, body)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    try:
        yield port, seen
    finally:
        server.close()
        await server.wait_closed()


def spamd_answer(spam: str, body: str) -> bytes:
    data = body.encode()
    return (
        f"SPAMD/1.1 0 EX_OK\r\nContent-length: {len(data)}\r\nSpam: {spam}\r\n\r\n".encode() + data
    )


MESSAGE = b"From: a@shop.test\r\nTo: b@inbox.test\r\nSubject: hi\r\n\r\nbuy now\r\n"


async def test_report_sends_spamc_and_reads_verdict_and_rules() -> None:
    async def handler(line: bytes, headers: dict[str, str], body: bytes) -> bytes:
        assert line == b"REPORT SPAMC/1.5"
        assert headers["content-length"] == str(len(MESSAGE))
        assert body == MESSAGE
        return spamd_answer("True ; 7.2 / 5.0", REPORT)

    async with responder(handler) as (port, seen):
        verdict = await SpamdClient("127.0.0.1", port, timeout=2).report(MESSAGE)
    assert len(seen) == 1
    assert (verdict.score, verdict.threshold, verdict.spam) == (7.2, 5.0, True)
    rules = {r.name: r for r in verdict.rules}
    assert list(rules) == [
        "BAYES_99",
        "NO_RELAYS",
        "URIBL_BLACK",
        "MISSING_DATE",
        "TVD_SPACE_RATIO",
    ]
    assert rules["BAYES_99"].score == 3.5
    assert (
        rules["BAYES_99"].description
        == "BODY: Bayes spam probability is 99 to 100% [score: 1.0000]"
    )
    assert rules["URIBL_BLACK"].description.endswith("[URIs: spam.example]")
    assert rules["NO_RELAYS"].score == 0.0


async def test_report_without_a_rule_table_falls_back_to_symbols() -> None:
    async def handler(line: bytes, headers: dict[str, str], body: bytes) -> bytes:
        if line.startswith(b"SYMBOLS"):
            return spamd_answer("False ; 1.0 / 5.0", "MISSING_DATE,NO_RELAYS\r\n")
        return spamd_answer("False ; 1.0 / 5.0", "a site's own report template\r\n")

    async with responder(handler) as (port, seen):
        verdict = await SpamdClient("127.0.0.1", port, timeout=2).report(MESSAGE)
    assert [s.split(b" ")[0] for s in seen] == [b"REPORT", b"SYMBOLS"]
    assert verdict.spam is False and verdict.score == 1.0
    assert [r.name for r in verdict.rules] == ["MISSING_DATE", "NO_RELAYS"]
    assert all(r.score is None for r in verdict.rules)


async def test_ping() -> None:
    async def handler(line: bytes, headers: dict[str, str], body: bytes) -> bytes:
        assert line == b"PING SPAMC/1.5"
        return b"SPAMD/1.5 0 PONG\r\n"

    async with responder(handler) as (port, _):
        assert await SpamdClient("127.0.0.1", port, timeout=2).ping()
    assert not await SpamdClient("127.0.0.1", free_port(), timeout=2).ping()


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        (b"SPAMD/1.0 76 Bad header line: (Content-Length contains non-numeric bytes)\r\n", "76"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a SPAMD"),
        (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n\r\n", "Spam:"),
        (b"", "nothing"),
    ],
)
async def test_protocol_errors(answer: bytes, needle: str) -> None:
    async def handler(line: bytes, headers: dict[str, str], body: bytes) -> bytes:
        return answer

    async with responder(handler) as (port, _):
        with pytest.raises(SpamdError, match=needle):
            await SpamdClient("127.0.0.1", port, timeout=2).report(MESSAGE)


async def test_refused_and_silent_spamd_raise_spamd_error_in_time() -> None:
    with pytest.raises(SpamdError, match="cannot reach"):
        await SpamdClient("127.0.0.1", free_port(), timeout=2).report(MESSAGE)

    async def silent(line: bytes, headers: dict[str, str], body: bytes) -> None:
        await asyncio.sleep(5)

    async with responder(silent) as (port, _):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(SpamdError, match=r"did not answer within 0\.3s"):
            await SpamdClient("127.0.0.1", port, timeout=0.3).report(MESSAGE)
        assert loop.time() - t0 < 2


def test_parse_report_of_an_empty_or_foreign_text() -> None:
    assert parse_report("") == ()
    assert parse_report("no table here\n 1.0 LOOKS_LIKE_A_RULE but is not in a table\n") == ()


def test_client_address_parsing() -> None:
    client = SpamdClient.parse("127.0.0.1:783", timeout=3)
    assert (client.host, client.port, client.timeout) == ("127.0.0.1", 783, 3)
    assert SpamdClient.parse("[::1]:783").address == "[::1]:783"
    with pytest.raises(ValueError):
        SpamdClient.parse("localhost")
    with pytest.raises(ValueError):
        SpamdClient.parse("127.0.0.1:0")


async def test_preflight_reports_spam_and_a_down_spamd_as_findings() -> None:
    config = load_config(text='[dns]\nnameservers = ["127.0.0.1:9"]\ntimeout = "0.2s"', environ={})

    async def handler(line: bytes, headers: dict[str, str], body: bytes) -> bytes:
        return spamd_answer("True ; 7.2 / 5.0", REPORT)

    async with responder(handler) as (port, _):
        spamd = SpamdClient("127.0.0.1", port, timeout=2)
        report = await check_message(
            MESSAGE,
            tenant_id=None,
            stream="transactional",
            domains=None,
            config=config,
            spamd=spamd,
        )
    (finding,) = [f for f in report.findings if f.check == "spamassassin"]
    assert finding.status == "error"
    assert "7.2" in finding.message and "BAYES_99 (3.5)" in finding.message
    assert "NO_RELAYS" not in finding.message  # rules that add nothing are not listed
    assert report.spam is not None and report.spam.spam
    assert report.as_dict()["spam"]["rules"][0] == {
        "name": "BAYES_99",
        "score": 3.5,
        "description": "BODY: Bayes spam probability is 99 to 100% [score: 1.0000]",
    }
    down = await check_message(
        MESSAGE,
        tenant_id=None,
        stream="transactional",
        domains=None,
        config=config,
        spamd=SpamdClient("127.0.0.1", free_port(), timeout=1),
    )
    (finding,) = [f for f in down.findings if f.check == "spamassassin"]
    assert finding.status == "warning" and "cannot reach spamd" in finding.message
    assert down.spam is None
