"""Users and API keys: create, list, revoke, and turn a presented key into a Principal."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from corral_common.errors import BadRequest, Forbidden, NotFound

from corral_auth import apikeys, scopes
from corral_auth.clock import aware, iso, utcnow
from corral_auth.db.models import ApiKey, User
from corral_auth.identity import KEY, Principal
from corral_auth.limits import Quota

# A user name is the namespace it owns, so it follows Ollama's namespace rule (lower case here).
_USER_NAME = re.compile(r"[a-z0-9_][a-z0-9_-]{0,79}")
_TOUCH_EVERY = timedelta(seconds=10)  # last_used_at is a hint, not a write per request


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: the only time its plaintext exists outside the caller."""

    info: dict[str, Any]
    key: str

    def wire(self) -> dict[str, Any]:
        """The ``POST /api/keys`` answer."""
        return {"id": self.info["id"], "key": self.key, **{k: v for k, v in self.info.items() if k != "id"}}


def _key_info(row: ApiKey, user: str) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "user": user, "scopes": list(scopes.split(row.scopes)),
            "created_at": iso(row.created_at), "expires_at": iso(row.expires_at),
            "last_used_at": iso(row.last_used_at), "revoked_at": iso(row.revoked_at),
            **Quota(row.tokens_per_hour, row.requests_per_minute).wire()}


def parse_expiry(value: str | None) -> datetime | None:
    """An RFC 3339 ``expires_at`` in the future, or None."""
    if value is None or value == "":
        return None
    try:
        when = aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        raise BadRequest("expires_at must be an RFC 3339 time") from None
    if when is None or when <= utcnow():
        raise BadRequest("expires_at must be in the future")
    return when


class Accounts:
    """Users and their API keys."""

    def __init__(self, sessions: sessionmaker[Session], pepper: bytes) -> None:
        self.sessions, self.pepper = sessions, pepper

    def create_user(self, name: str, admin: bool = False) -> dict[str, Any]:
        """Add a user (its namespace comes with it)."""
        if not _USER_NAME.fullmatch(name):
            raise BadRequest("a user name is 1-80 lower-case letters, digits, '_' or '-'")
        try:
            with self.sessions.begin() as db:
                db.add(User(name=name, is_admin=admin, created_at=utcnow()))
        except IntegrityError:
            raise BadRequest(f"user {name!r} already exists") from None
        return {"name": name, "admin": admin}

    def bootstrap(self, name: str = "admin") -> IssuedKey:
        """The first admin user and its all-scopes key; refused once any admin exists."""
        with self.sessions.begin() as db:
            if db.scalar(select(User.id).where(User.is_admin.is_(True)).limit(1)) is not None:
                raise BadRequest("already bootstrapped: an admin user exists")
        self.create_user(name, admin=True)
        return self._issue(self._user_id(name), name, "bootstrap", scopes.ALL, None)

    def create_key(self, actor: Principal, name: str, wanted: list[str] | None, expires_at: str | None,
                   user: str | None = None, quota: Quota = Quota()) -> IssuedKey:
        """A new key for the actor (or, for admins, any user); never more scopes than the actor holds."""
        owner, granted = actor.delegate(user, wanted, "forbidden: only an admin manages other users' keys",
                                        "forbidden: a key cannot grant scopes its creator lacks")
        if not name.strip() or len(name) > 200:
            raise BadRequest("a key needs a name of at most 200 characters")
        return self._issue(self._user_id(owner), owner, name.strip(), granted, parse_expiry(expires_at), quota)

    def set_quota(self, actor: Principal, user: str, quota: Quota) -> dict[str, Any]:
        """Set a user's own limits (None: the server's default); admins only."""
        if not actor.admin:
            raise Forbidden("forbidden: only an admin sets quotas")
        with self.sessions.begin() as db:
            row = db.scalar(select(User).where(User.name == user))
            if row is None:
                raise NotFound(f"user {user!r} not found")
            row.tokens_per_hour, row.requests_per_minute = quota.tokens_per_hour, quota.requests_per_minute
        return {"user": user, **quota.wire()}

    def _user_id(self, name: str) -> int:
        with self.sessions() as db:
            user_id = db.scalar(select(User.id).where(User.name == name))
        if user_id is None:
            raise NotFound(f"user {name!r} not found")
        return user_id

    def _issue(self, user_id: int, user: str, name: str, granted: tuple[str, ...],
               expires_at: datetime | None, quota: Quota = Quota()) -> IssuedKey:
        for _ in range(5):  # a public-id collision is astronomically rare; retry rather than fail
            key_id = apikeys.new_key_id()
            key = apikeys.issue(key_id)
            row = ApiKey(id=key_id, user_id=user_id, name=name, digest=apikeys.digest(self.pepper, key),
                         scopes=scopes.join(granted), created_at=utcnow(), expires_at=expires_at,
                         tokens_per_hour=quota.tokens_per_hour, requests_per_minute=quota.requests_per_minute)
            try:
                with self.sessions.begin() as db:
                    db.add(row)
            except IntegrityError:
                continue
            return IssuedKey(info=_key_info(row, user), key=key)
        raise RuntimeError("could not allocate a key id")

    def list_keys(self, actor: Principal, user: str | None = None) -> list[dict[str, Any]]:
        """Keys the actor may see: its user's, or for admins everyone's (or one user's)."""
        query = select(ApiKey, User.name).join(User, User.id == ApiKey.user_id).order_by(ApiKey.created_at)
        if user or not actor.admin:
            owner = user or actor.user
            if not actor.may_act_for(owner):
                raise Forbidden("forbidden: only an admin lists other users' keys")
            query = query.where(User.name == owner)
        with self.sessions() as db:
            return [_key_info(row, name) for row, name in db.execute(query).all()]

    def revoke_key(self, actor: Principal, key_id: str) -> None:
        """Revoke at once; a key the actor may not manage looks the same as a missing one."""
        with self.sessions.begin() as db:
            found = db.execute(select(ApiKey, User.name).join(User, User.id == ApiKey.user_id)
                               .where(ApiKey.id == key_id)).first()
            if found is None or not actor.may_act_for(found[1]):
                raise NotFound(f"key {key_id!r} not found")
            if found[0].revoked_at is None:
                found[0].revoked_at = utcnow()

    def identify(self, token: str) -> Principal | None:
        """The principal of a live key, or None (unknown id and wrong secret take the same path)."""
        parsed = apikeys.parse(token)
        key_id = parsed.key_id if parsed else ""
        with self.sessions.begin() as db:
            found = db.execute(select(ApiKey, User).join(User, User.id == ApiKey.user_id)
                               .where(ApiKey.id == key_id)).first() if parsed else None
            row, user = found if found else (None, None)
            if not apikeys.matches(self.pepper, parsed.full if parsed else token, row.digest if row else None):
                return None
            assert row is not None and user is not None
            now = utcnow()
            if row.revoked_at is not None or (row.expires_at is not None and aware(row.expires_at) <= now):
                return None
            if row.last_used_at is None or aware(row.last_used_at) < now - _TOUCH_EVERY:
                row.last_used_at = now
            return Principal(user_id=user.id, user=user.name, admin=user.is_admin, key_id=row.id, kind=KEY,
                             scopes=scopes.split(row.scopes),
                             user_quota=Quota(user.tokens_per_hour, user.requests_per_minute),
                             key_quota=Quota(row.tokens_per_hour, row.requests_per_minute))
