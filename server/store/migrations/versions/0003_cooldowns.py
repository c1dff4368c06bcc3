"""Cooldowns shared by every replica: one row per provider/model while it is skipped.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the cooldowns table (`until_epoch`: end of the cooldown, database epoch seconds)."""
    op.execute(
        """CREATE TABLE cooldowns (
            provider TEXT NOT NULL, model TEXT NOT NULL, until_epoch DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (provider, model))"""
    )


def downgrade() -> None:
    """Drop the cooldowns table."""
    op.execute("DROP TABLE cooldowns")
