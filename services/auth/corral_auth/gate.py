"""One door for every credential: lockout, rate limits, identification, scope, audit of refusals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import structlog

from corral_auth import apikeys
from corral_auth.accounts import Accounts
from corral_auth.audit import AuditLog
from corral_auth.devices import Devices
from corral_auth.errors import InsufficientScope, RateLimited, Unauthenticated
from corral_auth.identity import Credential, Principal
from corral_auth.limits import Limits, RateLimiter, retry_after
from corral_auth.quotas import Quotas
from corral_auth.scopes import INFERENCE
from corral_auth.schemas import AuditEvent
from corral_auth.signatures import SignatureError, SignatureVerifier, SignedRequest, api_message

log = structlog.get_logger("corral.auth.gate")


@dataclass(frozen=True)
class Attempt:
    """Where a credential came from and what it is for."""

    credential: Credential
    client: str
    scope: str | None = None
    route: str = ""


class Gate:
    """Authenticates credentials under rate limits and a failed-attempt lockout."""

    def __init__(self, accounts: Accounts, devices: Devices, signatures: SignatureVerifier,
                 limiter: RateLimiter, limits: Limits, audit: AuditLog, quotas: Quotas | None = None) -> None:
        self.accounts, self.devices, self.signatures = accounts, devices, signatures
        self.limiter, self.limits, self.audit, self.quotas = limiter, limits, audit, quotas

    def authenticate(self, attempt: Attempt, candidates: list[str] | None = None) -> Principal:
        """The principal behind a credential, or a 401/403/429 refusal (refusals are audited).

        Failed attempts lock out the key id they name (further wrong secrets for it get 429) and slow
        their address down, but a valid key still works: behind a proxy one address is everybody, and
        key ids are not secret, so a lock that refused the right secret would let anyone shut a key out.
        """
        self._throttle(f"ip:{attempt.client}", 2 * self.limits.rate_per_second, 2 * self.limits.burst, attempt)
        principal = self._identify(attempt.credential, candidates) if attempt.credential.present else None
        if principal is None:
            self._fail(attempt)
        if attempt.scope and attempt.scope not in principal.scopes:
            self._refuse(attempt, 403, principal)
            raise InsufficientScope(attempt.scope)
        self._throttle(f"key:{principal.key_id}", self.limits.rate_per_second, self.limits.burst, attempt, principal)
        if attempt.scope == INFERENCE and self.quotas is not None:
            try:
                self.quotas.check(principal)
            except RateLimited:
                self._refuse(attempt, 429, principal)
                raise
        return principal

    def _count_key_failure(self, attempt: Attempt) -> float:
        """Count a wrong secret against the key id it names; the seconds that id is locked out for (0: not)."""
        key_id = _claimed_id(attempt.credential)
        if not key_id:
            return 0.0
        if self.limiter.fail(f"key:{key_id}", self.limits):
            log.warning("key locked out after failed attempts", key_id=key_id, client=attempt.client)
        return self.limiter.locked_for(f"key:{key_id}")

    def signed(self, credential: Credential, client: str) -> SignedRequest:
        """Verify a signature without requiring its key to be bound (signin start); 401 on failure."""
        self._throttle(f"ip:{client}", 2 * self.limits.rate_per_second, 2 * self.limits.burst)
        try:
            return self.signatures.verify(credential.signature, [api_message(credential.method, credential.uri)])
        except SignatureError as exc:
            log.info("signature refused", reason=str(exc))
            raise Unauthenticated("unauthorized: invalid signature") from None

    def _throttle(self, key: str, rate: float, burst: int, attempt: Attempt | None = None,
                  principal: Principal | None = None) -> None:
        """Take a token from ``key``'s bucket or refuse with 429 and Retry-After."""
        wait = self.limiter.take(key, rate, burst)
        if wait > 0:
            if attempt is not None:
                self._refuse(attempt, 429, principal)
            raise RateLimited(retry_after(wait))

    def _identify(self, credential: Credential, candidates: list[str] | None) -> Principal | None:
        if credential.bearer:
            return self.accounts.identify(credential.bearer)
        try:
            signed = self.signatures.verify(credential.signature,
                                            candidates or [api_message(credential.method, credential.uri)])
        except SignatureError as exc:
            log.info("signature refused", reason=str(exc))
            return None
        return self.devices.identify(signed.public_key)

    def _fail(self, attempt: Attempt) -> NoReturn:
        """Refuse a failed attempt: 401, or 429 once its address has failed too often.

        Only presented credentials count (a missing key guesses nothing); a failure counts towards
        the key id it names and towards its address.
        """
        if not attempt.credential.present:
            self._refuse(attempt, 401)
            raise Unauthenticated(error="")
        key_locked = self._count_key_failure(attempt)
        ip_key = f"ip:{attempt.client}"
        locked = self.limiter.locked_for(ip_key)
        if locked > 0:
            self._refuse(attempt, 429)
            raise RateLimited(retry_after(locked), "too many failed attempts, retry later")
        if self.limiter.fail(ip_key, self.limits):
            log.warning("client throttled after failed attempts", client=attempt.client)
        if key_locked > 0:
            self._refuse(attempt, 429)
            raise RateLimited(retry_after(key_locked), "too many failed attempts with this key, retry later")
        self._refuse(attempt, 401)
        raise Unauthenticated()

    def _refuse(self, attempt: Attempt, status: int, principal: Principal | None = None) -> None:
        key_id = principal.key_id if principal else _claimed_id(attempt.credential)
        self.audit.record(AuditEvent(client=attempt.client, method=attempt.credential.method,
                                     route=attempt.route or attempt.credential.uri.split("?", 1)[0],
                                     status=status, user=principal.user if principal else None, key_id=key_id))


def _claimed_id(credential: Credential) -> str | None:
    """The public id a presented key claims (safe to log: it is not the secret)."""
    parsed = apikeys.parse(credential.bearer) if credential.bearer else None
    return parsed.key_id if parsed else None
