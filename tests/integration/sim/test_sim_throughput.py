"""Throughput: the simulator must not be the bottleneck of the demo or of benchmarks."""

from __future__ import annotations

import asyncio
import time

import uvloop

from postline.sim import SimConfig, Simulator

BODY = (
    b"From: sender@sender.test\r\nTo: r@gmail.test\r\nSubject: load\r\n"
    b"Message-ID: <%d.%d@load.test>\r\n\r\n" + b"Lorem ipsum dolor sit amet.\r\n" * 60
)


async def _pump(host: str, port: int, conn: int, count: int, domain: str) -> int:
    reader, writer = await asyncio.open_connection(host, port)

    async def reply() -> int:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return int(line[:3])

    assert await reply() == 220
    writer.write(b"EHLO load.sender.test\r\n")
    assert await reply() == 250
    ok = 0
    for i in range(count):
        writer.write(
            b"MAIL FROM:<bounce@sender.test>\r\nRCPT TO:<user%d@%s>\r\nDATA\r\n"
            % (i, domain.encode())
        )
        codes = [await reply() for _ in range(3)]
        assert codes == [250, 250, 354], codes
        writer.write(BODY % (conn, i) + b".\r\n")
        ok += await reply() == 250
    writer.write(b"QUIT\r\n")
    await reply()
    writer.close()
    await writer.wait_closed()
    return ok


def test_thousands_of_messages_per_second_over_reused_connections() -> None:
    connections, per_connection = 8, 500

    async def main() -> tuple[float, int, int]:
        sim = Simulator(SimConfig.standard())
        await sim.start()
        try:
            address, domain = sim.addresses["mx.northwind.test"], "northwind.test"
            t0 = time.perf_counter()
            done = await asyncio.gather(
                *(
                    _pump(address, sim.smtp_port, c, per_connection, domain)
                    for c in range(connections)
                )
            )
            elapsed = time.perf_counter() - t0
            report = sim.report(details=False)
            return elapsed, sum(done), report.accepted
        finally:
            await sim.stop()

    elapsed, ok, accepted = uvloop.run(main())
    total = connections * per_connection
    assert ok == accepted == total
    rate = total / elapsed
    print(f"\nsim throughput: {rate:.0f} msg/s ({total} messages in {elapsed:.2f} s)")
    assert rate > 500, rate
