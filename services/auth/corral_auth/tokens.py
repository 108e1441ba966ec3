"""Registry tokens: short-lived RS256 JWTs scoped to ``repository:<ns>/<model>:<actions>``, and the JWKS.

The access claim follows the Docker distribution token format, so a registry checks
``access[].name`` and ``access[].actions`` after verifying the signature against ``/jwks.json``.
Who may do what: push (and delete) only into a namespace one owns (admins anywhere); pull of a
public repository by anyone (anonymously only where CORRAL_AUTH_REQUIRED lets the caller in without
a key); pull of a private one by its owner, an admin or a grantee.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import warnings

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from corral_common.errors import BadRequest
from corral_common.net import is_loopback_address

from corral_auth import scopes
from corral_auth.db.models import Grant, Repository, User
from corral_auth.errors import Unauthenticated
from corral_auth.gate import Attempt, Gate
from corral_auth.identity import Credential, Principal
from corral_auth.signatures import token_message

with warnings.catch_warnings():  # authlib 1.x marks authlib.jose deprecated (joserfc is its successor); it works
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken

ALGORITHM = "RS256"
_SCOPE = re.compile(r"repository:([A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*):([a-z,*]+)")
_WRITE_ACTIONS = {"push", "delete", "*"}
CATALOG = "registry:catalog:*"
ANONYMOUS_REFUSED = "unauthorized: a registry token needs an API key or a signed request"


@dataclass(frozen=True)
class Access:
    """One requested (or granted) repository scope."""

    name: str
    actions: tuple[str, ...]
    type: str = "repository"

    def wire(self) -> dict[str, Any]:
        """The JWT ``access`` entry."""
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def parse_scope(text: str) -> Access:
    """``repository:ns/model:pull,push`` (or ``registry:catalog:*``) → Access; anything else is a 400."""
    if text.strip() == CATALOG:
        return Access(name="catalog", actions=("*",), type="registry")
    match = _SCOPE.fullmatch(text.strip())
    if match is None:
        raise BadRequest(f"invalid scope {text!r}")
    actions = tuple(sorted({a for a in match.group(2).split(",") if a in {"pull", "push", "delete", "*"}}))
    return Access(name=match.group(1).lower(), actions=actions)


class RegistryPolicy:
    """Which of the requested actions a caller gets."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def allowed(self, principal: Principal | None, wanted: Access) -> Access:
        """The subset of ``wanted`` that ``principal`` (None: anonymous) may do."""
        if wanted.type == "registry":  # listing every repository is for admins only
            admin = principal is not None and principal.admin
            return Access(wanted.name, wanted.actions if admin else (), wanted.type)
        namespace = wanted.name.split("/", 1)[0]
        owner = principal is not None and (principal.admin or principal.user == namespace)
        granted = set()
        writer = principal is not None and scopes.MODELS_WRITE in principal.scopes
        for action in wanted.actions:
            if action in _WRITE_ACTIONS:
                if writer and (owner or (action == "push" and self._granted(principal, wanted.name, "push"))):
                    granted.add(action)
            elif self._may_pull(principal, wanted.name, owner):
                granted.add(action)
        return Access(wanted.name, tuple(sorted(granted)))

    def _may_pull(self, principal: Principal | None, name: str, owner: bool) -> bool:
        with self.sessions() as db:
            repo = db.scalar(select(Repository).where(Repository.name == name))
            if repo is None or not repo.private:
                return True
            if principal is None or scopes.MODELS_READ not in principal.scopes:
                return False
            if owner:
                return True
        return self._granted(principal, name, "pull")

    def _granted(self, principal: Principal | None, name: str, action: str) -> bool:
        """Whether a grant lets ``principal`` do ``action`` on ``name``."""
        if principal is None:
            return False
        with self.sessions() as db:
            actions = db.scalar(select(Grant.actions).join(Repository, Repository.id == Grant.repository_id)
                                .where(Repository.name == name).where(Grant.user_id == principal.user_id))
        return actions is not None and action in actions.split(",")

    def set_private(self, name: str, private: bool = True) -> None:
        """Mark a repository private (or public again)."""
        with self.sessions.begin() as db:
            repo = db.scalar(select(Repository).where(Repository.name == name.lower()))
            if repo is None:
                db.add(Repository(name=name.lower(), private=private))
            else:
                repo.private = private

    def grant(self, name: str, user: str, actions: tuple[str, ...] = ("pull",)) -> None:
        """Let ``user`` pull (or more) a repository it does not own."""
        self.set_private(name, private=self._is_private(name))
        with self.sessions.begin() as db:
            repo_id = db.scalar(select(Repository.id).where(Repository.name == name.lower()))
            user_id = db.scalar(select(User.id).where(User.name == user))
            if user_id is None:
                raise BadRequest(f"user {user!r} not found")
            existing = db.scalar(select(Grant).where(Grant.repository_id == repo_id).where(Grant.user_id == user_id))
            if existing is None:
                db.add(Grant(repository_id=repo_id, user_id=user_id, actions=",".join(actions)))
            else:
                existing.actions = ",".join(actions)

    def _is_private(self, name: str) -> bool:
        with self.sessions() as db:
            return bool(db.scalar(select(Repository.private).where(Repository.name == name.lower())))


class TokenIssuer:
    """Signs registry tokens with the service key and publishes the public half."""

    def __init__(self, private_pem: bytes, issuer: str, ttl_seconds: int = 300) -> None:
        self.key = JsonWebKey.import_key(private_pem, {"kty": "RSA"})
        self.kid = self.key.thumbprint()
        self.issuer, self.ttl = issuer, ttl_seconds
        self.jwt = JsonWebToken([ALGORITHM])

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set a registry verifies tokens with."""
        public = self.key.as_dict(is_private=False)
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    def issue(self, principal: Principal | None, service: str, access: list[Access]) -> dict[str, Any]:
        """A signed token and the Docker/Ollama token-endpoint answer around it."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": principal.user if principal else "", "aud": service,
                  "iat": now, "nbf": now - 5, "exp": now + self.ttl, "jti": secrets.token_urlsafe(16),
                  "access": [a.wire() for a in access]}
        token = self.jwt.encode({"alg": ALGORITHM, "kid": self.kid, "typ": "JWT"}, claims, self.key).decode()
        return {"token": token, "access_token": token, "expires_in": self.ttl,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}

    def verify(self, token: str, service: str) -> dict[str, Any]:
        """The claims of a token this issuer signed for ``service`` (what a registry does with the JWKS)."""
        options = {"iss": {"essential": True, "value": self.issuer}, "aud": {"essential": True, "value": service}}
        claims = self.jwt.decode(token, JsonWebKey.import_key_set(self.jwks()), claims_options=options)
        claims.validate()
        return dict(claims)


def _url_variants(url: str) -> list[str]:
    """The token URL as seen here, and with the other scheme (TLS may end at a proxy in front)."""
    scheme, _, rest = url.partition("://")
    other = "https" if scheme == "http" else "http"
    return [url, f"{other}://{rest}"]


def anonymous_allowed(auth_mode: str, client: str) -> bool:
    """Whether a caller without a credential may have a token: auth off, or auto mode and a loopback client."""
    return auth_mode == "off" or (auth_mode == "auto" and is_loopback_address(client))


class RegistryTokens:
    """The token endpoint: authenticate (where auth is required), decide access, sign."""

    def __init__(self, gate: Gate, policy: RegistryPolicy, issuer: TokenIssuer, auth_mode: str = "auto") -> None:
        self.gate, self.policy, self.issuer, self.auth_mode = gate, policy, issuer, auth_mode

    def answer(self, credential: Credential, client: str, url: str, service: str,
               requested: list[str]) -> dict[str, Any]:
        """A token for what the caller may do; a presented but bad credential is a 401, not anonymous.

        Without a credential: a 401 where auth is required for this client (CORRAL_AUTH_REQUIRED),
        else an anonymous token (public pulls only).
        """
        principal = None
        if not credential.present and not anonymous_allowed(self.auth_mode, client):
            raise Unauthenticated(ANONYMOUS_REFUSED, error="")
        if credential.present:
            candidates = [token_message(u) for u in _url_variants(url)] if credential.signature else None
            principal = self.gate.authenticate(Attempt(credential, client, None, "/token"), candidates)
        wanted = [parse_scope(s) for value in requested for s in value.split() if s]
        access = [self.policy.allowed(principal, w) for w in wanted]
        return self.issuer.issue(principal, service or self.issuer.issuer, access)
