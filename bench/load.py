"""Closed-loop load: `concurrency` workers each send the next request as soon as one returns.

Every run is bounded by a duration and a request count, whichever comes first. Targets are
async callables that perform one request and raise on failure; latencies are wall-clock
seconds measured around each call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import grpc

from aigen.v1 import generation_service_pb2, generation_service_pb2_grpc

Call = Callable[[], Awaitable[int]]  # returns the response size in bytes
PROMPT = "A lighthouse at dusk, benchmark"


@dataclass
class LoadResult:
    """What one closed-loop run measured."""

    concurrency: int
    wall_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bytes_received: int = 0

    @property
    def ok(self) -> int:
        """Successful requests."""
        return len(self.latencies)

    @property
    def rps(self) -> float:
        """Successful requests per second of wall time."""
        return self.ok / self.wall_s if self.wall_s else 0.0

    def pct(self, q: float) -> float:
        """The q-quantile latency in ms (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
        return ordered[index] * 1000


async def closed_loop(call: Call, concurrency: int, duration_s: float, max_requests: int) -> LoadResult:
    """Run `call` from `concurrency` workers until `duration_s` passes or `max_requests` were started."""
    result = LoadResult(concurrency)
    started = 0
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        nonlocal started
        while time.perf_counter() < deadline and started < max_requests:
            started += 1
            begin = time.perf_counter()
            try:
                result.bytes_received += await call()
            except Exception as exc:  # counted, not raised: the table shows errors
                result.errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            result.latencies.append(time.perf_counter() - begin)

    begin = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - begin
    return result


# Targets ---------------------------------------------------------------------------------------


def http_session(concurrency: int) -> aiohttp.ClientSession:
    """A keep-alive HTTP/1.1 client with one connection per worker, no compression."""
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=180)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers={"Accept-Encoding": "identity"}, auto_decompress=False
    )


def http_post(session: aiohttp.ClientSession, url: str, payload: dict, headers: dict | None = None) -> Call:
    """POST JSON, read the whole body, fail on a status other than 200."""

    async def call() -> int:
        async with session.post(url, json=payload, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
            return len(body)

    return call


# What each aigen provider row asks for, by provider: the model's short name in aigen.
MODELS = {"openai": "gpt-image", "gemini": "nano-banana"}
GEMINI_MODEL_ID = "gemini-2.5-flash-image"


def direct_call(session: aiohttp.ClientSession, base_url: str, provider: str = "openai") -> Call:
    """The fake provider as the aigen adapter calls it for an unary generation (no previews)."""
    if provider == "gemini":
        payload = {
            "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
            "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "1:1"}},
        }
        return http_post(session, f"{base_url}/v1beta/models/{GEMINI_MODEL_ID}:generateContent", payload)
    payload = {"model": "gpt-image-1.5", "prompt": PROMPT, "size": "1024x1024", "quality": "auto"}
    return http_post(session, f"{base_url}/images/generations", payload)


def rest_call(session: aiohttp.ClientSession, origin: str, provider: str = "openai") -> Call:
    """Aigen through Envoy: POST /generate, the image bytes in the JSON answer."""
    return http_post(session, f"{origin}/generate", {"prompt": PROMPT, "provider": provider, "model": MODELS[provider]})


def litellm_call(session: aiohttp.ClientSession, origin: str, key: str) -> Call:
    """LiteLLM proxy: POST /v1/images/generations with the model routed to the fake."""
    payload = {"model": "gpt-image", "prompt": PROMPT}
    return http_post(session, f"{origin}/v1/images/generations", payload, {"Authorization": f"Bearer {key}"})


def grpc_channel(target: str) -> grpc.aio.Channel:
    """A channel without message size limits."""
    return grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    )


def grpc_call(channel: grpc.aio.Channel, provider: str = "openai") -> Call:
    """GenerateImage through `provider` with the bytes in the answer (omit_image_data false)."""
    stub = generation_service_pb2_grpc.GenerationServiceStub(channel)
    request = generation_service_pb2.GenerateImageRequest(
        prompt=PROMPT, provider=provider, model=MODELS[provider], omit_image_data=False
    )

    async def call() -> int:
        reply = await stub.GenerateImage(request, timeout=180)
        if not reply.data:
            raise RuntimeError("no image bytes")
        return len(reply.data)

    return call
