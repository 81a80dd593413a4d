"""The throttle backend's Redis URLs: one server as redis-py reads it, or a master found
through Sentinel; ``[throttle] backend`` is checked when the configuration loads."""

from __future__ import annotations

import pytest

from postline.config import load_config
from postline.errors import ConfigError, ThrottleError
from postline.redisurl import SENTINEL_PORT, redis_url
from postline.throttle.redis import RedisThrottleBackend


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    url = redis_url(
        "redis+sentinel://app:s%40cret@10.0.0.1:26380,[::1],sentinel-c:26381/throttle/3"
        "?sentinel_password=watch"
    )
    assert url.is_sentinel
    assert url.sentinels == (("10.0.0.1", 26380), ("::1", SENTINEL_PORT), ("sentinel-c", 26381))
    assert (url.service, url.db) == ("throttle", 3)
    assert (url.username, url.password) == ("app", "s@cret")
    assert (url.sentinel_username, url.sentinel_password) == (None, "watch")
    assert "s@cret" not in repr(url) and "watch" not in repr(url)


def test_a_password_alone_and_the_default_database() -> None:
    url = redis_url("redis+sentinel://:pw@h/svc")
    assert (url.username, url.password, url.db) == (None, "pw", 0)
    assert url.sentinels == (("h", SENTINEL_PORT),)


@pytest.mark.parametrize(
    "url", ["redis://h:6379/0", "rediss://u:p@h:6380/1", "unix:///run/redis.sock?db=2"]
)
def test_one_server_urls_pass_through_to_redis_py(url: str) -> None:
    parsed = redis_url(url)
    assert parsed.url == url and not parsed.is_sentinel


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://u:s3cret@h1:26379,h2:26379", "names no service"),
        ("redis+sentinel://u:s3cret@h1:26379/", "names no service"),
        ("redis+sentinel://u:s3cret@/svc", "names no sentinel"),
        ("redis+sentinel://u:s3cret@h1:2x/svc", "port must be a number"),
        ("redis+sentinel://u:s3cret@h1,,h2/svc", "empty host"),
        ("redis+sentinel://u:s3cret@h1/svc/zero", "must be a number"),
        ("redis+sentinel://u:s3cret@h1/svc/0/extra", "too many path parts"),
        ("redis+sentinel://u:s3cret@h1/svc?ssl=true", "unknown option 'ssl'"),
        ("redis+cluster://u:s3cret@h1:7000,h2:7001", "Redis Cluster is not supported"),
        ("memcached://u:s3cret@h1", "unknown scheme"),
    ],
)
def test_bad_urls_say_what_to_write_without_the_password(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        redis_url(url)
    assert "s3cret" not in str(caught.value)
    # the configuration refuses it when it loads, naming the setting...
    with pytest.raises(ConfigError, match=f"throttle.backend: .*{says}"):
        load_config(text=f'[throttle]\nbackend = "{url}"\n', environ={})
    # ...and so does the backend built without a configuration
    with pytest.raises(ThrottleError, match=says):
        RedisThrottleBackend(url)


def test_memory_and_a_word_that_is_no_url() -> None:
    assert load_config(text='[throttle]\nbackend = "memory"\n', environ={}).throttle.backend
    with pytest.raises(ConfigError, match="use 'memory' or a Redis URL"):
        load_config(text='[throttle]\nbackend = "redis"\n', environ={})


def test_a_url_is_shown_without_its_passwords() -> None:
    from postline.redisurl import shown

    assert shown("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert shown("redis://app:s3cret@h:1/0") == "redis://app:***@h:1/0"
    assert (
        shown("redis+sentinel://app:pw@s1:26379,s2/mymaster?sentinel_password=x&x=1")
        == "redis+sentinel://app:***@s1:26379,s2/mymaster?sentinel_password=***&x=1"
    )
    assert shown("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    # Passwords holding '@' or '/', and passwords given as options.
    assert shown("redis://:p@ss@host:1/0") == "redis://:***@host:1/0"
    assert shown("redis://u:pa/ss@h:1/0") == "redis://u:***@h:1/0"
    assert shown("redis://host/0?password=hunter2&x=1") == "redis://host/0?password=***&x=1"
    assert shown("unix:///run/redis.sock?password=z") == "unix:///run/redis.sock?password=***"


def test_an_ipv6_sentinel_without_its_closing_bracket_is_refused() -> None:
    with pytest.raises(ValueError, match="IPv6"):
        redis_url("redis+sentinel://[::1/svc")
