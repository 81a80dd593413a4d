"""What a node needs from its host before it starts, checked before anything is opened.

A configuration can be valid and still not start: a certificate file that is missing, a
key file in ``data_dir`` that cannot be read, a port another process holds. ``postline
config check`` and ``postline serve`` both ask :func:`problems`, so a file that passes the
check does not fail ``serve`` on any of these, and both say the same thing: the setting,
the file or address, and what the system answered. Nothing is created or kept open: the
self-signed certificate and the random keys are only read if they exist, and every
listener is bound and closed again by the function the node binds it with.
"""

from __future__ import annotations

import os
from pathlib import Path

from postline.config import Config
from postline.domains.keys import KEY_FILE as DKIM_KEY_FILE
from postline.errors import ConfigError
from postline.feedback.keys import KEY_FILE as VERP_KEY_FILE
from postline.runtime import SELF_SIGNED, bind_listen, listen_settings, tls_context
from postline.tls import load_server_context, self_signed_paths

__all__ = ["check", "problems"]


def problems(config: Config, *, listen: bool = True) -> list[str]:
    """Every reason a node with ``config`` would fail to start on this host, one line
    each (empty: none found). ``listen=False`` leaves out the listen addresses (for the
    configuration of a node that is running)."""
    found = _data_dir(config)
    found += _tls(config)
    found += _key_files(config)
    if listen:
        found += _listeners(config)
    return found


def check(config: Config, *, listen: bool = True) -> None:
    """:func:`problems`, raised as one :class:`ConfigError` listing them all."""
    found = problems(config, listen=listen)
    if found:
        raise ConfigError("\n  ".join(["a node cannot start with this configuration:", *found]))


def _data_dir(config: Config) -> list[str]:
    path = config.data_dir
    if path.exists():
        if not path.is_dir():
            return [f"data_dir: {path} is not a directory"]
        if not os.access(path, os.W_OK | os.X_OK):
            return [f"data_dir: {path} is not writable"]
        return []
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return [f"data_dir: cannot create {path}: {parent} is not a writable directory"]
    return []


def _tls(config: Config) -> list[str]:
    uses_tls = config.submission.enabled or (config.inbound.enabled and config.bounce.domain)
    if not uses_tls:
        return []
    try:
        if config.submission.tls_cert:
            tls_context(config)
        else:  # made on first start; only an existing pair is read here
            cert, key = self_signed_paths(config.data_dir)
            if cert.exists() or key.exists():
                load_server_context(cert, key, cert_setting=SELF_SIGNED, key_setting=SELF_SIGNED)
    except ConfigError as exc:
        return [str(exc)]
    return []


def _key_files(config: Config) -> list[str]:
    found = []
    kept = (
        ("domains.key_secret", config.domains.key_secret, DKIM_KEY_FILE, "DKIM master key"),
        ("bounce.secret", config.bounce.secret, VERP_KEY_FILE, "VERP key"),
    )
    for setting, value, name, what in kept:
        path: Path = config.data_dir / name
        if value or not path.exists():
            continue  # configured, or made on first start
        try:
            path.read_bytes()
        except OSError as exc:
            found.append(
                f"{setting} (empty: the {what} kept in data_dir): cannot read {path}: "
                f"{exc.strerror}"
            )
    return found


def _listeners(config: Config) -> list[str]:
    """Each listener bound as the node binds them (all held at once, so two settings
    naming one address are caught too), then closed."""
    found = []
    bound = []
    try:
        for wanted in listen_settings(config):
            if wanted is None:
                continue
            setting, listen = wanted
            try:
                bound.append(bind_listen(listen, setting=setting))
            except ConfigError as exc:
                found.append(str(exc))
    finally:
        for sock in bound:
            sock.close()
    return found
