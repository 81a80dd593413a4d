"""Random secrets kept in a file of the data directory, created once (mode 0600).

For a single node that needs a stable secret without configuration (VERP signatures,
the key that seals DKIM private keys). A fleet configures shared secrets instead.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["ensure_key_file"]


def ensure_key_file(path: Path) -> bytes:
    """The secret in ``path``, created with 32 random bytes (hex) when missing.

    Written to a temporary file, fsync'd, then hard-linked into place, so two processes
    starting at once agree on one secret and a crash never leaves a half-written one.
    """
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # the first writer wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()
