"""A fleet's operator node: a node on the given store that does not deliver, with an
admin token, for fleet tests that act on one node and watch another obey."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from postline.config import load_config
from postline.control.tokens import generate_token, hash_token
from postline.runtime import Node
from support.node import node_toml

# Retries and scans fast enough for a test to watch a node follow another.
FAST_FLEET = """
[retry]
first = "1s"
max_interval = "2s"
max_age = "1h"
[queue]
scan_interval = "500ms"
"""


@contextlib.asynccontextmanager
async def operator_node(directory: Path, store: str) -> AsyncIterator[tuple[Node, str]]:
    """A started node (named ``node-a``) on ``store`` with delivery off, and an admin
    token for it; stopped on the way out."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = directory / "node.toml"
    text = node_toml(directory / "data", "[delivery]\nenabled = false\n")
    cfg.write_text(f'store = "{store}"\n' + text.replace("test-node", "node-a"))
    node = Node(load_config(cfg, environ={}))
    await node.start()
    try:
        assert node.engine is None
        secret = generate_token()
        await node.store.add_admin_token("ops", hash_token(secret), secret[:11])
        yield node, secret
    finally:
        await node.stop()
