"""``postline suppress list|add|remove|import|export`` against a real SQLite store."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from postline.cli import suppress, tenant
from postline.config import load_config
from postline.store import create_store
from postline.store.base import Suppression

HEADER = "address,reason,expires_at,detail"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\nnode_id = "cli-test"\n')
    for name in ("acme", "bravo"):
        created = CliRunner().invoke(tenant.app, ["create", name, "--config", str(path)])
        assert created.exit_code == 0, created.output
    return path


def cli(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(suppress.app, [*args, "--config", str(config)], input=input)


def listed(config: Path, *scope: str) -> list[list[str]]:
    result = cli(config, "list", *scope)
    assert result.exit_code == 0, result.output
    return [line.split("\t") for line in result.stdout.splitlines()]


def addresses(config: Path, *scope: str) -> list[str]:
    return [row[0] for row in listed(config, *scope)]


def stored(config: Path, owner: str) -> list[Suppression]:
    async def main() -> list[Suppression]:
        store = create_store(load_config(config, environ={}))
        await store.open()
        try:
            return await store.list_suppressions(owner, limit=10_000, now=0)
        finally:
            await store.close()

    return asyncio.run(main())


def test_add_list_remove(config: Path) -> None:
    added = cli(
        config,
        "add",
        "Ann@Example.TEST",
        "bob@bücher.test",
        "--tenant",
        "acme",
        "--reason",
        "complaint",
        "--expires",
        "30d",
    )
    assert added.exit_code == 0, added.output
    assert "added 2 address(es) to the list of tenant 'acme'" in added.stdout
    forever = cli(config, "add", "carl@example.test", "-t", "acme", "--detail", "by hand")
    assert forever.exit_code == 0, forever.output

    rows = listed(config, "--tenant", "acme")
    assert [(r[0], r[1]) for r in rows] == [
        ("ann@example.test", "complaint"),
        ("bob@xn--bcher-kva.test", "complaint"),
        ("carl@example.test", "manual"),
    ]
    assert all(len(r) == 4 and r[2].endswith("Z") for r in rows)
    assert rows[0][3].endswith("Z") and rows[2][3] == "-"
    entries = {s.address: s for s in stored(config, _tenant_id(config, "acme"))}
    assert entries["carl@example.test"].source == "cli"
    assert entries["carl@example.test"].detail == "by hand"
    assert [r[0] for r in listed(config, "--tenant", "acme", "--reason", "manual")] == [
        "carl@example.test"
    ]
    assert addresses(config, "--tenant", "bravo") == []

    removed = cli(config, "remove", "ANN@example.test", "nobody@example.test", "-t", "acme")
    assert removed.exit_code == 1
    assert "removed ANN@example.test" in removed.stdout
    assert "nobody@example.test is not on the list of tenant 'acme'" in removed.stderr
    assert addresses(config, "--tenant", "acme") == ["bob@xn--bcher-kva.test", "carl@example.test"]
    assert cli(config, "remove", "bob@Bücher.test", "-t", "acme").exit_code == 0


def test_bad_input_exits_2_and_changes_nothing(config: Path) -> None:
    bad = cli(config, "add", "good@example.test", "bob@", "-t", "acme")
    assert bad.exit_code == 2
    assert "'bob@' is not a valid email address" in bad.stderr
    assert "nothing was added" in bad.stderr
    assert addresses(config, "--tenant", "acme") == []

    cases = [
        (["add", "a@b.test", "-t", "acme", "--reason", "bored"], "not a suppression reason"),
        (["add", "a@b.test", "-t", "acme", "--expires", "soon"], "neither a duration"),
        (["add", "a@b.test", "-t", "acme", "--expires", "2020-01-01T00:00:00Z"], "in the past"),
        (["add", "a@b.test", "-t", "acme", "--expires", "2099-01-01T00:00:00"], "no time zone"),
        (["add", "a@b.test"], "--tenant NAME_OR_ID, or --global"),
        (["add", "a@b.test", "-t", "acme", "--global"], "not both"),
        (["list", "-t", "nobody"], "no tenant named 'nobody'"),
        (["list", "-t", "acme", "--reason", "bored"], "not a suppression reason"),
        (["import", "/no/such/file", "-t", "acme"], "cannot read /no/such/file"),
    ]
    for args, message in cases:
        result = cli(config, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    assert addresses(config, "--tenant", "acme") == []


def test_tenant_by_id_and_the_global_list(config: Path) -> None:
    acme = _tenant_id(config, "acme")
    assert cli(config, "add", "mine@x.test", "--tenant", acme).exit_code == 0
    glob = cli(config, "add", "everyone@x.test", "--global", "--reason", "hard_bounce")
    assert glob.exit_code == 0 and "the global list" in glob.stdout
    assert addresses(config, "--tenant", "acme") == ["mine@x.test"]
    assert addresses(config, "--global") == ["everyone@x.test"]
    assert [s.tenant_id for s in stored(config, "*")] == ["*"]
    assert cli(config, "remove", "everyone@x.test", "-t", "acme").exit_code == 1
    assert cli(config, "remove", "everyone@x.test", "--global").exit_code == 0
    assert addresses(config, "--global") == []


def test_import_a_good_csv_file(config: Path, tmp_path: Path) -> None:
    file = tmp_path / "list.csv"
    file.write_text(
        "\ufeff"  # a byte order mark, as spreadsheets write
        f"{HEADER}\n"
        "ann@example.test,complaint,2099-01-01T00:00:00Z,from the old system\n"
        "\n"
        "bob@example.test,,,\n"
        'carl@example.test,unsubscribe,,"said ""stop"", twice"\n'
        "dora@example.test,hard_bounce,30d,\n",
        encoding="utf-8",
    )
    result = cli(config, "import", str(file), "-t", "acme", "--reason", "unsubscribe")
    assert result.exit_code == 0, result.output
    assert "imported 4 entries into the list of tenant 'acme'" in result.stdout
    entries = {s.address: s for s in stored(config, _tenant_id(config, "acme"))}
    assert {a: e.reason for a, e in entries.items()} == {
        "ann@example.test": "complaint",
        "bob@example.test": "unsubscribe",
        "carl@example.test": "unsubscribe",
        "dora@example.test": "hard_bounce",
    }
    assert entries["ann@example.test"].expires_at == 4070908800.0
    assert entries["ann@example.test"].detail == "from the old system"
    assert entries["carl@example.test"].detail == 'said "stop", twice'
    assert entries["bob@example.test"].expires_at is None
    assert entries["dora@example.test"].expires_at is not None
    assert {e.source for e in entries.values()} == {"import"}


def test_import_columns_in_another_order(config: Path, tmp_path: Path) -> None:
    file = tmp_path / "list.csv"
    file.write_text("reason,address\ncomplaint,ann@example.test\n")
    assert cli(config, "import", str(file), "-t", "acme").exit_code == 0
    assert listed(config, "-t", "acme")[0][:2] == ["ann@example.test", "complaint"]


def test_import_a_bad_file_reports_line_numbers(config: Path, tmp_path: Path) -> None:
    file = tmp_path / "list.csv"
    file.write_text(
        f"{HEADER}\n"
        "ok1@example.test,manual,,\n"
        "bob@,manual,,\n"  # line 3
        "ok2@example.test,exploded,,\n"  # line 4
        "\n"
        "ok3@example.test,manual,yesterday,\n"  # line 6
        'ok4@example.test,manual,,"a note\n'
        'over two lines"\n'
        ",manual,,\n"  # line 9
        "ok5@example.test,manual,,,extra\n"  # line 10
    )
    result = cli(config, "import", str(file), "-t", "acme")
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if f"{file}:" in line]
    assert [int(line.split(f"{file}:")[1].split(":")[0]) for line in lines] == [3, 4, 6, 9, 10]
    assert "not a valid email address" in lines[0]
    assert "'exploded' is not one of" in lines[1]
    assert "address is empty" in lines[3]
    assert "5 fields" in lines[4]
    assert "5 bad line(s); nothing was imported" in result.stderr
    assert "--skip-invalid" in result.stderr
    assert addresses(config, "-t", "acme") == []

    skipped = cli(config, "import", str(file), "-t", "acme", "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    assert "imported 2 entries" in skipped.stdout and "skipped 5 bad line(s)" in skipped.stdout
    assert addresses(config, "-t", "acme") == ["ok1@example.test", "ok4@example.test"]

    header = tmp_path / "header.csv"
    header.write_text("address,reason,colour\na@b.test,manual,red\n")
    wrong = cli(config, "import", str(header), "-t", "acme")
    assert wrong.exit_code == 2
    assert ":1: the header names unknown column(s) 'colour'" in wrong.stderr


def test_import_addresses_from_stdin(config: Path) -> None:
    text = "one@example.test\n\nTwo@Example.test\nthree@example.test,complaint\n"
    bad = cli(config, "import", "-", "-t", "acme", input=text)
    assert bad.exit_code == 2
    assert "<stdin>:4:" in bad.stderr and "needs the header line" in bad.stderr
    good_text = "one@example.test\n\nTwo@Example.test\n"
    good = cli(config, "import", "-", "-t", "acme", "-r", "unsubscribe", input=good_text)
    assert good.exit_code == 0, good.output
    assert [r[:2] for r in listed(config, "-t", "acme")] == [
        ["one@example.test", "unsubscribe"],
        ["two@example.test", "unsubscribe"],
    ]


def test_export_import_round_trip(config: Path, tmp_path: Path) -> None:
    for args in (
        ["a@x.test", "--reason", "complaint", "--expires", "2099-06-01T12:00:00Z"],
        ["b@x.test", "c@x.test", "--detail", 'quotes " and, commas'],
        ["d@bücher.test", "--reason", "hard_bounce"],
    ):
        assert cli(config, "add", *args, "-t", "acme").exit_code == 0
    exported = cli(config, "export", "-t", "acme")
    assert exported.exit_code == 0, exported.output
    assert "exported 4 entries of the list of tenant 'acme'" in exported.stderr
    rows = list(csv.reader(io.StringIO(exported.stdout)))
    assert rows == [
        HEADER.split(","),
        ["a@x.test", "complaint", "2099-06-01T12:00:00Z", ""],
        ["b@x.test", "manual", "", 'quotes " and, commas'],
        ["c@x.test", "manual", "", 'quotes " and, commas'],
        ["d@xn--bcher-kva.test", "hard_bounce", "", ""],
    ]
    file = tmp_path / "out.csv"
    to_file = cli(config, "export", str(file), "-t", "acme")
    assert to_file.exit_code == 0 and to_file.stdout == ""
    assert file.read_text(encoding="utf-8") == exported.stdout

    imported = cli(config, "import", str(file), "-t", "bravo")
    assert imported.exit_code == 0, imported.output
    again = cli(config, "export", "-t", "bravo")
    assert again.stdout == exported.stdout
    complaints = cli(config, "export", "-t", "bravo", "--reason", "complaint")
    assert complaints.stdout.splitlines() == [HEADER, "a@x.test,complaint,2099-06-01T12:00:00Z,"]


def test_the_command_is_registered() -> None:
    from postline.cli import app

    names = {group.name for group in app.registered_groups}
    assert "suppress" in names


def _tenant_id(config: Path, name: str) -> str:
    result = CliRunner().invoke(tenant.app, ["list", "--config", str(config)])
    ids = dict(line.split("\t") for line in result.stdout.splitlines())
    return ids[name]
