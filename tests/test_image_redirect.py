"""Presigned redirects: with images in S3, GET /images/{id} through Envoy answers 302 to a
presigned URL of the bucket, which serves the same bytes; gRPC callers still get the bytes.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from envoy_harness import Stack, running_stack
from providers import ScriptedProvider, Succeed
from pydantic import ValidationError
from s3_harness import S3Server
from store_modes import shared_storage

from aigen.server.config import Settings
from aigen.server.providers.base import ProviderRegistry
from aigen.v1 import image_service_pb2, image_service_pb2_grpc

pytestmark = pytest.mark.timeout(120)


def registry() -> ProviderRegistry:
    providers = ProviderRegistry()
    providers.add(ScriptedProvider("alpha", script=[Succeed()]))
    return providers


@pytest.fixture
async def redirecting(tmp_path: Path, dsn: str, s3: S3Server) -> AsyncIterator[Stack]:
    """A stack whose images are served by presigned URLs on a public name of the S3 endpoint."""
    public = s3.endpoint_url.replace("127.0.0.1", "localhost")
    storage = {
        **shared_storage(dsn, s3, "redirect/"),
        "s3_presigned_redirect": True,
        "s3_public_endpoint_url": public,
    }
    async with running_stack(
        tmp_path, registry(), default_provider="alpha", default_model="alpha-1", **storage
    ) as stack:
        yield stack


async def generate(client: httpx.AsyncClient) -> dict:
    response = await client.post("/generate", json={"prompt": "A red kite"})
    assert response.status_code == 200, response.text
    return response.json()


async def test_rest_image_is_a_redirect_to_the_bucket(redirecting: Stack, s3: S3Server) -> None:
    async with redirecting.client() as client:
        image = await generate(client)
        answer = await client.get(f"/images/{image['imageId']}")
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(s3.endpoint_url.replace("127.0.0.1", "localhost") + f"/{s3.bucket}/redirect/")
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=900" in location
    assert "x-aigen-redirect" not in answer.headers
    assert answer.headers["cache-control"] == "no-store"
    async with httpx.AsyncClient() as outside:
        fetched = await outside.get(location)
    assert fetched.status_code == 200
    assert fetched.content == base64.b64decode(image["data"])
    assert fetched.headers["content-type"] == "image/png"
    assert fetched.headers["cache-control"] == "public, max-age=31536000, immutable"


async def test_grpc_callers_still_get_the_bytes(redirecting: Stack) -> None:
    async with redirecting.client() as client:
        image = await generate(client)
    async with grpc.aio.insecure_channel(redirecting.grpc_target) as channel:
        body = await image_service_pb2_grpc.ImageServiceStub(channel).GetImage(
            image_service_pb2.GetImageRequest(image_id=image["imageId"])
        )
    assert body.data == base64.b64decode(image["data"])
    assert body.content_type == "image/png"


async def test_unknown_image_is_still_404(redirecting: Stack) -> None:
    async with redirecting.client() as client:
        answer = await client.get("/images/img_doesnotexist")
    assert answer.status_code == 404
    assert answer.json()["code"] == 5


async def test_without_the_option_rest_gets_the_bytes(tmp_path: Path, dsn: str, s3: S3Server) -> None:
    storage = shared_storage(dsn, s3, "relay/")
    async with (
        running_stack(tmp_path, registry(), default_provider="alpha", default_model="alpha-1", **storage) as stack,
        stack.client() as client,
    ):
        image = await generate(client)
        answer = await client.get(f"/images/{image['imageId']}")
    assert answer.status_code == 200
    assert answer.content == base64.b64decode(image["data"])


def test_redirects_need_images_in_s3(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="AIGEN_S3_PRESIGNED_REDIRECT needs AIGEN_BLOBS=s3"):
        Settings(data_dir=tmp_path, s3_presigned_redirect=True)
