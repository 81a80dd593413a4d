"""DKIM keys: generation, PEM round trips, p= values, selectors, sealing at rest."""

from __future__ import annotations

import base64
import calendar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from postline.dkim import keys
from postline.dkim.errors import DkimError, KeyFormatError, SealError
from postline.dkim.keys import (
    DkimKey,
    algorithm_of,
    generate_private_key,
    load_private_key,
    master_key,
    new_key,
    public_key_value,
    seal,
    selector_for,
    unseal,
)
from postline.errors import ConfigError, PostlineError

NOV_2026 = calendar.timegm((2026, 11, 27, 12, 0, 0))


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    return generate_private_key("rsa-sha256")


@pytest.fixture(scope="module")
def ed_pem() -> bytes:
    return generate_private_key("ed25519-sha256")


def test_rsa_default_is_2048_pkcs8(rsa_pem: bytes) -> None:
    assert rsa_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = load_private_key(rsa_pem)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert algorithm_of(key) == "rsa-sha256"


@pytest.mark.parametrize("bits", [1024, 3072])
def test_rsa_sizes(bits: int) -> None:
    key = load_private_key(generate_private_key("rsa-sha256", bits=bits))
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == bits


@pytest.mark.parametrize("bits", [512, 2000, 8192])
def test_rsa_sizes_refused(bits: int) -> None:
    with pytest.raises(KeyFormatError, match="not allowed"):
        generate_private_key("rsa-sha256", bits=bits)


def test_ed25519(ed_pem: bytes) -> None:
    key = load_private_key(ed_pem)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert algorithm_of(key) == "ed25519-sha256"
    # RFC 8463 §4.2: p= is the raw 32-byte key
    raw = base64.b64decode(public_key_value(ed_pem))
    assert raw == key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert len(raw) == 32


def test_rsa_public_value_is_subject_public_key_info(rsa_pem: bytes) -> None:
    der = base64.b64decode(public_key_value(rsa_pem))
    public = serialization.load_der_public_key(der)
    assert isinstance(public, rsa.RSAPublicKey)
    private = load_private_key(rsa_pem)
    assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]


def test_pem_round_trip_and_pkcs1(rsa_pem: bytes) -> None:
    key = load_private_key(rsa_pem)
    assert isinstance(key, rsa.RSAPrivateKey)
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert public_key_value(pkcs1) == public_key_value(rsa_pem)


def _small_rsa_key() -> rsa.RSAPrivateKey:
    """A 648-bit RSA key (cryptography no longer generates keys under 1024 bits)."""
    p, q, e = 2**521 - 1, 2**127 - 1, 65537  # two Mersenne primes
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


def test_load_refuses_what_dkim_cannot_use() -> None:
    with pytest.raises(KeyFormatError, match="cannot read"):
        load_private_key(b"not a key")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyFormatError, match="RSA or Ed25519"):
        load_private_key(ec_pem)
    small = _small_rsa_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(KeyFormatError, match="too small"):
        load_private_key(small)


def test_selectors() -> None:
    assert selector_for("rsa-sha256", NOV_2026) == "pl202611r"
    assert selector_for("ed25519-sha256", NOV_2026) == "pl202611e"
    assert selector_for("rsa-sha256", NOV_2026, prefix="pl2") == "pl2202611r"
    with pytest.raises(KeyFormatError):
        selector_for("rsa-sha256", NOV_2026, prefix="bad prefix")


def test_dkim_key(ed_pem: bytes) -> None:
    key = DkimKey("Bücher.Example.", "PL202611E", "ed25519-sha256", ed_pem)
    assert key.domain == "xn--bcher-kva.example"
    assert key.selector == "pl202611e"
    assert key.record_name == "pl202611e._domainkey.xn--bcher-kva.example"
    assert key.public_key == public_key_value(ed_pem)
    assert "PRIVATE" not in repr(key) and "private_pem" not in repr(key)
    with pytest.raises(KeyFormatError):
        DkimKey("not a domain", "s", "rsa-sha256", ed_pem)
    with pytest.raises(KeyFormatError):
        DkimKey("shop.example", "a;b", "rsa-sha256", ed_pem)
    with pytest.raises(KeyFormatError, match="unsupported"):
        DkimKey("shop.example", "s", "rsa-sha1", ed_pem)  # type: ignore[arg-type]


def test_new_key() -> None:
    key = new_key("shop.example", "ed25519-sha256", now=NOV_2026)
    assert (key.domain, key.selector, key.algorithm) == (
        "shop.example",
        "pl202611e",
        "ed25519-sha256",
    )
    assert new_key("shop.example", "ed25519-sha256", selector="s1").selector == "s1"


# -- sealing -------------------------------------------------------------------------


def test_master_key_is_hkdf_of_the_secret() -> None:
    one = master_key("a long random secret string")
    assert len(one) == 32
    assert one == master_key("a long random secret string")
    assert one != master_key("a long random secret strinG")
    with pytest.raises(ConfigError, match="empty"):
        master_key("")


def test_seal_round_trip(rsa_pem: bytes) -> None:
    mk = master_key("s3cret")
    sealed = seal(rsa_pem, mk)
    assert sealed.startswith(b"PLDK\x01")
    assert rsa_pem not in sealed
    assert len(sealed) == 5 + 12 + len(rsa_pem) + 16
    assert unseal(sealed, mk) == rsa_pem
    assert seal(rsa_pem, mk) != sealed  # a fresh nonce every time


def test_unseal_with_the_wrong_key_says_so(ed_pem: bytes) -> None:
    sealed = seal(ed_pem, master_key("old secret"))
    with pytest.raises(SealError, match="master key") as info:
        unseal(sealed, master_key("new secret"))
    assert isinstance(info.value, DkimError) and isinstance(info.value, PostlineError)


def test_unseal_refuses_changed_or_foreign_bytes(ed_pem: bytes) -> None:
    mk = master_key("s3cret")
    sealed = seal(ed_pem, mk, context=b"shop.example/pl202611e")
    assert unseal(sealed, mk, context=b"shop.example/pl202611e") == ed_pem
    with pytest.raises(SealError):
        unseal(sealed, mk)  # another row's context
    flipped = bytearray(sealed)
    flipped[-20] ^= 1
    with pytest.raises(SealError):
        unseal(bytes(flipped), mk, context=b"shop.example/pl202611e")
    with pytest.raises(SealError, match="version 2"):
        unseal(b"PLDK\x02" + sealed[5:], mk)
    with pytest.raises(SealError, match="not a sealed"):
        unseal(ed_pem, mk)
    with pytest.raises(SealError, match="truncated"):
        unseal(sealed[:20], mk)
    with pytest.raises(SealError, match="32 bytes"):
        seal(ed_pem, b"short")


def test_module_surface() -> None:
    assert set(keys.__all__) <= set(dir(keys))
