"""The secrets that sign VERP return paths.

``[bounce] secret`` when set (a fleet must share it); otherwise a random key created
once in ``data_dir/verp.key`` (mode 0600), so a single node works without setup and its
tokens stay valid across restarts. ``[bounce] previous_secrets`` still verify (rotation).
"""

from __future__ import annotations

from postline.config import Config
from postline.keyfile import ensure_key_file

__all__ = ["verp_secrets"]

KEY_FILE = "verp.key"


def verp_secrets(config: Config) -> list[bytes]:
    """The signing secret first, then the older ones still accepted."""
    b = config.bounce
    current = b.secret.encode() if b.secret else ensure_key_file(config.data_dir / KEY_FILE)
    return [current, *(s.encode() for s in b.previous_secrets if s)]
