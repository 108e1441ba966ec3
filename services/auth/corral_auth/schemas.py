"""Request bodies of the auth endpoints (the gateway forwards them unchanged)."""

from __future__ import annotations

from pydantic import Field

from corral_common.schemas import WireModel


class CreateKeyRequest(WireModel):
    """``POST /api/keys``."""

    name: str
    scopes: list[str] | None = Field(None, description="Subset of inference, models:read, models:write, web, admin")
    expires_at: str | None = Field(None, description="RFC 3339 time after which the key stops working")
    user: str | None = Field(None, description="Owner of the new key (admins only; default: the caller)")
    tokens_per_hour: int | None = Field(None, description="Quota of the key: tokens in and out per hour")
    requests_per_minute: int | None = Field(None, description="Quota of the key: inference requests per minute")


class QuotaRequest(WireModel):
    """``PUT /api/quotas/{user}``: a user's own limits (null: the server's default)."""

    tokens_per_hour: int | None = None
    requests_per_minute: int | None = None


class UsageEvent(WireModel):
    """``POST /internal/usage`` from the gateway: one finished model call of an authenticated caller."""

    user: str
    key_id: str
    model: str
    prompt_tokens: int = Field(0, ge=0, description="the whole prompt, cached part included")
    completion_tokens: int = Field(0, ge=0)


class CreateGrantRequest(WireModel):
    """``POST /api/grants``."""

    repository: str = Field(description="namespace/model")
    user: str
    actions: list[str] | None = Field(None, description="pull (default) and/or push")


class SigninStartRequest(WireModel):
    """``POST /api/signin``: signed with the device key that wants to be bound."""

    name: str = Field("", description="A label for the device, e.g. its host name")
    poll: bool = Field(False, description="Only ask whether the pending code was approved")


class SigninApproveRequest(WireModel):
    """``POST /api/signin/approve``: sent with a key that holds the admin scope."""

    code: str
    user: str | None = Field(None, description="Account to bind the device to (default: the approver)")
    scopes: list[str] | None = None


class SignoutRequest(WireModel):
    """``POST /api/signout``: empty when signed by the device itself."""

    public_key: str | None = Field(None, description="ssh-ed25519 key to unbind (needs the admin scope)")


class VerifyRequest(WireModel):
    """``POST /internal/verify`` from the gateway."""

    authorization: str | None = None
    api_key: str | None = None
    method: str
    uri: str
    client: str
    scope: str | None = None


class AuditEvent(WireModel):
    """One request as the audit log keeps it (never a secret, a header or a body): ``POST /internal/audit``
    from the gateway once a response has been sent, or a refusal recorded by the gate itself."""

    client: str
    method: str
    route: str
    status: int
    user: str | None = None
    key_id: str | None = None
    model: str | None = None
