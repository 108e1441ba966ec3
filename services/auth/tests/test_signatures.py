"""Signed requests in Ollama's format (KEY-7): stale ts, replayed nonce, other path, unbound key."""

from __future__ import annotations

import time

import pytest

from corral_auth.errors import Unauthenticated
from corral_auth.gate import Attempt
from corral_auth.identity import DEVICE, Credential
from corral_auth.replay import MemoryReplayCache
from corral_auth.signatures import (EMPTY_BODY_HASH, SignatureError, SignatureVerifier, api_message, canonical_blob,
                                    looks_signed, token_message)


def _verifier() -> SignatureVerifier:
    return SignatureVerifier(MemoryReplayCache(), window_seconds=300)


def test_a_fresh_signature_names_its_key(device) -> None:
    uri = device.uri("/api/tags")
    signed = _verifier().verify(device.sign(api_message("GET", uri)), [api_message("GET", uri)])
    assert signed.public_key == device.blob and looks_signed(device.sign("x"))


@pytest.mark.parametrize("age", [301, -301, 3600])
def test_stale_or_future_timestamps_are_refused(device, age) -> None:
    uri = device.uri("/api/tags", ts=int(time.time()) - age)
    with pytest.raises(SignatureError, match="window"):
        _verifier().verify(device.sign(api_message("GET", uri)), [api_message("GET", uri)])


def test_missing_ts_is_refused(device) -> None:
    with pytest.raises(SignatureError, match="ts"):
        _verifier().verify(device.sign("GET,/api/tags"), ["GET,/api/tags"])


def test_a_replayed_nonce_is_refused(device) -> None:
    verifier = _verifier()
    uri = device.uri("/api/tags", nonce="abc")
    header = device.sign(api_message("GET", uri))
    verifier.verify(header, [api_message("GET", uri)])
    with pytest.raises(SignatureError, match="replayed"):
        verifier.verify(header, [api_message("GET", uri)])
    other = device.uri("/api/ps", nonce="abc")  # the same nonce on another path is still a replay
    with pytest.raises(SignatureError, match="replayed"):
        verifier.verify(device.sign(api_message("GET", other)), [api_message("GET", other)])


def test_a_request_without_nonce_cannot_be_replayed_either(device) -> None:
    verifier = _verifier()
    uri = f"/api/tags?ts={int(time.time())}"
    header = device.sign(api_message("GET", uri))
    verifier.verify(header, [api_message("GET", uri)])
    with pytest.raises(SignatureError, match="replayed"):
        verifier.verify(header, [api_message("GET", uri)])


@pytest.mark.parametrize("method, path", [("GET", "/api/ps"), ("POST", "/api/tags"), ("DELETE", "/api/delete")])
def test_a_signature_over_another_request_is_refused(device, method, path) -> None:
    uri = device.uri("/api/tags")
    header = device.sign(api_message("GET", uri))
    query = uri.split("?", 1)[1]
    with pytest.raises(SignatureError, match="does not match"):
        _verifier().verify(header, [api_message(method, f"{path}?{query}")])


def test_a_signature_by_another_key_is_refused(device, other_device) -> None:
    uri = device.uri("/api/tags")
    forged = f"{device.blob}:{other_device.sign(api_message('GET', uri)).split(':')[1]}"
    with pytest.raises(SignatureError):
        _verifier().verify(forged, [api_message("GET", uri)])


@pytest.mark.parametrize("header", ["abc", "AAAA:BBBB", "ssh-ed25519 AAAA:sig", "Bearer x:y"])
def test_malformed_headers_are_refused(header) -> None:
    with pytest.raises(SignatureError):
        _verifier().verify(header, ["GET,/?ts=1"])


def test_token_request_message_matches_ollama() -> None:
    assert EMPTY_BODY_HASH == "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="
    assert token_message("https://r/token?ts=1") == f"GET,https://r/token?ts=1,{EMPTY_BODY_HASH}"


def test_canonical_blob_accepts_authorized_keys_lines(device) -> None:
    assert canonical_blob(device.public_line + " me@host") == device.blob
    with pytest.raises(SignatureError):
        canonical_blob("ssh-rsa AAAAB3NzaC1yc2E")


def _bind(runtime, device) -> None:
    admin = runtime.accounts.identify(runtime.accounts.bootstrap("root").key)
    code = runtime.devices.start(device.blob, "laptop")["code"]
    runtime.devices.approve(admin, code, None, None)


def _attempt(device, path: str = "/api/tags", uri: str | None = None, header: str | None = None) -> Attempt:
    uri = uri or device.uri(path)
    credential = Credential.from_headers(header or device.sign(api_message("GET", uri)), None, "GET", uri)
    return Attempt(credential, "198.51.100.7", "models:read")


def test_gate_accepts_a_bound_device_and_refuses_an_unbound_one(runtime, device) -> None:
    with pytest.raises(Unauthenticated):
        runtime.gate.authenticate(_attempt(device))
    _bind(runtime, device)
    principal = runtime.gate.authenticate(_attempt(device))
    assert principal.kind == DEVICE and principal.user == "root" and principal.key_id.startswith("ssh:")


def test_gate_refuses_replays_and_stale_requests_of_a_bound_device(runtime, device) -> None:
    _bind(runtime, device)
    attempt = _attempt(device)
    runtime.gate.authenticate(attempt)
    with pytest.raises(Unauthenticated):
        runtime.gate.authenticate(attempt)
    with pytest.raises(Unauthenticated):
        runtime.gate.authenticate(_attempt(device, uri=device.uri("/api/tags", ts=int(time.time()) - 3600)))
