"""API key format: ``olk_<public id>_<secret>_<checksum>``, kept only as an HMAC-SHA256 with a server pepper.

The prefix and the CRC32 checksum let secret scanners recognise a leaked key offline (GitHub's token
format); the public id is the lookup key, so the secret itself is never searched for or indexed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

PREFIX = "olk"
ID_LENGTH = 8
SECRET_BYTES = 32
SECRET_LENGTH = 43  # 32 random bytes in base62
CHECKSUM_LENGTH = 6
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PATTERN = re.compile(rf"{PREFIX}_([0-9A-Za-z]{{{ID_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH}}})"
                      rf"_([0-9A-Za-z]{{{CHECKSUM_LENGTH}}})")


def base62(number: int, width: int) -> str:
    """``number`` in base62, left-padded with zeros to ``width`` characters."""
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_ALPHABET[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(body: str) -> str:
    """The 6-character base62 CRC32 of everything before the checksum."""
    return base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


@dataclass(frozen=True)
class ParsedKey:
    """A key whose shape and checksum are valid; says nothing about whether it was issued."""

    key_id: str
    full: str


def new_key_id() -> str:
    """A random public id (shown in listings, used for lookup and revocation)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))


def issue(key_id: str) -> str:
    """A new key for ``key_id`` with a fresh 256-bit secret."""
    secret = base62(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big"), SECRET_LENGTH)
    body = f"{PREFIX}_{key_id}_{secret}"
    return f"{body}_{checksum(body)}"


def parse(token: str) -> ParsedKey | None:
    """The key's public id when ``token`` has the right shape and checksum, else None."""
    match = _PATTERN.fullmatch(token.strip())
    if match is None:
        return None
    body = f"{PREFIX}_{match.group(1)}_{match.group(2)}"
    if not hmac.compare_digest(checksum(body), match.group(3)):
        return None
    return ParsedKey(key_id=match.group(1), full=match.group(0))


def looks_like_key(text: str) -> bool:
    """Whether ``text`` contains something shaped like a corral key (for scanners and log scrubbing)."""
    return any(parse(m.group(0)) for m in re.finditer(rf"{PREFIX}_[0-9A-Za-z_]+", text))


def digest(pepper: bytes, key: str) -> str:
    """The stored form of a key: hex HMAC-SHA256 keyed with the server pepper."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


# Compared against when the id is unknown, so both failures take the same path.
DUMMY_DIGEST = "0" * 64


def matches(pepper: bytes, key: str, stored: str | None) -> bool:
    """Constant-time comparison of a presented key with a stored digest (or the dummy one)."""
    expected = stored if stored is not None else DUMMY_DIGEST
    return hmac.compare_digest(digest(pepper, key), expected) and stored is not None
