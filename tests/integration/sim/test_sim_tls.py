"""STARTTLS on the simulated mail exchangers, on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import smtplib
import ssl

import uvloop

from postline.sim import DomainSpec, MXHostSpec, Profile, SimConfig, Simulator


def _client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _spec() -> tuple[DomainSpec, DomainSpec]:
    return (
        DomainSpec("secure.test", mx=(MXHostSpec("mx.secure.test"),)),
        DomainSpec("plain.test", mx=(MXHostSpec("mx.plain.test"),), profile=Profile(tls=False)),
    )


async def _exercise(sim: Simulator) -> tuple[str, dict[str, object], bytes]:
    def talk() -> tuple[str, dict[str, object], bytes]:
        with smtplib.SMTP(sim.addresses["mx.secure.test"], sim.smtp_port, timeout=5) as c:
            c.ehlo("client.sender.test")
            assert c.has_extn("starttls")
            code, _ = c.starttls(context=_client_context())
            assert code == 220
            assert c.sock is not None
            version = c.sock.version() or ""  # type: ignore[union-attr]
            peer = c.sock.getpeercert()  # type: ignore[union-attr]
            c.ehlo("client.sender.test")
            assert not c.has_extn("starttls")  # not offered twice
            c.sendmail("a@sender.test", ["ann@secure.test"], b"Message-ID: <tls@x>\r\n\r\nhi\r\n")
        with smtplib.SMTP(sim.addresses["mx.plain.test"], sim.smtp_port, timeout=5) as c:
            c.ehlo("client.sender.test")
            assert not c.has_extn("starttls")
            code, text = c.docmd("STARTTLS")
            assert code == 454
        return version, {"cert": peer}, text

    return await asyncio.to_thread(talk)


async def test_starttls_is_offered_and_works(start_sim) -> None:
    sim = await start_sim(*_spec())
    version, _, _ = await _exercise(sim)
    assert version.startswith("TLSv1.")
    records = sim.report().records
    assert [(r.message_id, r.tls) for r in records] == [("<tls@x>", True)]


def test_starttls_works_on_uvloop() -> None:
    async def main() -> list[bool]:
        sim = Simulator(SimConfig(domains=_spec()))
        await sim.start()
        try:
            await _exercise(sim)
            return [r.tls for r in sim.report().records]
        finally:
            await sim.stop()

    assert uvloop.run(main()) == [True]


async def test_certificate_names_the_hosts(start_sim) -> None:
    sim = await start_sim(*_spec())

    def fetch() -> bytes:
        with smtplib.SMTP(sim.addresses["mx.secure.test"], sim.smtp_port, timeout=5) as c:
            c.starttls(context=_client_context())
            assert c.sock is not None
            return c.sock.getpeercert(binary_form=True)  # type: ignore[union-attr,no-any-return]

    der = await asyncio.to_thread(fetch)
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mx.secure.test" in names.get_values_for_type(x509.DNSName)
