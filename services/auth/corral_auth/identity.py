"""Who a request acts for, as the other modules and the wire see it."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from corral_common.errors import Forbidden

from corral_auth import scopes
from corral_auth.limits import Quota
from corral_auth.signatures import looks_signed

KEY = "key"
DEVICE = "device"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user acting through one API key or one signed-in device key."""

    user_id: int
    user: str
    admin: bool
    key_id: str
    kind: str
    scopes: tuple[str, ...]
    public_key: str = ""  # the device key blob, for device principals
    user_quota: Quota = Quota()  # the user's own limits (unset ones: the server's default)
    key_quota: Quota = Quota()  # the API key's limits (none for a device)

    def wire(self) -> dict[str, Any]:
        """The JSON the gateway receives from /internal/verify."""
        return {"user": self.user, "admin": self.admin, "key_id": self.key_id, "kind": self.kind,
                "scopes": list(self.scopes)}

    def may_act_for(self, user: str) -> bool:
        """Admins act for anyone; everyone else only for themselves."""
        return self.admin or user == self.user

    def delegate(self, user: str | None, wanted: list[str] | None, not_theirs: str,
                 too_wide: str) -> tuple[str, tuple[str, ...]]:
        """The owner (``user``, default the caller) and the scopes the caller may hand out to it.

        Forbidden with ``not_theirs`` when acting for another user without being an admin, with
        ``too_wide`` when asking for scopes the caller itself lacks.
        """
        owner = user or self.user
        if not self.may_act_for(owner):
            raise Forbidden(not_theirs)
        granted = scopes.parse_scopes(wanted, default=scopes.DEFAULT)
        if not self.admin and not set(granted) <= set(self.scopes):
            raise Forbidden(too_wide)
        return owner, granted


@dataclass(frozen=True)
class Credential:
    """What a request presented: a bearer key, an Ollama signature, or nothing."""

    bearer: str = ""
    signature: str = ""
    method: str = "GET"
    uri: str = "/"

    @classmethod
    def from_headers(cls, authorization: str | None, api_key: str | None, method: str, uri: str) -> "Credential":
        """Read ``Authorization: Bearer``, ``Basic`` (key as password), an Ollama signature or ``X-Api-Key``."""
        value = (authorization or "").strip()
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            return cls(bearer=rest.strip(), method=method, uri=uri)
        if scheme.lower() == "basic":
            return cls(bearer=_basic_password(rest.strip()), method=method, uri=uri)
        if value and looks_signed(value):
            return cls(signature=value, method=method, uri=uri)
        if value:
            return cls(bearer="\x00invalid", method=method, uri=uri)  # present but unusable: a 401
        return cls(bearer=(api_key or "").strip(), method=method, uri=uri)

    @property
    def present(self) -> bool:
        """Whether anything was presented at all."""
        return bool(self.bearer or self.signature)


def _basic_password(encoded: str) -> str:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "\x00invalid"
    return decoded.partition(":")[2] or "\x00invalid"
