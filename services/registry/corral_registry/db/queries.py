"""Small data-access functions over the registry tables (sessions are opened by the caller)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from corral_registry.db.models import ManifestRecord, Repository, Tag, TransferJob, UploadSession, utcnow


def repository_id(session: Session, name: str, create: bool = False) -> int | None:
    """The id of a repository, created on demand."""
    found = session.scalar(select(Repository.id).where(Repository.name == name))
    if found is not None or not create:
        return found
    repo = Repository(name=name)
    session.add(repo)
    session.flush()
    return repo.id


def record_manifest(session: Session, repo: str, digest: str, media_type: str, size: int) -> int:
    """Remember that a repository holds a manifest revision; returns the repository id."""
    repo_id = repository_id(session, repo, create=True)
    assert repo_id is not None
    exists = session.scalar(select(ManifestRecord.id).where(ManifestRecord.repository_id == repo_id,
                                                            ManifestRecord.digest == digest))
    if exists is None:
        session.add(ManifestRecord(repository_id=repo_id, digest=digest, media_type=media_type, size=size))
    return repo_id


def has_manifest(session: Session, repo: str, digest: str) -> bool:
    """Whether a repository holds a manifest revision."""
    return session.scalar(select(ManifestRecord.id).join(Repository, Repository.id == ManifestRecord.repository_id)
                          .where(Repository.name == repo, ManifestRecord.digest == digest)) is not None


def set_tag(session: Session, repo: str, tag: str, digest: str) -> None:
    """Point a tag at a manifest digest (insert or update)."""
    repo_id = repository_id(session, repo, create=True)
    row = session.scalar(select(Tag).where(Tag.repository_id == repo_id, Tag.name == tag))
    if row is None:
        session.add(Tag(repository_id=repo_id, name=tag, digest=digest))
    else:
        row.digest, row.updated_at = digest, utcnow()


def delete_tag(session: Session, repo: str, tag: str) -> None:
    """Forget a tag."""
    repo_id = repository_id(session, repo)
    if repo_id is not None:
        session.execute(delete(Tag).where(Tag.repository_id == repo_id, Tag.name == tag))


def tags_pointing_at(session: Session, repo: str, digest: str) -> list[str]:
    """Tags of a repository that name one manifest digest."""
    return list(session.scalars(select(Tag.name).join(Repository, Repository.id == Tag.repository_id)
                                .where(Repository.name == repo, Tag.digest == digest)))


def delete_manifest(session: Session, repo: str, digest: str) -> None:
    """Forget a manifest revision and every tag that named it."""
    repo_id = repository_id(session, repo)
    if repo_id is None:
        return
    session.execute(delete(Tag).where(Tag.repository_id == repo_id, Tag.digest == digest))
    session.execute(delete(ManifestRecord).where(ManifestRecord.repository_id == repo_id,
                                                 ManifestRecord.digest == digest))


def tags(session: Session, repo: str) -> list[str] | None:
    """Sorted tags of a repository, or None if the repository is unknown."""
    repo_id = repository_id(session, repo)
    if repo_id is None:
        return None
    return sorted(session.scalars(select(Tag.name).where(Tag.repository_id == repo_id)))


def all_tags(session: Session) -> list[tuple[str, str, str]]:
    """Every (repository, tag, digest)."""
    rows = session.execute(select(Repository.name, Tag.name, Tag.digest)
                           .join(Tag, Tag.repository_id == Repository.id))
    return [(r, t, d) for r, t, d in rows]


def repositories(session: Session) -> list[str]:
    """Sorted names of repositories that hold at least one manifest."""
    rows = session.scalars(select(Repository.name).join(ManifestRecord, ManifestRecord.repository_id == Repository.id)
                           .distinct())
    return sorted(rows)


def manifest_digests(session: Session) -> set[str]:
    """Every manifest digest any repository holds (garbage collection marks them)."""
    return set(session.scalars(select(ManifestRecord.digest)))


# --- upload sessions ---------------------------------------------------------------------------
def create_upload(session: Session, upload_id: str, repo: str) -> None:
    """Open an upload session."""
    session.add(UploadSession(id=upload_id, repository=repo, offset=0, chunks=0))


def get_upload(session: Session, upload_id: str) -> UploadSession | None:
    """One upload session."""
    return session.get(UploadSession, upload_id)


def advance_upload(session: Session, upload_id: str, start: int, length: int) -> bool:
    """Move the session's offset from ``start`` to ``start+length``; False if another chunk got there first."""
    result = session.execute(update(UploadSession)
                             .where(UploadSession.id == upload_id, UploadSession.offset == start)
                             .values(offset=start + length, chunks=UploadSession.chunks + 1, updated_at=utcnow()))
    return result.rowcount == 1


def delete_upload(session: Session, upload_id: str) -> None:
    """Close an upload session."""
    session.execute(delete(UploadSession).where(UploadSession.id == upload_id))


def uploads(session: Session) -> list[tuple[str, datetime]]:
    """Every open session and when it last moved."""
    return [(u, _aware(t)) for u, t in session.execute(select(UploadSession.id, UploadSession.updated_at))]


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; they were stored as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# --- transfer jobs -------------------------------------------------------------------------------
def active_job(session: Session, kind: str, model: str) -> TransferJob | None:
    """The newest queued or running job for a model."""
    return session.scalar(select(TransferJob)
                          .where(TransferJob.kind == kind, TransferJob.model == model,
                                 TransferJob.state.in_(("queued", "running")))
                          .order_by(TransferJob.created_at.desc()).limit(1))


def create_job(session: Session, job_id: str, kind: str, model: str, task_id: str) -> TransferJob:
    """Record a job that was just queued."""
    job = TransferJob(id=job_id, kind=kind, model=model, task_id=task_id, state="queued")
    session.add(job)
    return job


def update_job(session: Session, job_id: str, **values: object) -> None:
    """Change a job's state, task id or error."""
    session.execute(update(TransferJob).where(TransferJob.id == job_id).values(**values, updated_at=utcnow()))


def get_job(session: Session, job_id: str) -> TransferJob | None:
    """One job."""
    return session.get(TransferJob, job_id)


def stale_uploads(session: Session, max_age: timedelta) -> list[str]:
    """Sessions that have not moved for longer than max_age."""
    cutoff = utcnow() - max_age
    return [u for u, t in uploads(session) if t < cutoff]
