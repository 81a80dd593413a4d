"""Starting and stopping the simulator: ports, clean shutdown with busy connections."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from postline.sim import DomainSpec, MXHostSpec, Profile, SimConfig, Simulator


def _two_hosts(**config: object) -> SimConfig:
    return SimConfig(
        domains=(
            DomainSpec("one.test", mx=(MXHostSpec("mx.one.test"),)),
            DomainSpec("two.test", mx=(MXHostSpec("mx.two.test"),)),
        ),
        **config,  # type: ignore[arg-type]
    )


async def test_every_host_listens_on_the_same_port() -> None:
    async with Simulator(_two_hosts()) as sim:
        assert sim.running
        port = sim.smtp_port
        assert port > 0
        for address in sim.addresses.values():
            _, writer = await asyncio.open_connection(address, port)
            writer.close()
            await writer.wait_closed()
        assert sim.dns_address.startswith("127.0.0.1:")
        with pytest.raises(RuntimeError):
            await sim.start()
    assert not sim.running
    await sim.stop()  # idempotent
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(sim.addresses["mx.one.test"], port)


async def test_a_taken_fixed_port_fails_and_leaves_nothing_bound() -> None:
    probe = Simulator(_two_hosts())
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind((probe.addresses["mx.two.test"], 0))
    port = blocker.getsockname()[1]
    blocker.listen()
    try:
        sim = Simulator(_two_hosts(smtp_port=port))
        with pytest.raises(OSError):
            await sim.start()
        # The first host's listener was closed again: its address:port is free.
        check = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            check.bind((sim.addresses["mx.one.test"], port))
        finally:
            check.close()
    finally:
        blocker.close()


async def test_stop_is_quick_while_clients_wait_in_a_tarpit_or_a_slow_rcpt() -> None:
    spec = DomainSpec("pit.test", mx=(MXHostSpec("mx.pit.test"),), profile=Profile(tarpit=5.0))
    slow = DomainSpec("slow.test", mx=(MXHostSpec("mx.slow.test"),))
    sim = Simulator(SimConfig(domains=(spec, slow), slow_delay=30.0))
    await sim.start()
    _, pit_writer = await asyncio.open_connection(sim.addresses["mx.pit.test"], sim.smtp_port)
    reader, writer = await asyncio.open_connection(sim.addresses["mx.slow.test"], sim.smtp_port)
    await reader.readline()
    writer.write(b"EHLO c.test\r\nMAIL FROM:<a@s.test>\r\nRCPT TO:<slow@slow.test>\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)
    assert sim.recorder.open_connections() == 2
    t0 = time.perf_counter()
    await sim.stop()
    assert time.perf_counter() - t0 < 1.0
    assert sim.recorder.open_connections() == 0
    for w in (pit_writer, writer):
        w.close()
        try:
            await w.wait_closed()
        except ConnectionError:
            pass


async def test_reset_with_state_forgets_greylisting(start_sim, smtp) -> None:
    sim = await start_sim(
        DomainSpec("g.test", mx=(MXHostSpec("mx.g.test"),), profile=Profile(greylist=0.2))
    )
    client = await smtp(sim, "mx.g.test")
    await client.ehlo()
    await client.cmd("MAIL FROM:<a@s.test>")
    assert (await client.cmd("RCPT TO:<x@g.test>")).code == 451
    await asyncio.sleep(0.25)
    assert (await client.cmd("RCPT TO:<x@g.test>")).code == 250
    sim.reset()
    assert sim.report().rejected == 0
    assert (await client.cmd("RCPT TO:<x@g.test>")).code == 250  # still known
    sim.reset(state=True)
    assert (await client.cmd("RCPT TO:<x@g.test>")).code == 451  # greylisted again
