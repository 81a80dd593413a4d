"""``postline sim``: run the internet in a box until SIGINT or SIGTERM.

When ready it prints the node configuration snippet that points a node at it, then one
JSON line (always the last line of its standard output)::

    {"dns": "127.0.0.1:5353", "smtp_port": 2525, "control": "http://127.0.0.1:8099"}

The control URL serves ``GET /report``, ``POST /reset``, ``GET /config`` and
``GET /healthz`` (see :mod:`postline.sim.control`). Everything binds 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from postline.cli._common import run
from postline.errors import ConfigError

if TYPE_CHECKING:
    from postline.sim.config import SimConfig

__all__ = ["main", "sim"]


def _split_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--control must be HOST:PORT in 127.0.0.0/8, got {text!r}")
    return host or "127.0.0.1", int(port)


def sim(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Simulator TOML file; default: the standard mix."),
    ] = None,
    domains: Annotated[
        int, typer.Option("--domains", help="Domains in the standard mix (at least 27).")
    ] = 50,
    dns_port: Annotated[
        int | None, typer.Option("--dns-port", help="DNS port (UDP and TCP); default: any free.")
    ] = None,
    smtp_port: Annotated[
        int | None,
        typer.Option("--smtp-port", help="SMTP port on every MX address; default: any free."),
    ] = None,
    control: Annotated[
        str, typer.Option("--control", help="HOST:PORT of the control HTTP API (loopback).")
    ] = "127.0.0.1:0",
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the simulated randomness.")
    ] = None,
    hints: Annotated[
        bool,
        typer.Option(
            "--hints/--no-hints", help="Print the node throttle rules meant for this mix."
        ),
    ] = True,
) -> None:
    """Run DNS and provider-like mail exchangers on 127.0.0.0/8 for tests and the demo."""
    from dataclasses import replace

    from postline.sim.config import SimConfig, check_loopback

    try:
        cfg = SimConfig.load(config) if config is not None else SimConfig.standard(domains)
        cfg = replace(
            cfg,
            dns_port=cfg.dns_port if dns_port is None else dns_port,
            smtp_port=cfg.smtp_port if smtp_port is None else smtp_port,
            seed=cfg.seed if seed is None else seed,
        )
        control_host, control_port = _split_address(control)
        control_host = check_loopback(control_host, "--control")
    except ConfigError as exc:
        typer.echo(f"postline sim: {exc}", err=True)
        raise typer.Exit(2) from None
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    try:
        run(_serve(cfg, control_host, control_port, hints))
    except ConfigError as exc:
        typer.echo(f"postline sim: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"postline sim: cannot bind: {exc}", err=True)
        raise typer.Exit(1) from None


async def _serve(cfg: SimConfig, control_host: str, control_port: int, hints: bool) -> None:
    from postline.sim.control import ControlServer
    from postline.sim.runner import Simulator

    simulator = Simulator(cfg)
    await simulator.start()
    api = ControlServer(simulator, control_host, control_port)
    try:
        await api.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        out = sys.stdout
        out.write("# node configuration for this simulator\n")
        out.write(simulator.node_config(hints=hints))
        ready = {"dns": simulator.dns_address, "smtp_port": simulator.smtp_port, "control": api.url}
        out.write(json.dumps(ready) + "\n")
        out.flush()
        await stop.wait()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    finally:
        await api.stop()
        await simulator.stop()


def main() -> None:
    """Run ``sim`` as a stand-alone command (``python -m postline.sim``)."""
    typer.run(sim)
