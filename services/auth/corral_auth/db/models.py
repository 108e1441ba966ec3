"""SQLAlchemy tables of the auth service; these classes never leave the service."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the auth tables."""


class User(Base):
    """An account; it owns the namespace of its name."""

    __tablename__ = "auth_users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tokens_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the server's default
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ApiKey(Base):
    """An issued API key: only its keyed hash is stored, looked up by the public id."""

    __tablename__ = "auth_api_keys"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    tokens_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)  # quota of this key; None: none
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)


class DeviceKey(Base):
    """An ed25519 public key bound to an account by ``corral signin``."""

    __tablename__ = "auth_device_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"), index=True)
    public_key: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SigninRequest(Base):
    """A pending signin: a device key waiting for someone to approve its one-time code."""

    __tablename__ = "auth_signin_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_digest: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Repository(Base):
    """Registry visibility of ``<namespace>/<model>``; repositories without a row are public."""

    __tablename__ = "auth_repositories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    private: Mapped[bool] = mapped_column(Boolean, default=False)


class Grant(Base):
    """Actions a user may take on a repository it does not own."""

    __tablename__ = "auth_grants"
    __table_args__ = (UniqueConstraint("repository_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("auth_repositories.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"))
    actions: Mapped[str] = mapped_column(String(100))


class AuditEntry(Base):
    """One authenticated (or refused) request; append-only, never secrets or bodies."""

    __tablename__ = "auth_audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    user: Mapped[str | None] = mapped_column(String(80), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    client: Mapped[str] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(10))
    route: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(400), nullable=True)
    status: Mapped[int] = mapped_column(Integer)


class UsageRow(Base):
    """What one user did through one key with one model in one hour (tokens in and out, requests)."""

    __tablename__ = "auth_usage"
    __table_args__ = (UniqueConstraint("hour", "user", "key_id", "model"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    user: Mapped[str] = mapped_column(String(80), index=True)
    key_id: Mapped[str] = mapped_column(String(200), index=True)
    model: Mapped[str] = mapped_column(String(400))
    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
