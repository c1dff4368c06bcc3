"""The current request: its id and what the request log line will say, in a contextvar.

Tasks started by a handler copy the context, so they share the same `RequestContext`
object and their attempts land in the caller's log line.
"""

from __future__ import annotations

import contextvars
import re
import time
from dataclasses import dataclass, field

import grpc

from aigen.server.ids import new_id
from aigen.server.store.records import AttemptRecord

REQUEST_ID_HEADER = "x-request-id"
# Accept a caller's id only when it is short and printable: it goes into logs and headers.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass
class RequestContext:
    """One RPC as the request log and the spans see it."""

    request_id: str
    rpc: str
    started: float = field(default_factory=time.monotonic)
    project: str = ""
    session_id: str = ""
    prompt: str = ""
    attempts: list[AttemptRecord] = field(default_factory=list)
    served: str = ""  # "provider/model" that produced the image
    generation: str = ""  # "completed", "failed" or "cancelled" for generations
    code: grpc.StatusCode = grpc.StatusCode.OK
    message: str = ""
    span: object = None  # the RPC's OpenTelemetry span

    def duration_s(self) -> float:
        """Seconds since the request started."""
        return time.monotonic() - self.started


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("aigen_request", default=None)


def current() -> RequestContext | None:
    """The request being handled, if any."""
    return _current.get()


def current_request_id() -> str:
    """The current request id, or "" outside a request."""
    request = _current.get()
    return request.request_id if request else ""


def activate(request: RequestContext) -> contextvars.Token:
    """Make `request` the current one; pass the token to `deactivate`."""
    return _current.set(request)


def deactivate(token: contextvars.Token) -> None:
    """Restore the previous request (tolerates a generator finalized in another context)."""
    try:
        _current.reset(token)
    except ValueError:
        _current.set(None)


def request_id_from(metadata: dict[str, str]) -> str:
    """The caller's (or Envoy's) x-request-id when it is well formed, else a new id."""
    given = metadata.get(REQUEST_ID_HEADER, "")
    return given if _VALID_REQUEST_ID.fullmatch(given) else new_id("req")
