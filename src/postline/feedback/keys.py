"""The secrets that sign VERP return paths.

``[bounce] secret`` when set (a fleet must share it); otherwise a random key created
once in ``data_dir/verp.key`` (mode 0600), so a single node works without setup and its
tokens stay valid across restarts. ``[bounce] previous_secrets`` still verify (rotation).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from postline.config import Config

__all__ = ["verp_secrets"]

KEY_FILE = "verp.key"


def _key_file(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32).encode("ascii")
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # first writer wins when two processes race
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()


def verp_secrets(config: Config) -> list[bytes]:
    """The signing secret first, then the older ones still accepted."""
    b = config.bounce
    current = b.secret.encode() if b.secret else _key_file(config.data_dir / KEY_FILE)
    return [current, *(s.encode() for s in b.previous_secrets if s)]
