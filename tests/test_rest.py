"""The REST API through the real Envoy: API.md's curl examples as written, every route, the
JSON error bodies, image URLs, incremental SSE progress, and native gRPC on the same port.

Providers are fakes registered like real ones: "gemini" and "replicate" answer at once
(gemini's nano-banana-pro is down, to exercise the fallback), "slow" takes about 2 s while
reporting progress, "broken" always fails, "noisy" returns incompressible (large) PNGs; the
built-in local renderer draws scenes with subjects for layered mode.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import io
import json
import select
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import grpc
import httpx
import numpy as np
import pytest
from envoy_harness import Stack, running_stack
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from PIL import Image
from providers import ScriptedProvider, SlowProvider, Succeed, profile

from aigen.server.errors import ProviderUnavailable
from aigen.server.providers.base import (
    ImageRequest,
    ImageResult,
    ProgressCallback,
    ProviderRegistry,
)
from aigen.server.providers.local import LocalProvider
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import generation_service_pb2_grpc as gen_grpc
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import session_service_pb2_grpc as session_grpc

pytestmark = pytest.mark.both_stores

MiB = 1024 * 1024
JSON = {"Content-Type": "application/json"}


# Fake providers ---------------------------------------------------------------------------
REVISED = "a blue planet with rings, revised"


@dataclass
class PartlyDown(ScriptedProvider):
    """A scripted provider whose `down` models are always unavailable."""

    down: frozenset[str] = frozenset()

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        if request.model in self.down:
            raise ProviderUnavailable(f"{self.name}/{request.model} is down")
        return await super().generate(request, progress)


@functools.cache
def noise_png(width: int, height: int) -> bytes:
    """An incompressible PNG: about 3 bytes per pixel."""
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


class NoisyProvider(ScriptedProvider):
    """Incompressible images: a 4K PNG is about 50 MB."""

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        data = await asyncio.to_thread(noise_png, request.width, request.height)
        return ImageResult(data=data, mime_type="image/png")


def fake_registry() -> ProviderRegistry:
    """gemini (nano-banana-pro down), replicate, slow (~2 s with progress), broken, noisy, local."""
    gemini_models = (
        profile("gemini", "nano-banana", credits_per_image=2),
        profile("gemini", "nano-banana-pro", credits_per_image=5),
    )
    replicate_models = tuple(profile("replicate", m) for m in ("flux-pro", "recraft", "ideogram", "flux-dev"))
    registry = ProviderRegistry()
    for provider in (
        PartlyDown("gemini", gemini_models, [Succeed(revised_prompt=REVISED)], down=frozenset({"nano-banana-pro"})),
        ScriptedProvider("replicate", replicate_models, [Succeed(revised_prompt=REVISED)]),
        SlowProvider("slow", 2.0, report_every=0.4, measured=True),
        ScriptedProvider("broken", (profile("broken", "a"), profile("broken", "b")), [ProviderUnavailable("down")]),
        NoisyProvider("noisy", (profile("noisy", "noise"),)),
        LocalProvider(),
    ):
        registry.add(provider)
    return registry


SLOW = {"provider": "slow", "model": "slow-1"}
BROKEN_CHAIN = {"prompt": "x", "provider": "broken", "model": "a", "fallback": [{"provider": "broken", "model": "b"}]}
FAST_RETRIES = {"retry_base_delay_s": 0.01, "retry_max_delay_s": 0.02, "cooldown_failures": 10_000}


# Fixtures and helpers ---------------------------------------------------------------------
@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, store_mode: str) -> AsyncIterator[Stack]:
    """One stack per storage mode."""
    async with running_stack(tmp_path_factory.mktemp("rest"), fake_registry(), **FAST_RETRIES) as running:
        yield running


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as http:
        yield http


@pytest.fixture
async def session_id(client: httpx.AsyncClient) -> str:
    """A session with a first image, made with the documented curl examples."""
    created = await curl_post(client, "/session", '{"project":"test","mode":"single"}')
    sid = created.json()["sessionId"]
    generated = await curl_post(client, f"/session/{sid}/generate", '{"prompt":"Blue planet with rings"}')
    assert generated.status_code == 200, generated.text
    return sid


async def curl_post(client: httpx.AsyncClient, path: str, body: str) -> httpx.Response:
    """What `curl -X POST ... -H "Content-Type: application/json" -d '<body>'` sends."""
    return await client.post(path, content=body.encode(), headers=JSON)


def keys(value: Any) -> set[str]:
    """Every object key, recursively."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def assert_camel(body: Any) -> None:
    snake = sorted(k for k in keys(body) if "_" in k)
    assert not snake, f"snake_case names in a REST response: {snake}"


def detail(body: dict, type_name: str) -> dict:
    """The first error detail of `type_name` ("google.rpc.BadRequest")."""
    for item in body.get("details", []):
        if item["@type"].endswith("/" + type_name):
            return item
    raise AssertionError(f"no {type_name} in {body}")


def assert_error(response: httpx.Response, http_status: int, grpc_code: int) -> dict:
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == grpc_code, body
    assert body["message"]
    return body


def result_without_data(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "data"}


async def sse_frames(response: httpx.Response, started: float) -> list[tuple[float, dict]]:
    """Each `data:` frame with its arrival time (seconds after `started`)."""
    frames = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            frames.append((time.monotonic() - started, json.loads(line.removeprefix("data: "))))
    return frames


# API.md: curl examples as written ---------------------------------------------------------
async def test_create_session_curl(client: httpx.AsyncClient) -> None:
    response = await curl_post(client, "/session", '{"project":"test","mode":"single"}')
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["sessionId"].startswith("sess_")
    assert body["status"] == "ready"
    assert body["project"] == "test"
    assert body["mode"] == "single"
    assert_camel(body)


async def test_generate_curl(client: httpx.AsyncClient) -> None:
    created = await curl_post(client, "/session", '{"project":"test","mode":"single"}')
    sid = created.json()["sessionId"]
    response = await curl_post(client, f"/session/{sid}/generate", '{"prompt":"Blue planet with rings"}')
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["provider"], body["model"]) == ("gemini", "nano-banana")  # the documented default
    assert body["sessionId"] == sid
    assert body["turnId"]
    assert body["contentType"] == "image/png"
    assert body["url"].endswith(f"/images/{body['imageId']}")
    assert (body["width"], body["height"]) == (1024, 1024)
    assert body["creditsUsed"] == 2
    assert body["revisedPrompt"] == REVISED
    assert base64.b64decode(body["data"]).startswith(b"\x89PNG")
    assert "fallbackUsed" not in body and "originalRequest" not in body
    assert_camel(result_without_data(body))


ITERATE_CURLS = [
    '{"instructions":"Remove the gold badge","aspectRatio":"4:5","provider":"gemini","model":"nano-banana"}',
    '{"instructions":"Make it more vibrant","provider":"replicate","model":"recraft"}',
    '{"instructions":"Add text SALE 50% OFF","provider":"replicate","model":"ideogram"}',
]


@pytest.mark.parametrize("body", ITERATE_CURLS, ids=["nano-banana", "recraft", "ideogram"])
async def test_iterate_curl(client: httpx.AsyncClient, session_id: str, body: str) -> None:
    sent = json.loads(body)
    response = await curl_post(client, f"/session/{session_id}/iterate", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["provider"], result["model"]) == (sent["provider"], sent["model"])
    assert result["sessionId"] == session_id
    assert "fallbackUsed" not in result
    if "aspectRatio" in sent:
        assert result["aspectRatio"] == "4:5"
        assert result["width"] / result["height"] == pytest.approx(4 / 5, rel=0.02)
    assert_camel(result_without_data(result))


async def test_fallback_fields_as_documented(client: httpx.AsyncClient) -> None:
    """API.md's "max quality with fallback" request: the pro model is down here."""
    body = {
        "prompt": "Blue planet with rings",
        "provider": "gemini",
        "model": "nano-banana-pro",
        "fallback": [{"provider": "replicate", "model": "flux-pro"}, {"provider": "gemini", "model": "nano-banana"}],
    }
    response = await client.post("/generate", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["fallbackUsed"] == {"provider": "replicate", "model": "flux-pro"}
    assert result["originalRequest"] == {"provider": "gemini", "model": "nano-banana-pro"}
    assert (result["provider"], result["model"]) == ("replicate", "flux-pro")
    assert result["attempts"][0]["provider"] == "gemini"
    assert result["attempts"][-1]["outcome"] == "ATTEMPT_OUTCOME_SUCCEEDED"


async def test_session_generate_with_fallback_as_documented(client: httpx.AsyncClient) -> None:
    created = await curl_post(client, "/session", '{"project":"test","mode":"single"}')
    sid = created.json()["sessionId"]
    body = (
        '{"prompt": "Blue planet with rings", "provider": "gemini", "model": "nano-banana-pro",'
        ' "fallback": [{"provider":"gemini","model":"nano-banana"}], "referenceImages": []}'
    )
    response = await curl_post(client, f"/session/{sid}/generate", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["fallbackUsed"] == {"provider": "gemini", "model": "nano-banana"}
    assert result["originalRequest"] == {"provider": "gemini", "model": "nano-banana-pro"}


async def test_create_session_with_config(client: httpx.AsyncClient) -> None:
    body = {
        "project": "name",
        "mode": "single",
        "config": {"aspectRatio": "story", "imageSize": "2K", "provider": "gemini", "model": "nano-banana-pro"},
    }
    response = await client.post("/session", json=body)
    assert response.status_code == 200, response.text
    config = response.json()["config"]
    assert config["aspectRatio"] == "9:16"
    assert (config["imageSize"], config["provider"], config["model"]) == ("2K", "gemini", "nano-banana-pro")


# Every other route ------------------------------------------------------------------------
async def test_session_routes(client: httpx.AsyncClient, session_id: str) -> None:
    session = (await client.get(f"/session/{session_id}")).json()
    assert (session["sessionId"], session["status"], session["turnCount"]) == (session_id, "ready", 1)
    assert session["currentImage"]["contentType"] == "image/png"
    listed = (await client.get("/sessions", params={"project": "test"})).json()
    assert session_id in [s["sessionId"] for s in listed["sessions"]]
    history = (await client.get(f"/session/{session_id}/history")).json()
    assert history["sessionId"] == session_id
    assert [t["kind"] for t in history["turns"]] == ["KIND_GENERATE"]
    assert history["turns"][0]["status"] == "STATUS_COMPLETED"
    assert_camel(history)
    deleted = await client.delete(f"/session/{session_id}")
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert_error(await client.get(f"/session/{session_id}"), 404, 5)


async def test_catalogue_routes(client: httpx.AsyncClient) -> None:
    providers = (await client.get("/providers")).json()["providers"]
    by_name = {p["name"]: p for p in providers}
    assert by_name["gemini"]["configured"] is True
    assert "nano-banana" in by_name["gemini"]["models"]
    models = (await client.get("/models")).json()["models"]
    flash = next(m for m in models if m["model"] == "nano-banana")
    assert flash["internalId"]
    assert flash["creditsPerImage"] == 2
    assert_camel(models)
    replicate = (await client.get("/models", params={"provider": "replicate"})).json()["models"]
    assert {m["provider"] for m in replicate} == {"replicate"}


async def test_sessionless_generate(client: httpx.AsyncClient) -> None:
    body = {"prompt": "Blue planet with rings", "aspectRatio": "16:9", "omitImageData": True}
    response = await client.post("/generate", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert "data" not in result and "sessionId" not in result
    assert result["width"] > result["height"]


async def test_image_url_serves_the_bytes(client: httpx.AsyncClient) -> None:
    result = (await client.post("/generate", json={"prompt": "Blue planet with rings"})).json()
    image = await client.get(urlparse(result["url"]).path)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.content == base64.b64decode(result["data"])
    assert_error(await client.get("/images/img_doesnotexist"), 404, 5)


# APP-API routes: snake_case names ---------------------------------------------------------
async def test_app_api_generate_is_snake_case(client: httpx.AsyncClient) -> None:
    body = {"prompt": "A cat wearing a top hat", "aspect_ratio": "16:9", "image_size": "1K", "quality": "auto"}
    response = await client.post("/api/proj-1/services/image", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    for name in ("url", "content_type", "revised_prompt", "model", "provider", "credits_used"):
        assert name in result, name
    assert result["content_type"] == "image/png"
    assert result["credits_used"] == 2
    assert result["width"] > result["height"]
    assert not {"contentType", "revisedPrompt", "creditsUsed"} & set(result)


async def test_app_api_models_is_snake_case(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/proj-1/services/image/models")
    assert response.status_code == 200, response.text
    models = response.json()["models"]
    assert {"internal_id", "credits_per_image"} <= keys(models)
    assert not {"internalId", "creditsPerImage"} & keys(models)


async def test_app_api_errors_are_json(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.post("/api/proj-1/services/image", json={}), 400, 3)
    assert detail(body, "google.rpc.BadRequest")
    assert_error(await client.get("/api/proj-1/services/image/nothing"), 404, 5)


# Layered mode -----------------------------------------------------------------------------
async def test_layer_routes(client: httpx.AsyncClient) -> None:
    created = await client.post("/session", json={"project": "test", "mode": "layered"})
    sid = created.json()["sessionId"]
    scene = {"prompt": "Blue planet with rings", "provider": "local"}  # draws subjects to separate
    generated = await client.post(f"/session/{sid}/generate", json=scene)
    assert generated.status_code == 200, generated.text
    separated = await client.post(f"/session/{sid}/separate", json={})
    assert separated.status_code == 200, separated.text
    layers = separated.json()["layers"]
    assert len(layers) >= 2
    layer_id = layers[-1]["layerId"]
    locked = await client.post(f"/session/{sid}/lock", json={"layerId": layer_id})
    assert locked.status_code == 200, locked.text
    assert locked.json()["layer"]["locked"] is True
    listed = (await client.get(f"/session/{sid}/layers")).json()["layers"]
    assert [layer["layerId"] for layer in listed] == [layer["layerId"] for layer in layers]
    unlocked = await client.post(f"/session/{sid}/unlock", json={"layerId": layer_id})
    assert unlocked.json()["layer"].get("locked", False) is False
    export = await client.get(f"/session/{sid}/layers:export")
    assert export.status_code == 200
    assert export.headers["content-type"] == "application/zip"
    assert export.content.startswith(b"PK")


# Errors -----------------------------------------------------------------------------------
async def test_invalid_input_is_400_with_field_violation(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.post("/generate", json={}), 400, 3)
    violations = detail(body, "google.rpc.BadRequest")["fieldViolations"]
    assert [v["field"] for v in violations] == ["prompt"]
    too_long = await client.post("/generate", json={"prompt": "x" * 4001})
    assert detail(assert_error(too_long, 400, 3), "google.rpc.BadRequest")["fieldViolations"][0]["field"] == "prompt"


async def test_unknown_session_is_404(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get("/session/sess_doesnotexist"), 404, 5)
    assert detail(body, "google.rpc.ErrorInfo")["reason"] == "SESSION_NOT_FOUND"
    assert_error(await curl_post(client, "/session/sess_doesnotexist/generate", '{"prompt":"x"}'), 404, 5)


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("PUT", "/session"), ("GET", "/session/a/b/c")])
async def test_unknown_route_is_404_json(client: httpx.AsyncClient, method: str, path: str) -> None:
    assert_error(await client.request(method, path), 404, 5)


async def test_unknown_query_parameter_is_400_json(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get("/models", params={"colour": "blue"}), 400, 3)
    assert "colour" in body["message"]


async def test_bad_json_is_400_json(client: httpx.AsyncClient) -> None:
    assert_error(await curl_post(client, "/generate", '{"prompt": '), 400, 3)


async def test_fourteen_large_reference_images_pass(client: httpx.AsyncClient) -> None:
    encoded = base64.b64encode(await asyncio.to_thread(noise_png, 1000, 1000)).decode()
    forms = [encoded, f"data:image/png;base64,{encoded}", {"data": encoded, "mimeType": "image/png"}]
    references = [forms[i % 3] for i in range(14)]
    body = {"prompt": "Blue planet with rings", "referenceImages": references, "omitImageData": True}
    content = json.dumps(body).encode()
    assert len(content) > 50 * MiB
    response = await client.post("/generate", content=content, headers=JSON, timeout=120)
    assert response.status_code == 200, response.text[:500]
    assert response.json()["contentType"] == "image/png"


async def upstream_requests(stack: Stack) -> int:
    async with httpx.AsyncClient() as admin:
        stats = await admin.get(f"{stack.envoy.admin_url}/stats", params={"filter": "upstream_rq_total$"})
    return sum(int(line.rsplit(":", 1)[1]) for line in stats.text.splitlines() if "aigen_grpc" in line)


async def test_4k_image_response_is_not_truncated(client: httpx.AsyncClient) -> None:
    body = {"prompt": "x", "provider": "noisy", "model": "noise", "imageSize": "4K"}
    response = await client.post("/generate", json=body, timeout=120)
    assert response.status_code == 200, response.text[:500]
    result = response.json()
    data = base64.b64decode(result["data"])
    assert min(result["width"], result["height"]) >= 3840
    assert len(data) > 40 * MiB
    image = await client.get(urlparse(result["url"]).path, timeout=120)
    assert image.content == data


async def test_body_cannot_override_path_variables(client: httpx.AsyncClient, session_id: str) -> None:
    other = (await curl_post(client, "/session", '{"project":"other"}')).json()["sessionId"]
    moved = await client.post(f"/session/{session_id}/generate", json={"prompt": "x", "session_id": other})
    assert_error(moved, 400, 3)
    elsewhere = await client.post("/api/proj-1/services/image", json={"prompt": "x", "project": "proj-2"})
    assert_error(elsewhere, 400, 3)


def raw_post(port: int, path: str, length: int) -> tuple[int, bytes]:
    """POST `length` bytes of JSON-ish body, stopping once the server answers; (status, body).

    A blocking socket, because the answer must be read even after the peer resets.
    """
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
    chunk, sent, raw = b"A" * MiB, 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(head.encode() + b'\r\n{"prompt": "x", "referenceImages": ["')
            while sent < length and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += len(chunk)
        with contextlib.suppress(ConnectionError):
            while part := sock.recv(65536):
                raw += part
    head_part, _, body = raw.partition(b"\r\n\r\n")
    return int(head_part.split(b" ", 2)[1]), body


async def test_oversize_request_is_413_json_before_the_server(stack: Stack) -> None:
    before = await upstream_requests(stack)
    status, body = await asyncio.to_thread(raw_post, stack.envoy.http_port, "/generate", 170 * MiB)
    assert status == 413
    error = json.loads(body)
    assert error["code"] == 3
    assert detail(error, "google.rpc.ErrorInfo")["reason"] == "PAYLOAD_TOO_LARGE"
    assert await upstream_requests(stack) == before


# Streaming --------------------------------------------------------------------------------
async def stream(client: httpx.AsyncClient, path: str, body: dict) -> tuple[httpx.Headers, list[tuple[float, dict]]]:
    started = time.monotonic()
    async with client.stream("POST", path, json=body) as response:
        assert response.status_code == 200
        return response.headers, await sse_frames(response, started)


def assert_incremental(frames: list[tuple[float, dict]]) -> None:
    """First frame at once, frames spread over the ~2 s generation, terminal event last."""
    times = [t for t, _ in frames]
    assert times[0] < 1.0, f"first frame after {times[0]:.2f} s"
    assert times[-1] - times[0] > 1.2, times
    middle = [t for t in times if times[0] + 0.2 < t < times[-1] - 0.2]
    assert len(middle) >= 2, f"frames arrived in bursts: {times}"
    phases = [frame["phase"] for _, frame in frames]
    assert phases[-1] == "PHASE_COMPLETED", phases
    assert "PHASE_COMPLETED" not in phases[:-1] and "PHASE_FAILED" not in phases
    assert "PHASE_RUNNING" in phases


async def test_sessionless_stream_is_incremental_sse(client: httpx.AsyncClient) -> None:
    body = {"prompt": "Blue planet with rings", **SLOW, "omitImageData": True}
    headers, frames = await stream(client, "/generate:stream", body)
    assert headers["content-type"].startswith("text/event-stream")
    assert_incremental(frames)
    result = frames[-1][1]["result"]
    assert (result["provider"], result["contentType"]) == ("slow", "image/png")
    assert any(frame.get("percent", 0) > 0 for _, frame in frames[:-1])
    assert_camel([frame for _, frame in frames])


async def test_session_streams_are_incremental_sse(client: httpx.AsyncClient, session_id: str) -> None:
    slow = {**SLOW, "omitImageData": True}
    _, frames = await stream(client, f"/session/{session_id}/generate:stream", {"prompt": "Moon", **slow})
    assert_incremental(frames)
    _, frames = await stream(client, f"/session/{session_id}/iterate:stream", {"instructions": "Redder", **slow})
    assert_incremental(frames)
    assert frames[-1][1]["result"]["sessionId"] == session_id


async def test_stream_failure_is_an_in_band_terminal_event(client: httpx.AsyncClient) -> None:
    _, frames = await stream(client, "/generate:stream", BROKEN_CHAIN)
    terminal = frames[-1][1]
    assert terminal["phase"] == "PHASE_FAILED"
    assert terminal["error"]["code"] == 14


async def test_stream_validation_error_is_a_plain_json_error(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/generate:stream", json={}), 400, 3)


# Native gRPC on the Envoy port ------------------------------------------------------------
async def test_native_grpc_through_envoy(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        sessions = session_grpc.SessionServiceStub(channel)
        session = await sessions.CreateSession(session_pb2.CreateSessionRequest(project="grpc"))
        generations = gen_grpc.GenerationServiceStub(channel)
        result = await generations.Generate(gen_pb2.GenerateRequest(session_id=session.session_id, prompt="Ring"))
        assert (result.provider, result.model, result.content_type) == ("gemini", "nano-banana", "image/png")
        assert result.data.startswith(b"\x89PNG")
        request = gen_pb2.GenerateImageRequest(prompt="Ring", **SLOW)
        events = [event async for event in generations.StreamGenerateImage(request)]
        assert events[-1].HasField("result")
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await sessions.GetSession(session_pb2.GetSessionRequest(session_id="sess_doesnotexist"))
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND
        status = rpc_status.from_call(failure.value)
        assert status is not None and status.details


async def test_native_grpc_unknown_method_is_unimplemented(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        call = channel.unary_unary("/aigen.v1.GenerationService/Nope")
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call(b"")
        assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED


# Contract cases that depend on server features (ABORTED 409, UNAVAILABLE 503, ...) ----------
async def test_busy_session_is_409(client: httpx.AsyncClient, session_id: str) -> None:
    body = {"prompt": "Moon", **SLOW, "omitImageData": True}
    async with client.stream("POST", f"/session/{session_id}/generate:stream", json=body) as running:
        lines = running.aiter_lines()
        assert (await anext(lines)).startswith("data: ")
        busy = await curl_post(client, f"/session/{session_id}/generate", '{"prompt":"Blue planet with rings"}')
        body = assert_error(busy, 409, 10)
        assert detail(body, "google.rpc.ErrorInfo")["reason"] == "SESSION_BUSY"
        async for _ in lines:
            pass


async def test_all_providers_failed_is_503(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.post("/generate", json=BROKEN_CHAIN), 503, 14)
    # The shared cause when every pair failed alike, else ALL_PROVIDERS_FAILED.
    assert detail(error, "google.rpc.ErrorInfo")["reason"] in ("PROVIDER_UNAVAILABLE", "ALL_PROVIDERS_FAILED")
    attempts = [d for d in error["details"] if d["@type"].endswith("/aigen.v1.Attempt")]
    assert (attempts[-1]["model"], attempts[-1]["outcome"]) == ("b", "ATTEMPT_OUTCOME_FAILED_RETRYABLE")


async def test_request_timeout_is_504(client: httpx.AsyncClient) -> None:
    body = {"prompt": "x", **SLOW, "timeout": "0.5s"}
    started = time.monotonic()
    error = assert_error(await client.post("/generate", json=body), 504, 4)
    assert time.monotonic() - started < 1.8
    assert detail(error, "google.rpc.ErrorInfo")["reason"] == "DEADLINE_EXCEEDED"


async def test_generation_deadline_is_504(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The configured deadline (here 1 s) reaches the server; the caller gets 504 either way."""
    workdir = tmp_path_factory.mktemp("deadline")
    settings = {"generation_timeout_s": 1.0, **FAST_RETRIES}
    async with running_stack(workdir, fake_registry(), **settings) as short, short.client() as http:
        started = time.monotonic()
        body = {"prompt": "x", **SLOW}
        assert_error(await http.post("/generate", json=body), 504, 4)
        assert time.monotonic() - started < 1.8
