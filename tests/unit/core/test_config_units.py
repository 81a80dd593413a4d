"""Configuration loading, environment overrides and unit parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from postline.config import load_config
from postline.errors import ConfigError
from postline.smtp.server import with_enhanced
from postline.units import format_duration, parse_duration, parse_size


def test_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "n.toml"
    path.write_text('data_dir = "state"\n[retry]\nfirst = "2s"\n[delivery]\nsmtp_port = 2525\n')
    cfg = load_config(
        path, environ={"POSTLINE_API__LISTEN": "127.0.0.1:9000", "POSTLINE_RETRY__MAX_AGE": '"1h"'}
    )
    assert cfg.data_dir == tmp_path / "state"
    assert cfg.retry.first == 2.0
    assert cfg.retry.max_age == 3600.0
    assert cfg.delivery.smtp_port == 2525
    assert cfg.api.listen == "127.0.0.1:9000"
    assert cfg.submission.listen == "127.0.0.1:2587"
    assert cfg.submission.trusted_networks == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[api]\nlisten = 'nope'", "api.listen"),
        ("[api]\nlistn = '1'", "unknown key"),
        ("[retry]\nfirst = 'soon'", "not a duration"),
        ("[submission]\ntrusted_networks = ['10.0.0.0/33']", "not a network"),
        ("[submission]\ntrusted_networks = ['10.0.0.0/8']", "trusted_tenant"),
        ("data_dir = ", "not valid TOML"),
    ],
)
def test_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(text=text, environ={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/postline.toml", environ={})


def test_units() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("3d") == 259200
    assert parse_duration(5) == 5.0
    assert parse_size("25MB") == 25_000_000
    assert parse_size("1KiB") == 1024
    assert format_duration(90) == "1m30s"
    for bad in ("", "5 parsecs", "-1s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_enhanced_codes_added_to_library_replies() -> None:
    assert with_enhanced(b"503 Error: need MAIL command") == b"503 5.5.1 need MAIL command"
    assert with_enhanced(b"552 Error: Too much mail data") == b"552 5.3.4 Too much mail data"
    assert with_enhanced(b"250 2.1.0 Sender OK") == b"250 2.1.0 Sender OK"
    assert with_enhanced(b"354 End data") == b"354 End data"
    assert with_enhanced(b"220 host ESMTP") == b"220 host ESMTP"
