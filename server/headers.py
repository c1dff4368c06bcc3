"""Response headers gathered during a call and sent once.

gRPC sends initial metadata only once, and several parts of a call want to add to it (rate
limit state, cache headers, request id). They `add()` here; the error interceptor sends the
lot with the response, or with the error's trailing metadata (which a REST caller behind
Envoy sees as headers too).
"""

from __future__ import annotations

from contextvars import ContextVar

_pending: ContextVar[list[tuple[str, str]] | None] = ContextVar("aigen_response_headers", default=None)


def begin() -> None:
    """Start collecting for the current call."""
    _pending.set([])


def add(*pairs: tuple[str, str]) -> None:
    """Add response headers (lowercase names) to the current call."""
    pending = _pending.get()
    if pending is not None:
        pending.extend(pairs)


def take() -> tuple[tuple[str, str], ...]:
    """Everything added so far; the collection is emptied."""
    pending = _pending.get()
    if not pending:
        return ()
    taken = tuple(pending)
    pending.clear()
    return taken
