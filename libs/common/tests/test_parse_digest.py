"""parse_digest: the one mapping of a bad digest in a URL to Ollama's 400 text."""

from __future__ import annotations

import pytest

from corral_common.digest import Digest, parse_digest
from corral_common.errors import BadRequest

HEX = "a" * 64


@pytest.mark.parametrize("text", [f"sha256:{HEX}", f"sha256-{HEX}", f"sha256:{HEX.upper()}"])
def test_valid_digests_parse(text: str) -> None:
    assert parse_digest(text) == Digest(HEX)


@pytest.mark.parametrize("text", ["", "sha256:abc", f"md5:{HEX}", f"sha256:{HEX}\n", f"sha256:{HEX}0"])
def test_invalid_digest_is_a_400_with_ollamas_text(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_digest(text)
    assert caught.value.status == 400
    assert caught.value.body() == {"error": "invalid digest format"}
