"""Repositories, manifests, tags, upload sessions and transfer jobs.

Revision ID: 0001
Revises:
Create Date: 2026-09-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_repositories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_repositories"),
        sa.UniqueConstraint("name", name="uq_registry_repositories_name"),
    )
    op.create_table(
        "registry_manifests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_manifests"),
        sa.ForeignKeyConstraint(["repository_id"], ["registry_repositories.id"], ondelete="CASCADE",
                                name="fk_registry_manifests_repository_id_registry_repositories"),
        sa.UniqueConstraint("repository_id", "digest", name="uq_registry_manifests_repository_id"),
    )
    op.create_table(
        "registry_tags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_tags"),
        sa.ForeignKeyConstraint(["repository_id"], ["registry_repositories.id"], ondelete="CASCADE",
                                name="fk_registry_tags_repository_id_registry_repositories"),
        sa.UniqueConstraint("repository_id", "name", name="uq_registry_tags_repository_id"),
    )
    op.create_table(
        "registry_uploads",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("repository", sa.String(200), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_uploads"),
    )
    op.create_table(
        "registry_jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("model", sa.String(600), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registry_jobs"),
    )
    op.create_index("ix_registry_jobs_model", "registry_jobs", ["model"])


def downgrade() -> None:
    op.drop_index("ix_registry_jobs_model", table_name="registry_jobs")
    for table in ("registry_jobs", "registry_uploads", "registry_tags", "registry_manifests",
                  "registry_repositories"):
        op.drop_table(table)
