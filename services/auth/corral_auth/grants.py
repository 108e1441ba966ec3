"""Grants: what a user may do on a repository it does not own (pull of a private one, or push).

A repository's owner (the user named like its namespace) or an admin manages its grants.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from corral_common.errors import BadRequest, Forbidden, NotFound

from corral_auth.db.models import Grant, Repository, User
from corral_auth.identity import Principal
from corral_auth.tokens import RegistryPolicy, parse_scope

ACTIONS = ("pull", "push")


def _actions(values: list[str] | None) -> tuple[str, ...]:
    wanted = set(values or ["pull"])
    if not wanted or not wanted <= set(ACTIONS):
        raise BadRequest(f"grant actions are a subset of {', '.join(ACTIONS)}")
    return tuple(a for a in ACTIONS if a in wanted)


def _owns(actor: Principal, repository: str) -> bool:
    return actor.admin or repository.split("/", 1)[0] == actor.user


def _wire(grant: Grant, repository: str, user: str) -> dict[str, Any]:
    return {"id": grant.id, "repository": repository, "user": user, "actions": grant.actions.split(",")}


class Grants:
    """Create, list and revoke grants."""

    def __init__(self, sessions: sessionmaker[Session], policy: RegistryPolicy) -> None:
        self.sessions, self.policy = sessions, policy

    def add(self, actor: Principal, repository: str, user: str, actions: list[str] | None) -> dict[str, Any]:
        """Let ``user`` do ``actions`` on ``repository`` (replacing an earlier grant of the same pair)."""
        name = parse_scope(f"repository:{repository}:pull").name
        if not _owns(actor, name):
            raise Forbidden("forbidden: only the repository's owner or an admin manages its grants")
        allowed = _actions(actions)
        self.policy.grant(name, user, allowed)
        with self.sessions() as db:
            row = db.execute(select(Grant).join(Repository, Repository.id == Grant.repository_id)
                             .join(User, User.id == Grant.user_id)
                             .where(Repository.name == name).where(User.name == user)).scalar_one()
            return _wire(row, name, user)

    def list(self, actor: Principal, repository: str | None = None) -> list[dict[str, Any]]:
        """Grants on the repositories the actor owns (admins: all), optionally of one repository."""
        query = (select(Grant, Repository.name, User.name).join(Repository, Repository.id == Grant.repository_id)
                 .join(User, User.id == Grant.user_id).order_by(Grant.id))
        if repository:
            query = query.where(Repository.name == repository.lower())
        with self.sessions() as db:
            rows = db.execute(query).all()
        return [_wire(g, repo, user) for g, repo, user in rows if _owns(actor, repo)]

    def revoke(self, actor: Principal, grant_id: int) -> None:
        """Remove a grant; one the actor may not manage looks the same as a missing one."""
        if not 0 < grant_id < 2**63:  # no row has this id (and SQL integers cannot even hold it)
            raise NotFound(f"grant {grant_id} not found")
        with self.sessions.begin() as db:
            found = db.execute(select(Grant, Repository.name).join(Repository, Repository.id == Grant.repository_id)
                               .where(Grant.id == grant_id)).first()
            if found is None or not _owns(actor, found[1]):
                raise NotFound(f"grant {grant_id} not found")
            db.delete(found[0])
