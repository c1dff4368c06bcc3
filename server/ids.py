"""Unguessable resource ids: a type prefix and 128 random bits."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A new id such as "sess_3q2...": 16 random bytes, URL-safe base64."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"
