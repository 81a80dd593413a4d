"""``postline init``: write a development node's configuration and say what to run next."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated

import typer

from postline.cli._common import fail
from postline.config import load_config, parse_listen
from postline.errors import ConfigError

__all__ = ["git_work_tree", "init", "node_toml"]

CONFIG_NAME = "node.toml"
DATA_DIR = "data"
API = "127.0.0.1:8025"
SUBMISSION = "127.0.0.1:2587"

_HEADER = """\
# A development node of postline, written by `postline init`. It listens on loopback
# only and makes what it needs on first start: the mail database, a self-signed
# certificate for STARTTLS, the key that seals DKIM keys and the key that signs VERP
# return paths and unsubscribe links, all in data_dir.
#
# Every key: `postline config reference`. After an edit: `postline config check
# --config node.toml` (it also says whether the files and ports below are usable).
#
# Before production, change at least:
#   data_dir                     an absolute path outside any source tree, backed up
#                                (e.g. /var/lib/postline); it holds secrets
#   [api] listen, public_url     a private address or a TLS proxy in front; the https
#                                URL receivers reach for one-click unsubscribe
#   [submission] listen          0.0.0.0:587, with tls_cert and tls_key from a real CA
#   [delivery] helo_hostname     the PTR name of the sending IP (and no smarthost route
#                                unless a relay sends for you)
#   [bounce] domain, secret      a return-path domain whose MX reaches [inbound] on
#                                port 25; a secret shared by every node
#   [domains] require_verified   true, and key_secret shared by every node
#   [node] workers               0 = one process per CPU

# State and secrets; relative to this file.
data_dir = "{data_dir}"

[api]
# The HTTP API (POST /v1/messages, ...): API keys over plain HTTP, so loopback only.
listen = "{api}"

[submission]
# SMTP submission: AUTH (user: the tenant name, password: its API key) after STARTTLS.
listen = "{submission}"
# Empty: a self-signed certificate made in data_dir on first start. Production:
# tls_cert = "/etc/postline/tls.crt"
# tls_key = "/etc/postline/tls.key"
tls_cert = ""
tls_key = ""

[delivery]
# Name sent in EHLO (and the submission banner); empty = this machine's FQDN.
helo_hostname = "{hostname}"

[node]
# One process is plenty for development.
workers = 1

[domains]
# false: any From domain is accepted, unsigned unless the domain has a DKIM key of the
# tenant (POST /v1/domains). Production: true.
require_verified = false
"""

_SMARTHOST = """
# Every recipient domain goes to this relay instead of its MX hosts (no AUTH: the relay
# must accept mail from this host). Remove it to deliver to the MX hosts on port 25.
[[delivery.routes]]
domain = "*"
host = "{host}"
port = {port}
"""

_NO_SMARTHOST = """
# Without a route, mail goes to each recipient domain's MX hosts on port 25, which many
# home and cloud networks block. To send everything through a relay that accepts mail
# from this host without AUTH (or a local test sink), uncomment and fill in:
# [[delivery.routes]]
# domain = "*"
# host = "relay.example.net"
# port = 25
"""


def node_toml(
    *,
    api: str = API,
    submission: str = SUBMISSION,
    hostname: str = "",
    smarthost: tuple[str, int] | None = None,
) -> str:
    """The text ``postline init`` writes."""
    text = _HEADER.format(data_dir=DATA_DIR, api=api, submission=submission, hostname=hostname)
    if smarthost is None:
        return text + _NO_SMARTHOST
    host, port = smarthost
    return text + _SMARTHOST.format(host=host, port=port)


def git_work_tree(path: Path) -> Path | None:
    """The top of the git work tree ``path`` is (or would be) in, if any: the nearest of
    it and its parents holding ``.git`` (a directory, or a file in a linked work tree)."""
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _listen(value: str, option: str) -> str:
    try:
        parse_listen(value)
    except ValueError as exc:
        raise fail(f"{option}: {exc}") from None
    return value


def _smarthost(value: str) -> tuple[str, int]:
    try:
        host, port = parse_listen(value)
    except ValueError as exc:
        raise fail(f"--smarthost: {exc}") from None
    if port == 0 or not re.fullmatch(r"[A-Za-z0-9.:-]+", host):
        raise fail(f"--smarthost: {value!r} is not host:port, e.g. relay.example.net:25")
    return host, port


def init(
    directory: Annotated[
        Path, typer.Argument(help="Where node.toml is written (and data/ made on first start).")
    ] = Path("."),
    smarthost: Annotated[
        str | None,
        typer.Option(
            help="host:port of a relay that takes all outbound mail ([[delivery.routes]])."
        ),
    ] = None,
    api: Annotated[str, typer.Option(help="host:port of the HTTP API.")] = API,
    submission: Annotated[str, typer.Option(help="host:port of SMTP submission.")] = SUBMISSION,
    hostname: Annotated[
        str, typer.Option(help="Name sent in EHLO and the banner; empty = this machine's FQDN.")
    ] = "",
    force: Annotated[
        bool,
        typer.Option(
            help="Overwrite an existing node.toml, and put data_dir inside a git work tree."
        ),
    ] = False,
) -> None:
    """Write a development configuration, DIR/node.toml: loopback listeners, state in
    DIR/data, a self-signed certificate made on first start; then print what to run."""
    _listen(api, "--api")
    _listen(submission, "--submission")
    if not re.fullmatch(r"[A-Za-z0-9.-]{0,253}", hostname):
        raise fail(f"--hostname: {hostname!r} is not a host name")
    relay = _smarthost(smarthost) if smarthost is not None else None
    path = directory / CONFIG_NAME
    if path.exists() and not force:
        raise fail(f"{path} exists; pass --force to overwrite it")
    data_dir = directory.resolve() / DATA_DIR
    tree = git_work_tree(data_dir)
    if tree is not None and not force:
        raise fail(
            f"{data_dir} would be inside the git work tree {tree}, and data_dir holds secrets "
            "(the DKIM master key, the VERP key, the TLS key) and the mail database; "
            "choose a directory outside it, or pass --force (and keep data/ out of git)"
        )
    shown = shlex.quote(str(path))
    text = node_toml(api=api, submission=submission, hostname=hostname, smarthost=relay)
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, environ={})
    except ConfigError as exc:  # pragma: no cover - the template is tested
        raise fail(f"the configuration written is invalid (a bug): {exc}") from None
    host, port = parse_listen(api)
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    typer.echo(f"wrote {path} (state will live in {data_dir})")
    typer.echo("next:")
    typer.echo(f"  KEY=$(postline tenant create acme --config {shown} | tail -n 1)")
    typer.echo(f"  postline serve --config {shown}")
    typer.echo(
        f'  curl -s {url}/v1/messages -H "Authorization: Bearer $KEY" '
        "-H 'content-type: application/json' "
        '-d \'{"from": "me@example.com", "to": ["you@example.com"], '
        '"subject": "Hello", "text": "It works."}\''
    )
