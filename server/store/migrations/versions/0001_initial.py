"""Initial schema: sessions, images, turns, layers, projects, credentials, usage, blob pins.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Times are epoch seconds (float8), exactly as the records carry them.
_UPGRADE = (
    """CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY, project TEXT NOT NULL, mode TEXT NOT NULL,
        config JSONB NOT NULL, created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL, busy_until DOUBLE PRECISION NOT NULL, current_image_id TEXT,
        turn_count INTEGER NOT NULL, layer_count INTEGER NOT NULL)""",
    "CREATE INDEX sessions_newest ON sessions (created_at DESC, session_id DESC)",
    "CREATE INDEX sessions_project_newest ON sessions (project, created_at DESC, session_id DESC)",
    "CREATE INDEX sessions_generating ON sessions (busy_until) WHERE status = 'generating'",
    """CREATE TABLE images (
        image_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, content_type TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL, size_bytes BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
        session_id TEXT REFERENCES sessions (session_id) ON DELETE CASCADE)""",
    "CREATE INDEX images_sha256 ON images (sha256)",
    "CREATE INDEX images_session ON images (session_id)",
    """CREATE TABLE turns (
        turn_id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        turn_index INTEGER NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, prompt TEXT NOT NULL, instructions TEXT NOT NULL,
        requested_provider TEXT NOT NULL, requested_model TEXT NOT NULL,
        served_provider TEXT NOT NULL, served_model TEXT NOT NULL, attempts JSONB NOT NULL,
        duration_s DOUBLE PRECISION NOT NULL, image_id TEXT, credits_used INTEGER NOT NULL,
        error TEXT NOT NULL, layer_id TEXT NOT NULL, degradations JSONB NOT NULL,
        aspect_ratio TEXT NOT NULL, image_size TEXT NOT NULL, provider_state BYTEA,
        UNIQUE (session_id, turn_index))""",
    """CREATE TABLE layers (
        session_id TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
        layer_id TEXT NOT NULL, name TEXT NOT NULL, z_order INTEGER NOT NULL,
        image_id TEXT NOT NULL, bbox_x INTEGER NOT NULL, bbox_y INTEGER NOT NULL,
        bbox_width INTEGER NOT NULL, bbox_height INTEGER NOT NULL, coverage DOUBLE PRECISION NOT NULL,
        locked BOOLEAN NOT NULL, PRIMARY KEY (session_id, layer_id))""",
    """CREATE TABLE projects (
        project_id TEXT PRIMARY KEY, allowed_providers JSONB NOT NULL, default_provider TEXT NOT NULL,
        default_model TEXT NOT NULL, billing_mode TEXT NOT NULL, rate_limit INTEGER NOT NULL,
        allow_public_clients BOOLEAN NOT NULL, created_at DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE credentials (
        credential_id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
        kind TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX credentials_project ON credentials (project_id)",
    """CREATE TABLE usage (
        project_id TEXT NOT NULL, day TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
        billing_mode TEXT NOT NULL, images BIGINT NOT NULL, credits BIGINT NOT NULL,
        PRIMARY KEY (project_id, day, provider, model, billing_mode))""",
    # A blob written by write_blob but not yet referenced by an image row: `pending` writes
    # not yet committed, protected from collection until `pinned_until` (epoch seconds).
    """CREATE TABLE blob_pins (
        sha256 TEXT PRIMARY KEY, pending INTEGER NOT NULL, pinned_until DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX blob_pins_expiry ON blob_pins (pinned_until)",
)


def upgrade() -> None:
    """Create every table."""
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    """Drop every table."""
    for table in ("blob_pins", "usage", "credentials", "projects", "layers", "turns", "images", "sessions"):
        op.execute(f"DROP TABLE {table}")
