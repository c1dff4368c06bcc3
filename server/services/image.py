"""ImageService: image bytes by id, with cache headers for the permanent URLs."""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2

from aigen.server import errors, headers
from aigen.server.store.base import Store
from aigen.v1 import image_service_pb2_grpc as pb2_grpc

CACHE_CONTROL = "public, max-age=31536000, immutable"


class ImageServicer(pb2_grpc.ImageServiceServicer):
    """Serves stored images; ids are unguessable, content never changes."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def GetImage(self, request, context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        """The bytes with their content type, an ETag and long-lived cache headers."""
        if not request.image_id:
            raise errors.InvalidArgument("imageId", "is required")
        image = await self.store.get_image(request.image_id)
        data = await self.store.read_blob(image.sha256)
        headers.add(("etag", f'"{image.sha256}"'), ("cache-control", CACHE_CONTROL))
        return httpbody_pb2.HttpBody(content_type=image.content_type, data=data)
