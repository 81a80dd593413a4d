"""The PostgreSQL store URL: several hosts in libpq's syntax, and what postline reads
from it itself."""

from __future__ import annotations

import pytest

from postline.config import Config, postgres_url
from postline.errors import ConfigError
from postline.runtime import store_kind


def test_several_hosts_become_one_url_each_in_order() -> None:
    url = postgres_url(
        "postgresql://app:s3cret@h1:5432,[::1]:5433,h3/mail"
        "?target_session_attrs=read-write&connect_timeout=3&sslmode=disable"
    )
    assert url.hosts == ("h1:5432", "[::1]:5433", "h3")
    assert url.dsns == (
        "postgresql://app:s3cret@h1:5432/mail?target_session_attrs=read-write&sslmode=disable",
        "postgresql://app:s3cret@[::1]:5433/mail?target_session_attrs=read-write&sslmode=disable",
        "postgresql://app:s3cret@h3/mail?target_session_attrs=read-write&sslmode=disable",
    )
    assert url.connect_timeout == 3.0
    assert url.target_session_attrs == "read-write"
    assert url.synchronous_commit == "on"


def test_one_host_and_hosts_in_the_query_pass_through() -> None:
    assert postgres_url("postgresql://u@db/mail").dsns == ("postgresql://u@db/mail",)
    query = "postgresql:///mail?host=h1,h2&port=5432,5433"
    assert postgres_url(query).dsns == ("postgresql:///mail?host=h1%2Ch2&port=5432%2C5433",)
    assert postgres_url("postgresql://db/mail?synchronous_commit=remote_apply").dsns == (
        "postgresql://db/mail",
    )
    assert (
        postgres_url("postgresql://db/mail?synchronous_commit=remote_apply").synchronous_commit
        == "remote_apply"
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://u@h1:54x2,h2/db", "the port must be a number"),
        ("postgresql://u@h1,,h2/db", "empty host"),
        ("postgresql://h/db?synchronous_commit=local", "may lose acknowledged mail"),
        ("postgresql://h/db?synchronous_commit=off", "may lose acknowledged mail"),
        ("postgresql://h/db?target_session_attrs=writable", "use one of"),
        ("postgresql://h/db?connect_timeout=soon", "write seconds"),
    ],
)
def test_bad_urls_say_what_is_wrong_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        postgres_url(url.replace("u@", "u:s3cret@"))
    assert "s3cret" not in str(caught.value)
    with pytest.raises((ValueError, ConfigError)):
        Config(store=url)


def test_the_log_names_every_host_and_never_the_password() -> None:
    config = Config(store="postgresql://u:s3cret@h1:5432,h2:5433/mail?target_session_attrs=any")
    assert store_kind(config) == "postgresql h1:5432,h2:5433/mail"
