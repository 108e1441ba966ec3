"""Aware UTC times (SQLite hands back naive ones)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """``value`` with UTC attached when the database dropped the zone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """RFC 3339 text for JSON, or None."""
    value = aware(value)
    return value.isoformat().replace("+00:00", "Z") if value else None
