"""OpsService: Prometheus metrics and the OpenAPI document, through the service port."""

from __future__ import annotations

import asyncio
from pathlib import Path

from google.api import httpbody_pb2

from aigen.server import errors
from aigen.server.observability.metrics import CONTENT_TYPE, Metrics
from aigen.v1 import ops_service_pb2_grpc as pb2_grpc

OPENAPI_DOCUMENT = Path(__file__).resolve().parent.parent.parent / "gen" / "openapi.json"


class OpsServicer(pb2_grpc.OpsServiceServicer):
    """Unauthenticated operational endpoints."""

    def __init__(self, metrics: Metrics, openapi_document: Path = OPENAPI_DOCUMENT) -> None:
        self.metrics = metrics
        self.openapi_document = openapi_document

    async def GetMetrics(self, request, context) -> httpbody_pb2.HttpBody:
        """Every metric in the Prometheus text format."""
        return httpbody_pb2.HttpBody(content_type=CONTENT_TYPE, data=self.metrics.render())

    async def GetOpenApiDocument(self, request, context) -> httpbody_pb2.HttpBody:
        """The OpenAPI document generated from the protos (`make gen`)."""
        try:
            data = await asyncio.to_thread(self.openapi_document.read_bytes)
        except FileNotFoundError:
            raise errors.AigenError(f"{self.openapi_document.name} is missing; run 'make gen'") from None
        return httpbody_pb2.HttpBody(content_type="application/json", data=data)
