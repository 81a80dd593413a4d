"""The import arrows between packages (STYLE.md "Proposed layout") and driver isolation."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "postline"

# module prefix -> postline packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "postline.model": set(),
    "postline.errors": set(),
    "postline.units": set(),
    "postline.hostlist": set(),
    "postline.redisurl": {"hostlist"},
    "postline.config": {"errors", "units", "redisurl", "hostlist"},
    # SMTP is protocol alone (client, wire, replies, the aiosmtpd server base): no queue,
    # tenant, store or feedback knowledge; the servers built on it are front doors.
    "postline.smtp": {"model", "errors"},
    "postline.dns": {"model", "errors"},
    "postline.store": {"model", "errors", "config"},
    "postline.throttle": {"model", "errors", "units", "redisurl", "hostlist"},
    "postline.schedule": {"model"},
    "postline.ingest": {"model", "errors", "store", "metrics"},
    "postline.deliver": {
        "bounce",
        "model",
        "errors",
        "config",
        "smtp",
        "dns",
        "throttle",
        "store",
        "schedule",
        "metrics",
        "units",
    },
    "postline.limits": {"errors", "config", "store", "throttle"},
    "postline.control": {
        "model",
        "errors",
        "config",
        "store",
        "tenants",
        "reputation",
        "units",
        "limits",
    },
    "postline.api": {
        "control",
        "limits",
        "model",
        "errors",
        "config",
        "ingest",
        "store",
        "tenants",
        "reputation",
        "units",
        "dkim",
        "domains",
        "check",
        "events",
        "webhooks",
        "dashboard",
    },
    # The SMTP front doors, beside the API: submission hands mail to ingest, inbound
    # stores what comes back for feedback to process.
    "postline.submission": {"config", "errors", "ingest", "metrics", "smtp", "store", "tenants"},
    "postline.inbound": {"bounce", "errors", "feedback", "metrics", "model", "smtp", "store"},
    # The operator dashboard acts and reads only through the control layer: no store.
    "postline.dashboard": {"control", "config", "errors", "model", "units"},
    "postline.activity": {"model", "store"},
    "postline.workers.link": {"metrics", "schedule"},
    "postline.client": set(),
    "postline.workers": {
        "config",
        "errors",
        "runtime",
        "schedule",
        "smtp",
        "store",
        "throttle",
        "tls",
    },
    "postline.preflight": {"config", "domains", "errors", "feedback", "runtime", "tls"},
    "postline.tls": {"errors"},
    "postline.events": {"model", "store"},
    "postline.retention": {"config", "store"},
    "postline.webhooks": {"model", "errors", "config", "store", "events"},
    "postline.reputation": {"model", "errors", "config", "store", "metrics", "units"},
    "postline.sim": {"model", "errors", "smtp"},
    "postline.tenants": {"store", "errors"},
    "postline.bounce": {"model", "errors"},
    "postline.keyfile": set(),
    "postline.dkim": {"errors", "dns"},
    "postline.domains": {"config", "dkim", "errors", "keyfile", "model", "store"},
    # The pre-flight message check reads sender domains; nothing imports it but the
    # front doors (API route, CLI).
    "postline.check": {"config", "dkim", "domains", "errors", "store"},
    "postline.feedback": {
        "bounce",
        "model",
        "errors",
        "config",
        "store",
        "ingest",
        "metrics",
        "keyfile",
    },
}
# The front doors (HTTP API, SMTP submission, inbound SMTP) are wired by the composition
# root and the CLI; no library package imports one.
FRONT_DOORS = {"api", "submission", "inbound"}
WIRING = {"postline.runtime", "postline.cli"}
# Exceptions that are entry points, not library code.
ENTRY_POINTS = {"postline.sim.__main__"}


def _modules() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, ast.parse(path.read_text(encoding="utf-8"))))
    return out


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_packages_import_only_what_the_layout_allows() -> None:
    problems = []
    for name, tree in _modules():
        if name in ENTRY_POINTS:
            continue
        rule = next((p for p in sorted(ALLOWED, key=len, reverse=True) if name.startswith(p)), None)
        if rule is None:
            continue
        own = rule.split(".")[1]
        for imported in _imports(tree):
            if not imported.startswith("postline."):
                continue
            package = imported.split(".")[1]
            if package != own and package not in ALLOWED[rule]:
                problems.append(f"{name} imports {imported}")
    assert problems == []


def test_smtp_is_protocol_only() -> None:
    above = {
        "api",
        "control",
        "deliver",
        "feedback",
        "inbound",
        "ingest",
        "limits",
        "store",
        "submission",
        "tenants",
        "config",
        "metrics",
    }
    problems = [
        f"{name} imports {imported}"
        for name, tree in _modules()
        if name == "postline.smtp" or name.startswith("postline.smtp.")
        for imported in _imports(tree)
        if imported.startswith("postline.") and imported.split(".")[1] in above
    ]
    assert problems == []
    # The rule above is what the layout test enforces too; keep the two in step.
    assert not ALLOWED["postline.smtp"] & above


def test_only_the_composition_root_and_the_cli_import_a_front_door() -> None:
    problems = []
    for name, tree in _modules():
        own = name.split(".")[1] if "." in name else name
        if own in FRONT_DOORS or any(name == w or name.startswith(w + ".") for w in WIRING):
            continue
        for imported in _imports(tree):
            if imported.startswith("postline.") and imported.split(".")[1] in FRONT_DOORS:
                problems.append(f"{name} imports {imported}")
    assert problems == []


# Modules outside the store that may use a database driver, and which one.
DRIVER_EXCEPTIONS: dict[str, set[str]] = {
    # The node-local shared throttle keeps its state in a SQLite file that the worker
    # processes of one node share; it is not the store and holds no store data.
    "postline.throttle.shared": {"sqlite3"},
}


def test_only_the_store_touches_database_drivers_and_only_config_reads_the_environment() -> None:
    for name, tree in _modules():
        imported = _imports(tree)
        if not name.startswith("postline.store."):
            drivers = {"sqlite3", "asyncpg"} - DRIVER_EXCEPTIONS.get(name, set())
            assert not imported & drivers, name
        if name != "postline.config":
            source = ast.unparse(tree)
            assert "os.environ" not in source and "getenv" not in source, name


def test_public_names_are_declared() -> None:
    for name, tree in _modules():
        if name.endswith("__main__") or name.startswith("postline.cli"):
            continue
        has_all = any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for node in tree.body
        )
        defines = any(
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and not node.name.startswith("_")
            for node in tree.body
        )
        assert has_all or not defines, f"{name} has public definitions but no __all__"
