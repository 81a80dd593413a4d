"""The ``postline`` command: one module per command group."""

from __future__ import annotations

import typer

from postline.cli import (
    admin,
    bounce,
    check,
    config_cmd,
    demo,
    init,
    key,
    queue,
    serve,
    suppress,
    tenant,
)
from postline.cli.sim import sim

__all__ = ["app", "main"]

app = typer.Typer(
    name="postline",
    help="postline: an email sending platform (HTTP + SMTP in, throttled SMTP out).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("init")(init.init)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("sim")(sim)
app.command("openapi")(config_cmd.openapi)
app.command("check")(check.check)
app.add_typer(tenant.app, name="tenant")
app.add_typer(key.app, name="key")
app.add_typer(queue.app, name="queue")
app.add_typer(admin.app, name="admin")
app.add_typer(config_cmd.app, name="config")
app.add_typer(bounce.app, name="bounce")
app.add_typer(suppress.app, name="suppress")


def main() -> None:
    app()
