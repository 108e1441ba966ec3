"""The gate: one 401 for every bad key, 403 for a missing scope, 429 with Retry-After, lockout, audit."""

from __future__ import annotations

import pytest

from corral_auth import apikeys
from corral_auth.errors import UNAUTHORIZED, InsufficientScope, RateLimited, Unauthenticated
from corral_auth.gate import Attempt
from corral_auth.identity import Credential
from corral_auth.limits import Limits, MemoryRateLimiter


def _attempt(key: str | None, scope: str | None = "inference", client: str = "198.51.100.1") -> Attempt:
    authorization = f"Bearer {key}" if key is not None else None
    return Attempt(Credential.from_headers(authorization, None, "POST", "/api/chat"), client, scope, "/api/chat")


def _refusal(runtime, attempt: Attempt) -> tuple[int, dict, dict]:
    with pytest.raises((Unauthenticated, InsufficientScope, RateLimited)) as caught:
        runtime.gate.authenticate(attempt)
    return caught.value.status, caught.value.body(), caught.value.headers


def test_every_bad_key_gets_the_same_401(runtime) -> None:
    runtime.gate.limits = Limits(lockout_failures=100)
    admin_key = runtime.accounts.bootstrap("root").key
    admin = runtime.accounts.identify(admin_key)
    revoked = runtime.accounts.create_key(admin, "old", ["inference"], None)
    runtime.accounts.revoke_key(admin, revoked.info["id"])
    key_id = admin_key.split("_")[1]
    answers = {_refusal(runtime, _attempt(k))[:2] == (401, {"error": UNAUTHORIZED})
               for k in (apikeys.issue(key_id), apikeys.issue("Unknown1"), revoked.key, "garbage")}
    for _ in range(10):  # a missing key guesses nothing: it never counts towards the lockout
        _refusal(runtime, _attempt(None))
    assert answers == {True}
    status, _, headers = _refusal(runtime, _attempt(apikeys.issue("Unknown1")))
    assert headers["WWW-Authenticate"] == 'Bearer realm="corral", error="invalid_token"'
    status, body, headers = _refusal(runtime, _attempt(None))
    assert status == 401 and body == {"error": UNAUTHORIZED} and headers["WWW-Authenticate"] == 'Bearer realm="corral"'


def test_a_key_without_the_scope_gets_403(runtime) -> None:
    admin = runtime.accounts.identify(runtime.accounts.bootstrap("root").key)
    reader = runtime.accounts.create_key(admin, "reader", ["models:read"], None).key
    status, body, headers = _refusal(runtime, _attempt(reader, scope="models:write"))
    assert status == 403 and "models:write" in body["error"]
    assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
    assert runtime.gate.authenticate(_attempt(reader, scope="models:read")).user == "root"


def test_a_burst_above_the_bucket_gets_429_with_retry_after(runtime) -> None:
    runtime.gate.limits = Limits(rate_per_second=1, burst=3, lockout_failures=100)
    key = runtime.accounts.bootstrap("root").key
    for _ in range(3):
        runtime.gate.authenticate(_attempt(key))
    status, _, headers = _refusal(runtime, _attempt(key))
    assert status == 429 and int(headers["Retry-After"]) >= 1


def test_key5_failures_throttle_the_address_but_a_valid_key_from_it_still_works(runtime) -> None:
    key = runtime.accounts.bootstrap("root").key  # the admin key: the one a lockout must never take away
    for _ in range(runtime.gate.limits.lockout_failures):
        _refusal(runtime, _attempt(apikeys.issue("Unknown1"), client="203.0.113.9"))
    status, body, headers = _refusal(runtime, _attempt(apikeys.issue("Unknown2"), client="203.0.113.9"))
    assert status == 429 and "failed attempts" in body["error"] and int(headers["Retry-After"]) > 1
    assert runtime.gate.authenticate(_attempt(key, client="203.0.113.9")).user == "root"  # behind a proxy: everyone
    assert runtime.gate.authenticate(_attempt(key, client="203.0.113.10")).user == "root"


def test_key5_failures_lock_out_wrong_secrets_for_the_key_id_they_name(runtime) -> None:
    admin_key = runtime.accounts.bootstrap("root").key
    victim = runtime.accounts.create_key(runtime.accounts.identify(admin_key), "ci", ["inference"], None)
    victim_id = victim.info["id"]
    for n in range(runtime.gate.limits.lockout_failures):  # wrong secrets for one key id, from many addresses
        _refusal(runtime, _attempt(apikeys.issue(victim_id), client=f"198.51.100.{n + 10}"))
    status, body, headers = _refusal(runtime, _attempt(apikeys.issue(victim_id), client="192.0.2.1"))
    assert status == 429 and "this key" in body["error"] and int(headers["Retry-After"]) > 1
    # Key ids are not secret: the right secret still works, or anyone could shut a key out with 20 guesses.
    assert runtime.gate.authenticate(_attempt(victim.key, client="192.0.2.1")).key_id == victim_id
    assert runtime.gate.authenticate(_attempt(admin_key, client="192.0.2.1")).user == "root"  # other keys unaffected


def test_memory_bucket_refills() -> None:
    limiter = MemoryRateLimiter()
    assert limiter.take("k", rate=1000, burst=1) == 0
    wait = limiter.take("k", rate=1000, burst=1)
    assert 0 < wait <= 0.001 + 1e-9


def test_refusals_are_audited_without_secrets(runtime) -> None:
    key = runtime.accounts.bootstrap("root").key
    wrong = apikeys.issue(key.split("_")[1])
    _refusal(runtime, _attempt(wrong))
    event = runtime.audit.recent(1)[0]
    assert event["status"] == 401 and event["key_id"] == key.split("_")[1] and event["route"] == "/api/chat"
    assert wrong not in str(runtime.audit.recent())
