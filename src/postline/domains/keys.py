"""The secret that seals DKIM private keys at rest: ``[domains] key_secret``, or a
random one kept in ``data_dir/dkim-master.key`` (one node only)."""

from __future__ import annotations

from postline.config import Config
from postline.keyfile import ensure_key_file

__all__ = ["key_secret"]

KEY_FILE = "dkim-master.key"


def key_secret(config: Config) -> str:
    if config.domains.key_secret:
        return config.domains.key_secret
    return ensure_key_file(config.data_dir / KEY_FILE).decode("ascii")
