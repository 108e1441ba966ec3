"""ModelName and Digest: parsed once at the edge, with Ollama's rules."""

from __future__ import annotations

import io

import pytest

from corral_common.digest import Digest, InvalidDigest
from corral_common.durations import FOREVER_NS, InvalidDuration, parse_env_duration, parse_keep_alive
from corral_common.errors import BadRequest
from corral_common.names import InvalidName, ModelName, parse_name


@pytest.mark.parametrize("text, parts, short", [
    ("llama3", ("registry.ollama.ai", "library", "llama3", "latest"), "llama3:latest"),
    ("llama3:8b", ("registry.ollama.ai", "library", "llama3", "8b"), "llama3:8b"),
    ("team/assistant:v1", ("registry.ollama.ai", "team", "assistant", "v1"), "team/assistant:v1"),
    ("localhost:5000/team/assistant:v1", ("localhost:5000", "team", "assistant", "v1"),
     "localhost:5000/team/assistant:v1"),
    ("https://example.com/library/m", ("example.com", "library", "m", "latest"), "example.com/library/m:latest"),
    ("smollm2:135m", ("registry.ollama.ai", "library", "smollm2", "135m"), "smollm2:135m"),
    ("my_model.v2:q4_K_M", ("registry.ollama.ai", "library", "my_model.v2", "q4_K_M"), "my_model.v2:q4_K_M"),
])
def test_valid_names(text: str, parts: tuple, short: str) -> None:
    name = ModelName.parse(text)
    assert name.parts() == parts
    assert name.display_shortest() == short


@pytest.mark.parametrize("text", [
    "", " llama3", "../../etc/passwd", "a/../../b", "%2e%2e/x", "ns.x/m", "m:tag:extra/x", "-leading",
    "a" * 81, "model:" + "t" * 81, "/etc/passwd", "x/", ":tag", "name with space", "m@sha256:abc",
    "a/b/c/d", "bad name!",
])
def test_invalid_names(text: str) -> None:
    with pytest.raises(InvalidName):
        ModelName.parse(text)


def test_name_identity_is_case_insensitive() -> None:
    assert ModelName.parse("SmolLM2:135M").key() == ModelName.parse("smollm2:135m").key()


@pytest.mark.parametrize("text", ["sha256:" + "A" * 64, "sha256-" + "a" * 64])
def test_valid_digests_normalise_to_lowercase(text: str) -> None:
    digest = Digest.parse(text)
    assert str(digest) == "sha256:" + "a" * 64
    assert digest.filename() == "sha256-" + "a" * 64


@pytest.mark.parametrize("text", ["sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "a" * 64 + "\n",
                                  "../x", "sha512:" + "a" * 64, "sha256:" + "g" * 64, "", "sha256:"])
def test_invalid_digests(text: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(text)


def test_digest_of_stream_matches_bytes() -> None:
    assert Digest.of_file(io.BytesIO(b"hello")) == Digest.of_bytes(b"hello")


@pytest.mark.parametrize("value, expected", [
    (300, 300_000_000_000), (1.5, 1_500_000_000), ("5m", 300_000_000_000), ("1h30m", 5_400_000_000_000),
    ("300ms", 300_000_000), ("0", 0), (0, 0), (-1, FOREVER_NS), ("-5m", FOREVER_NS), (None, None),
])
def test_keep_alive(value, expected) -> None:
    assert parse_keep_alive(value) == expected


@pytest.mark.parametrize("value, message", [("5", 'time: missing unit in duration "5"'),
                                            ("soon", 'time: invalid duration "soon"'),
                                            (True, "Unsupported type: 'bool'"),
                                            ([1], "Unsupported type: 'list'")])
def test_keep_alive_errors(value, message: str) -> None:
    with pytest.raises(InvalidDuration, match=message.replace("(", r"\(")):
        parse_keep_alive(value)


def test_env_keep_alive_accepts_plain_seconds() -> None:
    assert parse_env_duration("60", 1) == 60_000_000_000
    assert parse_env_duration("", 7) == 7
    assert parse_env_duration("garbage", 7) == 7


def test_parse_name_is_a_400_with_the_callers_message() -> None:
    assert parse_name("team/m:v1") == ModelName.parse("team/m:v1")
    with pytest.raises(BadRequest, match="^invalid model name$"):
        parse_name("bad name")
    with pytest.raises(BadRequest, match='^source "x y" is invalid$'):
        parse_name("x y", 'source "x y" is invalid')
