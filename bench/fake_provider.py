"""A lean fake image provider for benchmarks: one fixed ~200 KB PNG after a configurable delay.

Speaks two wire formats on one port, with the delay in the path so one process serves every
scenario:

- OpenAI Images: `POST /d/{ms}/v1/images/generations` (base URL `http://host:port/d/{ms}/v1`).
  With `"stream": true` (what the aigen adapter sends when a caller watches previews) the answer
  is server-sent events ending in `image_generation.completed`; otherwise JSON
  `{"data": [{"b64_json": ...}], ...}` (unary generations, LiteLLM, curl).
- Gemini: `POST /d/{ms}/v1beta/models/{model}:generateContent` (base URL `http://host:port/d/{ms}`),
  the JSON the google-genai SDK reads: one candidate whose one part is the inline PNG (base64).

Every reply body is built once at start-up, so the fake costs little CPU per request. Arrival
times (`time.monotonic()`, comparable across processes on Linux) are kept for the failover
measurement. Run standalone: `python -m bench.fake_provider --port 0 --port-file PATH`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import signal
import time
from pathlib import Path

from aiohttp import web
from PIL import Image

IMAGE_SIDE = 256  # 256 x 256 RGB noise compresses to ~197 KB of PNG


def noise_png(side: int = IMAGE_SIDE, seed: int = 7) -> bytes:
    """A PNG of random pixels: incompressible, so its size is stable (~3 bytes per pixel)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _openai_answer(encoded: str) -> dict:
    """images.generate's JSON answer, with the fields GPT Image sends."""
    return {
        "created": int(time.time()),
        "data": [{"b64_json": encoded}],
        "background": "opaque",
        "output_format": "png",
        "quality": "medium",
        "size": "1024x1024",
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"image_tokens": 0, "text_tokens": 10},
            "output_tokens": 1056,
            "total_tokens": 1066,
        },
    }


def _gemini_answer(encoded: str) -> dict:
    """The answer of generateContent with one inline PNG, as gemini-2.5-flash-image sends it."""
    part = {"inlineData": {"mimeType": "image/png", "data": encoded}}
    return {
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {
            "promptTokenCount": 9,
            "candidatesTokenCount": 1290,
            "totalTokenCount": 1299,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
        },
        "modelVersion": "gemini-2.5-flash-image",
        "responseId": "bench-fake",
    }


class FakeProvider:
    """The aiohttp application and its prebuilt replies."""

    def __init__(self, image: bytes | None = None) -> None:
        self.image = image if image is not None else noise_png()
        encoded = base64.b64encode(self.image).decode()
        completed = {
            "type": "image_generation.completed",
            "b64_json": encoded,
            "created_at": int(time.time()),
            "size": "1024x1024",
            "quality": "auto",
            "background": "opaque",
            "output_format": "png",
            "usage": {"input_tokens": 10, "output_tokens": 4160, "total_tokens": 4170},
        }
        self.openai_sse = f"event: image_generation.completed\ndata: {json.dumps(completed)}\n\n".encode()
        self.openai_json = json.dumps(_openai_answer(encoded)).encode()
        self.gemini_json = json.dumps(_gemini_answer(encoded)).encode()
        self.arrivals: list[tuple[str, float]] = []  # (wire, monotonic time)
        self.in_flight = 0
        self.peak_in_flight = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        """Routes for both wire formats, with and without the delay prefix."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.post("/v1/images/generations", self.openai),
                web.post("/d/{ms}/v1/images/generations", self.openai),
                web.post("/v1beta/models/{model}:generateContent", self.gemini),
                web.post("/d/{ms}/v1beta/models/{model}:generateContent", self.gemini),
                web.get("/stats", self.stats),
            ]
        )
        return app

    async def _wait(self, request: web.Request, wire: str) -> bytes:
        self.arrivals.append((wire, time.monotonic()))
        body = await request.read()
        delay_ms = float(request.match_info.get("ms", "0"))
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        return body

    async def openai(self, request: web.Request) -> web.StreamResponse:
        """OpenAI images.generate: SSE when streaming, JSON otherwise."""
        self._enter()
        try:
            raw = await self._wait(request, "openai")
            if b'"stream"' in raw and json.loads(raw).get("stream") in (True, "true"):
                return web.Response(body=self.openai_sse, content_type="text/event-stream")
            return web.Response(body=self.openai_json, content_type="application/json")
        finally:
            self._leave()

    async def gemini(self, request: web.Request) -> web.StreamResponse:
        """Gemini generateContent with one inline PNG."""
        self._enter()
        try:
            await self._wait(request, "gemini")
            return web.Response(body=self.gemini_json, content_type="application/json")
        finally:
            self._leave()

    async def stats(self, request: web.Request) -> web.Response:
        """Request counts and the peak number of requests in flight."""
        return web.json_response({"requests": len(self.arrivals), "peak_in_flight": self.peak_in_flight})

    def _enter(self) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _leave(self) -> None:
        self.in_flight -= 1

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen; returns the port."""
        self.runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, host, port, backlog=4096).start()
        self.port = self.runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self.runner is not None:
            await self.runner.cleanup()

    def openai_base_url(self, delay_ms: int = 0) -> str:
        """What OPENAI_BASE_URL should be for this delay."""
        return f"http://127.0.0.1:{self.port}/d/{delay_ms}/v1"

    def gemini_base_url(self, delay_ms: int = 0) -> str:
        """What GOOGLE_GEMINI_BASE_URL should be for this delay."""
        return f"http://127.0.0.1:{self.port}/d/{delay_ms}"


async def _serve(port: int, port_file: Path | None) -> None:
    fake = FakeProvider()
    bound = await fake.start(port=port)
    if port_file is not None:
        await asyncio.to_thread(port_file.write_text, str(bound))
    print(f"fake provider on 127.0.0.1:{bound}, image {len(fake.image)} bytes", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


def main() -> None:
    """Run the fake until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.port_file))


if __name__ == "__main__":
    main()
