"""Key format, checksum, keyed hashing and the constant-time path (security.md §5)."""

from __future__ import annotations

import hmac

import pytest

from corral_auth import apikeys


def test_issued_keys_have_prefix_id_secret_and_checksum() -> None:
    key = apikeys.issue("AbCd1234")
    prefix, key_id, secret, check = key.split("_")
    assert (prefix, key_id) == ("olk", "AbCd1234")
    assert len(secret) == apikeys.SECRET_LENGTH and secret.isalnum()
    assert check == apikeys.checksum(f"olk_{key_id}_{secret}")
    assert apikeys.parse(key) == apikeys.ParsedKey("AbCd1234", key)


def test_keys_are_unique() -> None:
    assert len({apikeys.issue("AbCd1234") for _ in range(200)}) == 200


@pytest.mark.parametrize("mangle", [
    lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),           # checksum digit
    lambda k: k[:20] + ("x" if k[20] != "x" else "y") + k[21:],  # secret digit: checksum catches it
    lambda k: "sk_" + k[4:],                                     # other prefix
    lambda k: k + "0",
    lambda k: "",
])
def test_a_mangled_key_fails_the_offline_check(mangle) -> None:
    assert apikeys.parse(mangle(apikeys.issue("AbCd1234"))) is None


def test_scanners_recognise_keys_in_text() -> None:
    key = apikeys.issue("Zz9Zz9Zz")
    assert apikeys.looks_like_key(f"export OLLAMA_API_KEY={key}\n")
    assert not apikeys.looks_like_key("olk_notakey_at_all")


def test_stored_digest_is_an_hmac_with_the_pepper() -> None:
    key = apikeys.issue("AbCd1234")
    digest = apikeys.digest(b"pepper-a", key)
    assert digest != apikeys.digest(b"pepper-b", key)
    assert key not in digest and len(digest) == 64
    assert apikeys.matches(b"pepper-a", key, digest)
    assert not apikeys.matches(b"pepper-b", key, digest)


def test_unknown_id_and_wrong_secret_take_the_same_comparison(monkeypatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((type(a).__name__, str(len(b))))
        return real(a, b)

    monkeypatch.setattr(apikeys.hmac, "compare_digest", spy)
    key = apikeys.issue("AbCd1234")
    assert not apikeys.matches(b"p", key, None)  # unknown id: compared with the dummy digest
    assert not apikeys.matches(b"p", key, apikeys.digest(b"p", apikeys.issue("AbCd1234")))  # wrong secret
    assert calls == [("str", "64"), ("str", "64")]
