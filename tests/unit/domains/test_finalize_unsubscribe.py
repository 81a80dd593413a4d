"""The Finalizer's List-Unsubscribe headers: added per recipient on the configured
streams, never beside a List-Unsubscribe the sender wrote itself."""

from __future__ import annotations

from types import SimpleNamespace

from postline.domains.finalize import Finalizer


def _item(
    body: bytes, stream: str = "marketing", mid: str = "01JTEST0000000000000000000"
) -> object:
    message = SimpleNamespace(id=mid, tenant_id="t1", body=body, source="api", stream=stream)
    return SimpleNamespace(message=message, recipients=[SimpleNamespace(idx=0)])


def _finalizer() -> Finalizer:
    def headers(mid: str, idx: int) -> list[tuple[str, str]]:
        return [
            ("List-Unsubscribe", f"<https://u.example/u/{mid}-{idx}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]

    return Finalizer(signer_for=None, unsubscribe=headers, unsubscribe_streams=["marketing"])


PLAIN = b"From: a@shop.example\r\nTo: b@example.com\r\nSubject: sale\r\n\r\nhi\r\n"
OWN = (
    b"From: a@shop.example\r\nTo: b@example.com\r\nSubject: sale\r\n"
    b"list-unsubscribe: <mailto:leave@shop.example>\r\n\r\nhi\r\n"
)


def test_the_stream_gets_one_click_headers_naming_the_recipient() -> None:
    out = _finalizer()(_item(PLAIN))  # type: ignore[arg-type]
    assert out.count(b"List-Unsubscribe:") == 1
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in out
    assert out.endswith(PLAIN)


def test_a_senders_own_list_unsubscribe_is_kept_alone() -> None:
    finalizer = _finalizer()
    for _ in range(2):  # the second call answers from the cache
        out = finalizer(_item(OWN, mid="01JTEST0000000000000000001"))  # type: ignore[arg-type]
        assert out == OWN


def test_other_streams_are_left_as_they_are() -> None:
    assert _finalizer()(_item(PLAIN, stream="transactional")) == PLAIN  # type: ignore[arg-type]
