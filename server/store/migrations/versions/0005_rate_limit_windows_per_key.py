"""Rate-limit windows opened by each key's first request: one row per key.

Counters of the aligned windows are dropped, so every client starts a fresh window once.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UPGRADE = (
    "DROP TABLE rate_limits",
    # expires_at = end of the key's current window (epoch seconds); ended rows are purged by one
    # indexed range delete.
    """CREATE TABLE rate_limits (
        key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX rate_limits_expiry ON rate_limits (expires_at)",
)

_DOWNGRADE = (
    "DROP TABLE rate_limits",
    """CREATE TABLE rate_limits (
        key TEXT NOT NULL, window_no BIGINT NOT NULL, count INTEGER NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (key, window_no))""",
    "CREATE INDEX rate_limits_expiry ON rate_limits (expires_at)",
)


def upgrade() -> None:
    """Replace the per-window rows by one row per key."""
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    """Back to one row per key and aligned window (counters start over)."""
    for statement in _DOWNGRADE:
        op.execute(statement)
