"""Signin: bind an ed25519 device key to an account through a one-time code, and unbind it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from corral_common.errors import BadRequest, Forbidden, NotFound

from corral_auth import scopes
from corral_auth.clock import aware, iso, utcnow
from corral_auth.db.models import DeviceKey, SigninRequest, User
from corral_auth.identity import DEVICE, Principal
from corral_auth.limits import Quota
from corral_auth.signatures import SignatureError, canonical_blob

_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud over a phone or SSH


def new_code() -> str:
    """An 8-character one-time code shown as ``XXXX-XXXX``."""
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def key_id_of(blob: str) -> str:
    """A short, stable id for a device key (what audit rows and listings show)."""
    return "ssh:" + hashlib.sha256(blob.encode()).hexdigest()[:16]


class Devices:
    """Signin requests and bound device keys."""

    def __init__(self, sessions: sessionmaker[Session], pepper: bytes, ttl_seconds: int = 600) -> None:
        self.sessions, self.pepper, self.ttl = sessions, pepper, ttl_seconds

    def _code_digest(self, code: str) -> str:
        normalised = code.strip().upper().replace("-", "")
        return hmac.new(self.pepper, f"signin:{normalised}".encode(), hashlib.sha256).hexdigest()

    def identify(self, blob: str) -> Principal | None:
        """The principal of a bound device key, or None when the key is not bound."""
        with self.sessions.begin() as db:
            found = db.execute(select(DeviceKey, User).join(User, User.id == DeviceKey.user_id)
                               .where(DeviceKey.public_key == blob)).first()
            if found is None:
                return None
            device, user = found
            device.last_used_at = utcnow()
            return Principal(user_id=user.id, user=user.name, admin=user.is_admin, key_id=key_id_of(blob),
                             kind=DEVICE, scopes=scopes.split(device.scopes), public_key=blob,
                             user_quota=Quota(user.tokens_per_hour, user.requests_per_minute))

    def start(self, blob: str, name: str, poll: bool = False) -> dict[str, Any]:
        """A fresh one-time code for an unbound key; with ``poll``, only whether approval has happened."""
        bound = self.identify(blob)
        if bound is not None:
            return {"status": "signed_in", "name": bound.user}
        if poll:
            with self.sessions() as db:
                expires = db.scalar(select(SigninRequest.expires_at).where(SigninRequest.public_key == blob))
            return {"status": "pending" if expires and aware(expires) > utcnow() else "expired"}
        code, now = new_code(), utcnow()
        with self.sessions.begin() as db:
            db.execute(delete(SigninRequest).where(SigninRequest.public_key == blob))
            db.add(SigninRequest(code_digest=self._code_digest(code), public_key=blob, name=name[:200] or "device",
                                 created_at=now, expires_at=now + timedelta(seconds=self.ttl)))
        return {"status": "pending", "code": code, "expires_at": iso(now + timedelta(seconds=self.ttl))}

    def approve(self, actor: Principal, code: str, user: str | None, wanted: list[str] | None) -> dict[str, Any]:
        """Bind the key behind ``code`` to ``user`` (default: the approver); the code works once."""
        owner, granted = actor.delegate(user, wanted, "forbidden: only an admin signs in other users",
                                        "forbidden: a device cannot get scopes its approver lacks")
        with self.sessions.begin() as db:
            request = db.scalar(select(SigninRequest).where(SigninRequest.code_digest == self._code_digest(code)))
            if request is None or aware(request.expires_at) <= utcnow():
                raise NotFound("unknown or expired signin code")
            user_id = db.scalar(select(User.id).where(User.name == owner))
            if user_id is None:
                raise NotFound(f"user {owner!r} not found")
            db.delete(request)
            db.execute(delete(DeviceKey).where(DeviceKey.public_key == request.public_key))
            db.add(DeviceKey(user_id=user_id, public_key=request.public_key, name=request.name,
                             scopes=scopes.join(granted), created_at=utcnow()))
        return {"status": "approved", "name": owner, "device": request.name, "key_id": key_id_of(request.public_key)}

    def signout(self, actor: Principal, public_key: str | None) -> dict[str, Any]:
        """Unbind the signing device itself, or (with the admin scope) a named key the actor may manage."""
        if actor.kind == DEVICE and not public_key:
            with self.sessions.begin() as db:
                db.execute(delete(DeviceKey).where(DeviceKey.public_key == actor.public_key))
            return {"status": "signed_out"}
        if not public_key:
            raise BadRequest("sign the request with the device key, or name the public key to unbind")
        if scopes.ADMIN not in actor.scopes:
            raise Forbidden(f"forbidden: this key lacks the {scopes.ADMIN!r} scope")
        try:
            blob = canonical_blob(public_key)
        except SignatureError:
            raise BadRequest("public_key is not an ssh-ed25519 key") from None
        with self.sessions.begin() as db:
            found = db.execute(select(DeviceKey, User.name).join(User, User.id == DeviceKey.user_id)
                               .where(DeviceKey.public_key == blob)).first()
            if found is None or not actor.may_act_for(found[1]):
                raise NotFound("device key not found")
            db.delete(found[0])
        return {"status": "signed_out"}
