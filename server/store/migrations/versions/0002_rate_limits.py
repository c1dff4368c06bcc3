"""Rate-limit counters shared by every replica: one row per client key and fixed window.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_UPGRADE = (
    # window_no = floor(epoch seconds / window length); expires_at = end of that window (epoch
    # seconds), so rows of past windows are purged by one indexed range delete.
    """CREATE TABLE rate_limits (
        key TEXT NOT NULL, window_no BIGINT NOT NULL, count INTEGER NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (key, window_no))""",
    "CREATE INDEX rate_limits_expiry ON rate_limits (expires_at)",
)


def upgrade() -> None:
    """Create the counters table."""
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    """Drop the counters table."""
    op.execute("DROP TABLE rate_limits")
