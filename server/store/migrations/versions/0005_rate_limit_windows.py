"""Rate-limit windows opened by each key's first request: one row per key, in a new table.

The aligned-window table `rate_limits` stays for replicas of the previous release that still
run during a rolling upgrade (their counts and the new ones are apart until they are gone);
a later release drops it.

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
    # expires_at = end of the key's current window (epoch seconds); ended rows are purged by one
    # indexed range delete.
    """CREATE TABLE rate_limit_windows (
        key TEXT PRIMARY KEY, count INTEGER NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX rate_limit_windows_expiry ON rate_limit_windows (expires_at)",
)


def upgrade() -> None:
    """Create the per-key windows table."""
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    """Drop the per-key windows table."""
    op.execute("DROP TABLE rate_limit_windows")
