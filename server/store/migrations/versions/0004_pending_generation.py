"""The generation a session's lease is for, so a crash can be recorded as an interrupted turn.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add sessions.pending (JSON: kind, text, requested pair, started_at), NULL when ready."""
    op.execute("ALTER TABLE sessions ADD COLUMN pending JSONB")


def downgrade() -> None:
    """Drop sessions.pending."""
    op.execute("ALTER TABLE sessions DROP COLUMN pending")
