"""Usage per user, key, model and hour; quotas on users and keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_QUOTAS = ("tokens_per_hour", "requests_per_minute")


def upgrade() -> None:
    op.create_table(
        "auth_usage",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("user", sa.String(80), nullable=False, index=True),
        sa.Column("key_id", sa.String(200), nullable=False, index=True),
        sa.Column("model", sa.String(400), nullable=False),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("hour", "user", "key_id", "model"),
    )
    for table in ("auth_users", "auth_api_keys"):
        with op.batch_alter_table(table) as batch:
            for column in _QUOTAS:
                batch.add_column(sa.Column(column, sa.Integer, nullable=True))


def downgrade() -> None:
    for table in ("auth_users", "auth_api_keys"):
        with op.batch_alter_table(table) as batch:
            for column in _QUOTAS:
                batch.drop_column(column)
    op.drop_table("auth_usage")
