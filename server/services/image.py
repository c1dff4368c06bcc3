"""ImageService: image bytes by id, with cache headers for the permanent URLs."""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2

from aigen.server import errors, headers, routes
from aigen.server.store.base import Store
from aigen.server.store.blobs import IMAGE_CACHE_CONTROL
from aigen.v1 import image_service_pb2_grpc as pb2_grpc

# Set on an empty answer when the caller should fetch the bytes from this URL instead; Envoy
# turns it into a 302 with that Location for REST callers.
REDIRECT_HEADER = "x-aigen-redirect"


class ImageServicer(pb2_grpc.ImageServiceServicer):
    """Serves stored images; ids are unguessable, content never changes.

    With `presign_expiry_s`, REST callers are redirected to a presigned URL of the blob
    backend (valid that many seconds) when it has one; gRPC callers always get the bytes.
    """

    def __init__(self, store: Store, presign_expiry_s: int = 0) -> None:
        self.store = store
        self.presign_expiry_s = presign_expiry_s

    async def GetImage(self, request, context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        """The bytes with their content type, an ETag and long-lived cache headers."""
        if not request.image_id:
            raise errors.InvalidArgument("imageId", "is required")
        image = await self.store.get_image(request.image_id)
        if self.presign_expiry_s and routes.original_path(context) is not None:
            url = await self.store.blob_url(image.sha256, self.presign_expiry_s, image.content_type)
            if url:
                headers.add((REDIRECT_HEADER, url), ("cache-control", "no-store"))
                return httpbody_pb2.HttpBody()
        data = await self.store.read_blob(image.sha256)
        headers.add(("etag", f'"{image.sha256}"'), ("cache-control", IMAGE_CACHE_CONTROL))
        return httpbody_pb2.HttpBody(content_type=image.content_type, data=data)
