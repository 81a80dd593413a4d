"""``postline suppress``: a tenant's (or the global) suppression list from the command line."""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TextIO

import typer

from postline.cli._common import ConfigOption, fail, load, run
from postline.config import Config
from postline.ingest.addresses import InvalidAddress, parse_address
from postline.store import create_store
from postline.store.base import Store, Suppression
from postline.units import DURATION_HINT, parse_duration

__all__ = ["COLUMNS", "REASONS", "app", "parse_expiry", "parse_import"]

app = typer.Typer(
    help="Suppression lists: addresses a tenant (or, with --global, every tenant) must not mail.",
    no_args_is_help=True,
)

#: Every suppression reason, in the order ``--help`` shows them.
REASONS = ("manual", "unsubscribe", "complaint", "hard_bounce", "soft_bounce")
#: The CSV header ``export`` writes and ``import`` reads.
COLUMNS = ("address", "reason", "expires_at", "detail")
GLOBAL = "*"
_PAGE = 1000

TenantOption = Annotated[
    str | None,
    typer.Option("--tenant", "-t", help="The tenant whose list to use: its name or id."),
]
GlobalOption = Annotated[
    bool,
    typer.Option("--global", help="Use the global list, which holds for every tenant."),
]
ReasonFilter = Annotated[
    str | None,
    typer.Option("--reason", "-r", help=f"Only entries with this reason: {', '.join(REASONS)}."),
]
ReasonOption = Annotated[
    str,
    typer.Option(
        "--reason",
        "-r",
        help=f"The reason entries get: {', '.join(REASONS)}.",
    ),
]


@dataclass(frozen=True, slots=True)
class _Scope:
    owner: str
    label: str


def _check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise fail(
            f"--reason {reason!r} is not a suppression reason; use one of {', '.join(REASONS)}"
        )
    return reason


def _time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_expiry(value: str, *, now: float) -> float | None:
    """When an entry lapses, from a duration from ``now`` (``30d``, ``12h``) or an RFC 3339
    time with a time zone; ``""`` or ``never`` mean never. Raises ``ValueError``."""
    text = value.strip()
    if not text or text.lower() == "never":
        return None
    try:
        seconds = parse_duration(text)
    except ValueError:
        pass
    else:
        if seconds <= 0:
            raise ValueError(f"expiry {value!r} is not after now; give a positive duration")
        return now + seconds
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expiry {value!r} is neither a duration ({DURATION_HINT}, '30d') nor an "
            "RFC 3339 time (2026-12-01T00:00:00Z)"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"expiry {value!r} has no time zone; add one, e.g. 'Z' for UTC")
    if when.timestamp() <= now:
        raise ValueError(f"expiry {value!r} is in the past")
    return when.timestamp()


def _entry(
    owner: str,
    address: str,
    reason: str,
    expires: str,
    detail: str,
    *,
    now: float,
    source: str,
) -> Suppression:
    """One validated entry; raises ``ValueError`` saying what is wrong."""
    try:
        normal = parse_address(address.strip()).address.lower()
    except InvalidAddress as exc:
        raise ValueError(str(exc)) from None
    if reason not in REASONS:
        raise ValueError(f"reason {reason!r} is not one of {', '.join(REASONS)}")
    if len(detail) > 1000:
        raise ValueError("detail is longer than 1000 characters")
    return Suppression(
        tenant_id=owner,
        address=normal,
        reason=reason,
        created_at=now,
        expires_at=parse_expiry(expires, now=now),
        source=source,
        detail=detail,
    )


def parse_import(
    text: str, *, owner: str, default_reason: str, now: float, source: str = "import"
) -> tuple[list[Suppression], list[tuple[int, str]]]:
    """The entries of an import file and the (line number, message) of each bad line.

    A file whose first line names the columns (``address,reason,expires_at,detail``, in
    any order, ``address`` required) is CSV; any other file holds one address per line.
    Blank lines are skipped; an empty reason is ``default_reason``; an address given twice
    keeps its last line.
    """
    entries: dict[str, Suppression] = {}
    errors: list[tuple[int, str]] = []
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return [], []
    header = [c.strip().lower() for c in next(csv.reader([lines[first]]))]
    if "address" not in header:
        rows: Iterable[tuple[int, dict[str, str]]] = (
            (n, {"address": line}) for n, line in enumerate(lines, 1) if line.strip()
        )
        hint = " (a CSV file needs the header line 'address,reason,expires_at,detail')"
    else:
        unknown = [c for c in header if c not in COLUMNS]
        if unknown or len(set(header)) != len(header):
            what = (
                f"unknown column(s) {', '.join(map(repr, unknown))}"
                if unknown
                else "a column twice"
            )
            return [], [(first + 1, f"the header names {what}; use {','.join(COLUMNS)}")]
        rows = _csv_rows(lines, first, header, errors)
        hint = ""
    for n, row in rows:
        try:
            entry = _entry(
                owner,
                row["address"],
                row.get("reason", "").strip() or default_reason,
                row.get("expires_at", ""),
                row.get("detail", ""),
                now=now,
                source=source,
            )
        except ValueError as exc:
            extra = hint if hint and "," in row["address"] else ""
            errors.append((n, f"{exc}{extra}"))
            continue
        entries.pop(entry.address, None)
        entries[entry.address] = entry
    return list(entries.values()), sorted(errors)


def _csv_rows(
    lines: list[str], first: int, header: list[str], errors: list[tuple[int, str]]
) -> Iterator[tuple[int, dict[str, str]]]:
    """The records after the header line ``first`` (0-based), each with the number of the
    file line it starts on; a quoted field may span lines."""
    reader = csv.reader(io.StringIO("\n".join(lines[first + 1 :])))
    before = 0
    while True:
        n = first + 2 + before
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.append((n, f"not CSV: {exc}; the rest of the file was not read"))
            return
        before = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            errors.append((n, f"{len(cells)} fields, but the header names {len(header)}"))
            continue
        row = dict(zip(header, cells, strict=False))
        if not row.get("address", "").strip():
            errors.append((n, "the address is empty"))
            continue
        yield n, row


@asynccontextmanager
async def _opened(cfg: Config) -> AsyncIterator[Store]:
    store = create_store(cfg)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _scope(store: Store, tenant: str | None, global_: bool) -> _Scope:
    if global_:
        return _Scope(GLOBAL, "the global list")
    assert tenant is not None
    found = await store.get_tenant(name=tenant) or await store.get_tenant(id=tenant)
    if found is None:
        raise fail(f"no tenant named {tenant!r} (nor with that id); see 'postline tenant list'")
    return _Scope(found.id, f"the list of tenant {found.name!r}")


def _check_scope(tenant: str | None, global_: bool) -> None:
    if global_ and tenant is not None:
        raise fail("give either --tenant or --global, not both")
    if not global_ and tenant is None:
        raise fail("say whose list: --tenant NAME_OR_ID, or --global for the global list")


async def _all(store: Store, owner: str, reason: str | None) -> AsyncIterator[Suppression]:
    after = ""
    now = time.time()
    while True:
        page = await store.list_suppressions(
            owner, after=after, limit=_PAGE, reason=reason, now=now
        )
        for s in page:
            yield s
        if len(page) < _PAGE:
            return
        after = page[-1].address


@app.command("list")
def list_entries(
    config: ConfigOption,
    tenant: TenantOption = None,
    global_: GlobalOption = False,
    reason: ReasonFilter = None,
) -> None:
    """Print the live entries, one per line, in address order.

    Columns (tab-separated): address, reason, created, expires (UTC; '-' for never).
    """
    _check_scope(tenant, global_)
    if reason is not None:
        _check_reason(reason)
    cfg = load(config)

    async def main() -> None:
        async with _opened(cfg) as store:
            scope = await _scope(store, tenant, global_)
            async for s in _all(store, scope.owner, reason):
                expires = _time(s.expires_at) or "-"
                typer.echo(f"{s.address}\t{s.reason}\t{_time(s.created_at)}\t{expires}")

    run(main())


@app.command("add")
def add(
    addresses: Annotated[list[str], typer.Argument(help="The addresses to suppress.")],
    config: ConfigOption,
    tenant: TenantOption = None,
    global_: GlobalOption = False,
    reason: ReasonOption = "manual",
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            help="When the entries lapse: a duration from now (30d, 12h) or an RFC 3339 "
            "time (2026-12-01T00:00:00Z). Default: never.",
        ),
    ] = None,
    detail: Annotated[str, typer.Option("--detail", help="A note kept with the entries.")] = "",
) -> None:
    """Add addresses to the list (or replace their entries).

    Nothing is added when one of them is invalid.
    """
    _check_scope(tenant, global_)
    _check_reason(reason)
    now = time.time()
    try:
        parse_expiry(expires or "", now=now)
    except ValueError as exc:
        raise fail(f"--expires: {exc}") from None
    # Entries are checked before the store is opened; their owner is set once it is known.
    entries: dict[str, Suppression] = {}
    bad: list[str] = []
    for address in addresses:
        try:
            entry = _entry(GLOBAL, address, reason, expires or "", detail, now=now, source="cli")
        except ValueError as exc:
            bad.append(str(exc))
            continue
        entries[entry.address] = entry
    if bad:
        for message in bad:
            typer.echo(f"postline: {message}", err=True)
        raise fail("nothing was added; correct the addresses and run the command again")
    cfg = load(config)

    async def main() -> str:
        async with _opened(cfg) as store:
            scope = await _scope(store, tenant, global_)
            await store.add_suppressions(
                [replace(e, tenant_id=scope.owner) for e in entries.values()]
            )
            return scope.label

    label = run(main())
    typer.echo(f"added {len(entries)} address(es) to {label}")


@app.command("remove")
def remove(
    addresses: Annotated[list[str], typer.Argument(help="The addresses to remove.")],
    config: ConfigOption,
    tenant: TenantOption = None,
    global_: GlobalOption = False,
) -> None:
    """Remove addresses from the list.

    Exits with 1 when one of them was not on it.
    """
    _check_scope(tenant, global_)
    cfg = load(config)

    async def main() -> tuple[str, list[str], list[str]]:
        removed: list[str] = []
        missing: list[str] = []
        async with _opened(cfg) as store:
            scope = await _scope(store, tenant, global_)
            for address in addresses:
                text = address.strip()
                try:
                    normal = parse_address(text).address
                except InvalidAddress:
                    normal = text
                if await store.remove_suppression(scope.owner, normal):
                    removed.append(address)
                else:
                    missing.append(address)
        return scope.label, removed, missing

    label, removed, missing = run(main())
    for address in removed:
        typer.echo(f"removed {address} from {label}")
    for address in missing:
        typer.echo(f"postline: {address} is not on {label}", err=True)
    if missing:
        raise typer.Exit(1)


def _read(file: str) -> str:
    try:
        if file == "-":
            return sys.stdin.buffer.read().decode("utf-8-sig")
        return Path(file).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise fail(f"{file} is not UTF-8 text") from None


@app.command("import")
def import_entries(
    file: Annotated[
        str,
        typer.Argument(
            help="A CSV file with the header address,reason,expires_at,detail, or a file "
            "with one address per line; '-' reads standard input."
        ),
    ],
    config: ConfigOption,
    tenant: TenantOption = None,
    global_: GlobalOption = False,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", "-r", help="The reason of lines that give none.", show_default=True
        ),
    ] = "manual",
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Import the valid lines and skip the bad ones."),
    ] = False,
) -> None:
    """Add the entries of a CSV file (or of a file of addresses).

    Every line is checked first: when one is bad, its line number is reported and nothing
    is imported (unless --skip-invalid).
    """
    _check_scope(tenant, global_)
    _check_reason(reason)
    text = _read(file)
    # Lines are checked before the store is opened; the owner is set once it is known.
    entries, errors = parse_import(text, owner=GLOBAL, default_reason=reason, now=time.time())
    name = "<stdin>" if file == "-" else file
    for n, message in errors:
        typer.echo(f"postline: {name}:{n}: {message}", err=True)
    if errors and not skip_invalid:
        raise fail(
            f"{len(errors)} bad line(s); nothing was imported (correct them, or pass "
            f"--skip-invalid to import the {len(entries)} valid entries)"
        )
    cfg = load(config)

    async def main() -> str:
        async with _opened(cfg) as store:
            scope = await _scope(store, tenant, global_)
            if entries:
                await store.add_suppressions([replace(e, tenant_id=scope.owner) for e in entries])
            return scope.label

    label = run(main())
    skipped = f", skipped {len(errors)} bad line(s)" if errors else ""
    typer.echo(f"imported {len(entries)} entries into {label}{skipped}")


def _write(out: TextIO, entries: Iterable[Suppression]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for s in entries:
        writer.writerow((s.address, s.reason, _time(s.expires_at), s.detail))
        n += 1
    return n


@app.command("export")
def export(
    config: ConfigOption,
    file: Annotated[
        Path | None,
        typer.Argument(help="Where to write the CSV; standard output without it.", dir_okay=False),
    ] = None,
    tenant: TenantOption = None,
    global_: GlobalOption = False,
    reason: ReasonFilter = None,
) -> None:
    """Write the live entries as CSV, the format 'import' reads.

    The header is address,reason,expires_at,detail; an empty expires_at means never.
    """
    _check_scope(tenant, global_)
    if reason is not None:
        _check_reason(reason)
    cfg = load(config)

    async def main() -> tuple[str, list[Suppression]]:
        async with _opened(cfg) as store:
            scope = await _scope(store, tenant, global_)
            return scope.label, [s async for s in _all(store, scope.owner, reason)]

    label, entries = run(main())
    if file is None:
        n = _write(sys.stdout, entries)
        sys.stdout.flush()
    else:
        try:
            with file.open("w", encoding="utf-8", newline="") as out:
                n = _write(out, entries)
        except OSError as exc:
            raise fail(f"cannot write {file}: {exc.strerror or exc}") from None
    typer.echo(f"exported {n} entries of {label}", err=True)
