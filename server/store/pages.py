"""Session listing rules every store shares: page sizes and the opaque page token."""

from __future__ import annotations

import base64
import binascii
import json

from aigen.server.errors import InvalidArgument
from aigen.server.store.records import SessionRecord

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_limit(page_size: int) -> int:
    """The number of sessions a page holds: 0 means the default, larger is capped."""
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(last: SessionRecord) -> str:
    """The token that continues a listing after `last` (newest first)."""
    raw = json.dumps({"created_at": last.created_at, "session_id": last.session_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[float, str]:
    """(created_at, session_id) of the last session of the previous page."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        created_at, session_id = data["created_at"], data["session_id"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        created_at = session_id = None
    valid_time = isinstance(created_at, int | float) and not isinstance(created_at, bool)
    if not valid_time or not isinstance(session_id, str):
        raise InvalidArgument("page_token", "is not a next_page_token of this listing")
    return float(created_at), session_id
