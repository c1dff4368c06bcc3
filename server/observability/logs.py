"""The request log: one line per RPC on the `aigen.requests` logger, written to stderr.

AIGEN_LOG_FORMAT=json writes one JSON object per line; anything else writes readable
`key=value` text. Only the fields built here are written: never metadata (authorization,
x-app-token), keys, tokens or image bytes; the prompt only when AIGEN_LOG_PROMPTS=true.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

from aigen.server.observability.context import RequestContext
from aigen.server.observability.metrics import outcome_label

REQUEST_LOGGER = "aigen.requests"
MAX_MESSAGE_CHARS = 300
_TRUE = {"1", "true", "yes", "on"}
_NEEDS_QUOTES = re.compile(r'[\s"=]')  # a text value with any of these is written as a JSON string


def json_requested(env: Mapping[str, str] | None = None) -> bool:
    """True when AIGEN_LOG_FORMAT=json."""
    return (os.environ if env is None else env).get("AIGEN_LOG_FORMAT", "").strip().lower() == "json"


def prompts_requested(env: Mapping[str, str] | None = None) -> bool:
    """True when AIGEN_LOG_PROMPTS=true."""
    return (os.environ if env is None else env).get("AIGEN_LOG_PROMPTS", "").strip().lower() in _TRUE


def request_fields(request: RequestContext, trace_id: str = "") -> dict[str, Any]:
    """The log line's fields, in a stable order; empty values left out."""
    fields: dict[str, Any] = {
        "request_id": request.request_id,
        "rpc": request.rpc,
        "code": request.code.name,
        "duration_ms": round(request.duration_s() * 1000, 1),
        "project": request.project,
        "session_id": request.session_id,
        "generation": request.generation,
        "served": request.served,
        "attempts": [
            {
                "provider": a.provider,
                "model": a.model,
                "attempt": a.attempt_number,
                "outcome": outcome_label(a.outcome),
                "duration_ms": round(a.duration_s * 1000, 1),
            }
            for a in request.attempts
        ],
        "message": request.message[:MAX_MESSAGE_CHARS] if request.code.name != "OK" else "",
        "prompt": request.prompt,
        "trace_id": trace_id,
    }
    return {key: value for key, value in fields.items() if value not in ("", [], None)}


class RequestLogFormatter(logging.Formatter):
    """Formats the `request` dict of a record as JSON or as `key=value` text."""

    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        """One line."""
        fields = getattr(record, "request", None) or {"message": record.getMessage()}
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        if self.as_json:
            return json.dumps({"time": stamp, "level": record.levelname.lower(), "event": "request", **fields})
        return f"{stamp} {record.levelname} request " + " ".join(_text_pair(k, v) for k, v in fields.items())


def _text_pair(key: str, value: Any) -> str:
    if key == "attempts":
        value = ",".join(f"{a['provider']}/{a['model']}#{a['attempt']}:{a['outcome']}" for a in value)
    text = str(value)
    if _NEEDS_QUOTES.search(text):
        text = json.dumps(text)
    return f"{key}={text}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record."""

    @property
    def stream(self):
        """The current stderr."""
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_request_log(env: Mapping[str, str] | None = None) -> logging.Logger:
    """The request logger with one stderr handler in the format the environment asks for."""
    logger = logging.getLogger(REQUEST_LOGGER)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    formatter = RequestLogFormatter(json_requested(env))
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        logger.addHandler(handler)
    handler.setFormatter(formatter)
    return logger


def log_request(logger: logging.Logger, fields: dict[str, Any]) -> None:
    """Write one request line (WARNING for server-side failures, INFO otherwise)."""
    level = logging.WARNING if fields.get("code") in _SERVER_FAILURES else logging.INFO
    logger.log(level, "request", extra={"request": fields})


_SERVER_FAILURES = {"INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS", "DEADLINE_EXCEEDED"}
