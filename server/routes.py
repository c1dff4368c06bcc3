"""The REST route a call came through, from the path Envoy's transcoder keeps in a header."""

from __future__ import annotations

import grpc

# Envoy's transcoder keeps the REST path here; native gRPC calls have no such header.
ORIGINAL_PATH_HEADER = "x-envoy-original-path"
APP_API_PREFIX = "/api/"


def original_path(context: grpc.aio.ServicerContext) -> str | None:
    """The REST path the call was transcoded from; None for a native gRPC call."""
    for key, value in context.invocation_metadata() or ():
        if key == ORIGINAL_PATH_HEADER:
            return value
    return None


def through_app_api(context: grpc.aio.ServicerContext) -> bool:
    """True for the APP-API routes (`/api/...`), whose answers carry a URL instead of bytes."""
    path = original_path(context)
    return path is not None and path.startswith(APP_API_PREFIX)
