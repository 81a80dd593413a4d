"""``postline serve``: run a node until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import typer

from postline import preflight
from postline.cli._common import ConfigOption, fail, load, run
from postline.errors import ConfigError, PostlineError
from postline.runtime import Node, bind_listeners, configure_logging
from postline.workers.supervisor import Supervisor

__all__ = ["serve"]

# How long a thread holds the GIL while another waits for it (Python's default: 5 ms). The
# store's writer thread needs the GIL back after each statement, with the store's lock
# held, while the event loop runs Python: at 1 ms, HTTP batch ingest with two workers went
# from 14,900-16,800 to 16,400-17,300 recipients/s (3 interleaved runs each); the relay
# did not move.
SWITCH_INTERVAL = 0.001


def _addr(address: tuple[str, int] | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None


def serve(config: ConfigOption) -> None:
    """Run a node: the HTTP API, SMTP submission and the delivery engine, in ``[node]
    workers`` processes (one per CPU by default)."""
    cfg = load(config)
    try:
        preflight.check(cfg)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    configure_logging(cfg)
    sys.setswitchinterval(SWITCH_INTERVAL)
    workers = cfg.worker_count
    if workers > 1:
        try:
            code = Supervisor(cfg, workers, echo=typer.echo).run()
        except (ConfigError, PostlineError) as exc:
            raise fail(str(exc)) from None
        raise typer.Exit(code)

    try:
        listeners = bind_listeners(cfg)
    except ConfigError as exc:
        raise fail(str(exc)) from None

    async def main() -> None:
        node = Node(cfg, listeners=listeners)
        try:
            await node.start()
        except (ConfigError, PostlineError) as exc:
            await node.stop()
            raise fail(str(exc)) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready = {
            "node": node.node_id,
            "api": _addr(node.api_address),
            "submission": _addr(node.submission_address),
        }
        typer.echo(json.dumps({"ready": ready}), nl=True)
        await stop.wait()
        await node.stop()

    run(main())
