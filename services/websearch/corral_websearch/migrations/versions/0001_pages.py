"""Pages of the built-in search index, with full-text search for SQLite (FTS5) and PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE = (
    "CREATE VIRTUAL TABLE websearch_pages_fts USING fts5(title, content, content='websearch_pages', "
    "content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER websearch_pages_ai AFTER INSERT ON websearch_pages BEGIN "
    "INSERT INTO websearch_pages_fts(rowid, title, content) VALUES (new.id, new.title, new.content); END",
    "CREATE TRIGGER websearch_pages_ad AFTER DELETE ON websearch_pages BEGIN "
    "INSERT INTO websearch_pages_fts(websearch_pages_fts, rowid, title, content) "
    "VALUES ('delete', old.id, old.title, old.content); END",
    "CREATE TRIGGER websearch_pages_au AFTER UPDATE ON websearch_pages BEGIN "
    "INSERT INTO websearch_pages_fts(websearch_pages_fts, rowid, title, content) "
    "VALUES ('delete', old.id, old.title, old.content); "
    "INSERT INTO websearch_pages_fts(rowid, title, content) VALUES (new.id, new.title, new.content); END",
)
_POSTGRES = (
    "ALTER TABLE websearch_pages ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(content, '')), 'B')) STORED",
    "CREATE INDEX websearch_pages_search ON websearch_pages USING GIN (search)",
)


def upgrade() -> None:
    op.create_table(
        "websearch_pages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text, nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("indexed_at", sa.Float, nullable=False),
    )
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE if dialect == "sqlite" else _POSTGRES if dialect == "postgresql" else ():
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS websearch_pages_fts")
    op.drop_table("websearch_pages")
