"""What the commands that talk to a node's admin API share: the ``--url``, ``--token``
and ``--json`` options, the client, errors made readable, and rich tables.

The commands only translate: arguments to one :class:`~postline.client.AdminClient`
call, its JSON to a table (or, with ``--json``, printed as it came).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from postline.cli._common import fail
from postline.client import AdminClient, ApiError, Unreachable

__all__ = [
    "JsonOption",
    "TokenOption",
    "UrlOption",
    "admin_client",
    "emit",
    "key_rate",
    "table",
]

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        "-u",
        help="The node's API, e.g. http://10.0.0.5:8080 (its [api] listen).",
        envvar="POSTLINE_URL",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="An admin token (pla_…); better given in POSTLINE_ADMIN_TOKEN, so it is not "
        "in the shell's history or the process list.",
        envvar="POSTLINE_ADMIN_TOKEN",
        show_default=False,
        show_envvar=True,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON answer as it is (for scripts).")
]

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _stop(lines: Sequence[str], code: int = 1) -> typer.Exit:
    for line in lines:
        _err.print(line, markup=False)
    return typer.Exit(code)


@contextmanager
def admin_client(url: str | None, token: str | None) -> Iterator[AdminClient]:
    """The client of ``url`` with ``token``; a problem answer or an unreachable node ends
    the command with a readable message on stderr and exit status 1 (2: bad options)."""
    if not url:
        raise _stop(["postline: no node given: pass --url http://HOST:PORT or set POSTLINE_URL"], 2)
    if not url.startswith(("http://", "https://")):
        url = f"http://{url}"
    if not token:
        raise _stop(
            [
                "postline: no admin token: set POSTLINE_ADMIN_TOKEN (or pass --token)",
                "fix: make one on a node with 'postline admin token create --config FILE'",
            ],
            2,
        )
    try:
        with AdminClient(url, token) as client:
            yield client
    except ApiError as exc:
        lines = [f"postline: {exc.status} {exc.title}"]
        if exc.detail:
            lines.append(f"detail: {exc.detail}")
        for e in exc.problem.get("errors") or []:
            if isinstance(e, dict) and e.get("message"):
                lines.append(f"  {e.get('field', '')}: {e['message']}".rstrip())
        if exc.fix:
            lines.append(f"fix: {exc.fix}")
        raise _stop(lines) from None
    except Unreachable as exc:
        raise _stop(
            [
                f"postline: cannot reach the admin API at {exc.url}: {exc.reason}",
                "fix: check that the node runs and that --url (or POSTLINE_URL) is its "
                "[api] listen address, reachable from here",
            ]
        ) from None


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``data`` as JSON, or call ``human`` to print it for people."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        human()


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on stdout (``-`` for empty cells, every cell as plain text)."""
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        # Text, not markup: a cell's brackets ('[limits] default', an address) stay.
        t.add_row(*(Text("-" if v is None or v == "" else str(v)) for v in row))
    width = max(shutil.get_terminal_size((120, 24)).columns, 120)
    Console(highlight=False, soft_wrap=False, width=width).print(t)


def key_rate(key: dict[str, Any]) -> str:
    """An API key's own rate limit as the admin API shows it, for people: ``5/s burst
    10``, ``-`` for none; ``(default)`` after it when it follows ``[limits] key_rate``."""
    lim = key["limits"]
    text = f"{lim['rate_per_second']}/s burst {lim['burst']}" if lim["rate_per_second"] else "-"
    return text if lim["overridden"] else f"{text} (default)"


def limit_changes(
    fields: Mapping[str, str], values: Mapping[str, int | None], clear: Sequence[str] | None
) -> dict[str, int | None]:
    """The body of a limits PATCH from command-line options: ``fields`` maps each option
    name (``rate``) to its API field (``rate_per_second``), ``values`` gives the options'
    values (None: not given), ``clear`` the names given to ``--clear`` (``all``: every
    one), each sent as null (back to the default). A value and ``--clear`` of the same
    limit, or an unknown name, is refused."""
    changes: dict[str, int | None] = {}
    for name in clear or []:
        for option in fields if name == "all" else (name,):
            if option not in fields:
                known = ", ".join(fields)
                raise fail(f"--clear takes {known} or all, not {name!r}", code=2)
            changes[fields[option]] = None
    for option, value in values.items():
        if value is not None:
            if fields[option] in changes:
                raise fail(f"both --{option} and --clear {option}", code=2)
            changes[fields[option]] = value
    return changes
