"""The append-only audit log: who, which key, from where, which route and model, what status."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from corral_auth.clock import iso, utcnow
from corral_auth.db.models import AuditEntry
from corral_auth.schemas import AuditEvent


class AuditLog:
    """Appends events and reads the newest ones back."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def record(self, event: AuditEvent) -> None:
        """Append one event."""
        values = event.model_dump()
        values["route"] = values["route"][:2000]
        values["model"] = (values["model"] or None) and values["model"][:400]
        with self.sessions.begin() as db:
            db.add(AuditEntry(at=utcnow(), **values))

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest events first."""
        with self.sessions() as db:
            rows = db.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)).all()
        return [{"at": iso(r.at), "user": r.user, "key_id": r.key_id, "client": r.client, "method": r.method,
                 "route": r.route, "model": r.model, "status": r.status} for r in rows]
