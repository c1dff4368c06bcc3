"""Suite-wide guards: no test reaches a real provider, and no real credential leaks in."""

from __future__ import annotations

import os
import socket

_PROVIDER_ENV = (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_API_VERSION",
    "GOOGLE_GEMINI_BASE_URL",
    "REPLICATE_API_TOKEN",
    "REPLICATE_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "BFL_API_KEY",
    "BFL_BASE_URL",
    "AIGEN_CONFIG_FILE",
)
for _name in _PROVIDER_ENV:
    os.environ.pop(_name, None)

_LOOPBACK = {"localhost", "::1", "0.0.0.0", "", None}
_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOOPBACK and not str(name).startswith("127."):
        raise OSError(f"tests may only reach loopback addresses, not {name!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only
