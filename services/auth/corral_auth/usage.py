"""Usage accounting: requests and tokens in and out per user, key, model and hour.

The gateway reports each finished model call (``POST /internal/usage``); ``GET /api/usage`` reads it back
(a user their own, an admin anyone's). The rows are counters, upserted, so replicas may write at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from corral_common.errors import BadRequest, Forbidden

from corral_auth.clock import aware, iso, utcnow
from corral_auth.db.models import UsageRow
from corral_auth.identity import Principal
from corral_auth.schemas import UsageEvent

MAX_HOURS = 24 * 90


def hour_of(moment: datetime) -> datetime:
    """The start of the hour ``moment`` falls in."""
    return moment.replace(minute=0, second=0, microsecond=0)


class Usage:
    """Counters per (hour, user, key, model)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def record(self, event: UsageEvent) -> None:
        """Add one finished model call to its hour's counters."""
        where = {"hour": hour_of(utcnow()), "user": event.user, "key_id": event.key_id, "model": event.model[:400]}
        for _ in range(3):  # two writers may insert the hour's row at once: the loser adds to it instead
            try:
                with self.sessions.begin() as db:
                    changed = db.execute(update(UsageRow).filter_by(**where).values(
                        requests=UsageRow.requests + 1,
                        prompt_tokens=UsageRow.prompt_tokens + event.prompt_tokens,
                        completion_tokens=UsageRow.completion_tokens + event.completion_tokens)).rowcount
                    if not changed:
                        db.add(UsageRow(**where, requests=1, prompt_tokens=event.prompt_tokens,
                                        completion_tokens=event.completion_tokens))
                return
            except IntegrityError:
                continue

    def tokens_this_hour(self, user: str | None = None, key_id: str | None = None) -> int:
        """Tokens in and out this hour, of a user (all keys) or of one key."""
        query = select(func.coalesce(func.sum(UsageRow.prompt_tokens + UsageRow.completion_tokens), 0)) \
            .where(UsageRow.hour >= hour_of(utcnow()))
        query = query.where(UsageRow.user == user) if user is not None else query.where(UsageRow.key_id == key_id)
        with self.sessions() as db:
            return int(db.scalar(query) or 0)

    def report(self, actor: Principal, user: str | None = None, hours: int = 24) -> dict[str, Any]:
        """``GET /api/usage``: the caller's rows (an admin: everyone's, or ``user``'s), newest hour first, and
        their totals."""
        if not 1 <= hours <= MAX_HOURS:
            raise BadRequest(f"hours must be between 1 and {MAX_HOURS}")
        if user and not actor.may_act_for(user):
            raise Forbidden("forbidden: only an admin reads other users' usage")
        owner = user or (None if actor.admin else actor.user)
        query = select(UsageRow).where(UsageRow.hour >= hour_of(utcnow()) - timedelta(hours=hours - 1)) \
            .order_by(UsageRow.hour.desc(), UsageRow.user, UsageRow.key_id, UsageRow.model)
        if owner is not None:
            query = query.where(UsageRow.user == owner)
        with self.sessions() as db:
            rows = [_row(r) for r in db.scalars(query).all()]
        totals = {k: sum(r[k] for r in rows) for k in ("requests", "prompt_tokens", "completion_tokens")}
        return {"usage": rows, "total": totals}


def _row(row: UsageRow) -> dict[str, Any]:
    return {"hour": iso(aware(row.hour)), "user": row.user, "key_id": row.key_id, "model": row.model,
            "requests": row.requests, "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens}
