"""LayerService."""

from __future__ import annotations

from google.api import httpbody_pb2

from aigen.server import headers
from aigen.server.convert import layer_proto
from aigen.server.layered import LayeredSessions
from aigen.v1 import layer_service_pb2 as pb2
from aigen.v1 import layer_service_pb2_grpc as pb2_grpc


class LayerServicer(pb2_grpc.LayerServiceServicer):
    """Separate, lock, unlock, list and export layers."""

    def __init__(self, layered: LayeredSessions, base_url: str) -> None:
        self.layered = layered
        self.base_url = base_url

    async def SeparateLayers(self, request: pb2.SeparateLayersRequest, context) -> pb2.SeparateLayersResponse:
        """Split the current image into layers."""
        records = await self.layered.separate(request.session_id, request.layer_count)
        return pb2.SeparateLayersResponse(
            session_id=request.session_id, layers=[layer_proto(r, self.base_url) for r in records]
        )

    async def LockLayer(self, request: pb2.LockLayerRequest, context) -> pb2.LockLayerResponse:
        """Lock a layer."""
        record = await self.layered.set_locked(request.session_id, request.layer_id, True)
        return pb2.LockLayerResponse(layer=layer_proto(record, self.base_url))

    async def UnlockLayer(self, request: pb2.UnlockLayerRequest, context) -> pb2.UnlockLayerResponse:
        """Unlock a layer."""
        record = await self.layered.set_locked(request.session_id, request.layer_id, False)
        return pb2.UnlockLayerResponse(layer=layer_proto(record, self.base_url))

    async def ListLayers(self, request: pb2.ListLayersRequest, context) -> pb2.ListLayersResponse:
        """The stack, background first, with the export URL."""
        records = await self.layered.list_layers(request.session_id)
        return pb2.ListLayersResponse(
            session_id=request.session_id,
            layers=[layer_proto(r, self.base_url) for r in records],
            export_url=f"{self.base_url}/session/{request.session_id}/layers:export",
        )

    async def ExportLayers(self, request: pb2.ExportLayersRequest, context) -> httpbody_pb2.HttpBody:
        """A zip of the layer PNGs and a manifest."""
        data = await self.layered.export(request.session_id)
        headers.add(("content-disposition", f'attachment; filename="{request.session_id}-layers.zip"'))
        return httpbody_pb2.HttpBody(content_type="application/zip", data=data)
