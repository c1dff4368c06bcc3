"""UiService: the web playground's static files (`GET /` and `GET /ui/{path}`).

The files live in `server/ui/static/` (package data). Only files present there when the
server starts are served, each with its content type; nothing is fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from google.api import httpbody_pb2

from aigen.server import errors
from aigen.v1 import types_pb2
from aigen.v1 import ui_service_pb2_grpc as pb2_grpc

STATIC_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# Files change with the server release, so browsers revalidate rather than cache for long.
CACHE_CONTROL = "no-cache"
SECURITY_HEADERS = (
    ("x-content-type-options", "nosniff"),
    ("content-security-policy", "default-src 'self'; img-src 'self' data: blob: *; connect-src 'self'"),
)


def asset_index(root: Path = STATIC_DIR) -> dict[str, Path]:
    """Every servable file below `root` by its URL path ("app.js", "js/api.js")."""
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in CONTENT_TYPES
    }


class UiServicer(pb2_grpc.UiServiceServicer):
    """Serves the playground page and its assets."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.assets = asset_index(root)

    async def GetAsset(self, request, context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        """The file's bytes with its content type; the page when `path` is empty."""
        name = request.path.strip("/") or INDEX
        path = self.assets.get(name)
        if path is None:
            raise errors.NotFound(f"no playground file {name!r}", reason=types_pb2.ERROR_REASON_UNSPECIFIED)
        await context.send_initial_metadata((("cache-control", CACHE_CONTROL), *SECURITY_HEADERS))
        return httpbody_pb2.HttpBody(content_type=CONTENT_TYPES[path.suffix], data=path.read_bytes())
