"""Table columns every SQL store uses, in the order of the records' fields."""

from __future__ import annotations

SESSION_COLS = (
    "session_id, project, mode, config, created_at, updated_at, status, busy_until, "
    "current_image_id, turn_count, layer_count"
)
IMAGE_COLS = "image_id, sha256, content_type, width, height, size_bytes, created_at, kind, session_id"
TURN_COLS = (
    "turn_id, session_id, turn_index, kind, status, created_at, prompt, instructions, "
    "requested_provider, requested_model, served_provider, served_model, attempts, duration_s, "
    "image_id, credits_used, error, layer_id, degradations, aspect_ratio, image_size, provider_state"
)
LAYER_COLS = "session_id, layer_id, name, z_order, image_id, bbox_x, bbox_y, bbox_width, bbox_height, coverage, locked"
PROJECT_COLS = (
    "project_id, allowed_providers, default_provider, default_model, billing_mode, rate_limit, "
    "allow_public_clients, created_at"
)
CREDENTIAL_COLS = "credential_id, project_id, kind, secret_hash, created_at, expires_at"
USAGE_COLS = "project_id, day, provider, model, billing_mode, images, credits"
