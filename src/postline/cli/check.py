"""``postline check FILE``: the pre-flight check of a raw message from the command line.

The message is read as RFC 5322 bytes (``-`` = standard input), normalised the way
postline normalises raw messages it accepts (CRLF line ends; Message-ID and Date added
when missing; Bcc removed), then checked like ``POST /v1/messages/check`` does. With
``--tenant`` the node's store (from ``--config``) says which sender domains the tenant
has and whether postline signs the message; without it the DNS checks report what the
From domain publishes.

One line per finding, then a summary. Exit status: 1 when a finding is an error, 0
otherwise, 2 when the input or the options are unusable.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from postline.check import CheckReport, check_message, spamd_client
from postline.cli._common import fail, run
from postline.config import Config, load_config
from postline.domains.finalize import from_domain
from postline.domains.keys import KEY_FILE
from postline.domains.service import DomainService
from postline.errors import ConfigError
from postline.ingest.render import fix_raw
from postline.model.ids import new_id
from postline.store import create_store

__all__ = ["check"]

_STATUS = {"ok": "ok", "warning": "WARNING", "error": "ERROR"}


def _read(file: str) -> bytes:
    try:
        if file == "-":
            return sys.stdin.buffer.read()
        return Path(file).read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None


def _config(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _normalise(data: bytes) -> tuple[bytes, list[str]]:
    """The message as postline would store it, and the headers that were added to it."""
    if not data.strip():
        raise fail("the message is empty")
    domain = from_domain(data) or "postline.invalid"
    try:
        body, _ = fix_raw(data, message_id=f"<{new_id()}@{domain}>", date=time.time())
    except ValueError as exc:
        raise fail(f"not an RFC 5322 message: {exc}") from None
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    added = [
        name
        for name in ("Message-ID", "Date")
        if not re.search(rb"(?im)^" + name.encode("ascii") + rb"[ \t]*:", head)
    ]
    return body, added


def _secret(config: Config) -> str:
    """The key that opens the tenant's DKIM keys; a node that never made its key file
    has no keys sealed with it, so any key does."""
    if config.domains.key_secret:
        return config.domains.key_secret
    path = config.data_dir / KEY_FILE
    if path.exists():
        return path.read_bytes().strip().decode("ascii")
    return secrets.token_hex(32)


async def _run(message: bytes, config: Config, tenant: str | None, stream: str) -> CheckReport:
    spamd = spamd_client(config)
    if tenant is None:
        return await check_message(
            message, tenant_id=None, stream=stream, domains=None, config=config, spamd=spamd
        )
    store = create_store(config)
    await store.open()
    try:
        found = await store.get_tenant(name=tenant) or await store.get_tenant(id=tenant)
        if found is None:
            raise fail(f"no tenant named {tenant!r} (nor with that id); see 'postline tenant list'")
        domains = DomainService(store, config, secret=_secret(config))
        await domains.refresh()
        return await check_message(
            message,
            tenant_id=found.id,
            stream=stream,
            domains=domains,
            config=config,
            spamd=spamd,
        )
    finally:
        await store.close()


def _print(report: CheckReport, added: list[str]) -> None:
    if added:
        typer.echo(
            f"note: checked as postline would send it, with {' and '.join(added)} added "
            "(postline adds them to messages that have none)"
        )
    width = max((len(f.check) for f in report.findings), default=0)
    for f in report.findings:
        line = f"{_STATUS[f.status]:<7} {f.check:<{width}}  {f.message}"
        if f.fix and f.status != "ok":
            line += f" — fix: {f.fix}"
        typer.echo(line)
    errors, warnings = report.count("error"), report.count("warning")
    verdict = (
        "receivers would object to this message"
        if errors
        else "nothing receivers would reject"
        if not warnings
        else "nothing receivers would reject, but see the warnings"
    )
    typer.echo(
        f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}: {verdict}"
    )


def check(
    file: Annotated[str, typer.Argument(help="The message: a raw RFC 5322 file; '-' = stdin.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="The node's TOML configuration (DNS resolvers, bounce domain, [check] "
            "spamd; the store, with --tenant). Default: built-in defaults.",
            envvar="POSTLINE_CONFIG",
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            "-t",
            help="Check as this tenant (name or id) sends it: its sender domains and DKIM "
            "keys. Needs --config.",
        ),
    ] = None,
    stream: Annotated[
        str,
        typer.Option("--stream", "-s", help="The stream it would be sent on (e.g. marketing)."),
    ] = "transactional",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead.")
    ] = False,
) -> None:
    """Check a message before sending it: headers, MIME, DKIM, SPF, DMARC, return path,
    one-click unsubscribe, SpamAssassin ([check] spamd). Exit 1 on errors, 2 on bad input."""
    if tenant is not None and config is None:
        raise fail("--tenant needs --config: the node's store says what the tenant has")
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", stream):
        raise fail(f"--stream {stream!r} is not a stream name (a-z, 0-9, '_', '-'; at most 32)")
    cfg = _config(config)
    message, added = _normalise(_read(file))
    report = run(_run(message, cfg, tenant, stream))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print(report, added)
    raise typer.Exit(0 if report.ok else 1)
