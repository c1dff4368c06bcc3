"""The ceiling: a minimal grpc.aio GenerateImage that makes the same SDK call and returns the bytes.

No validation, no store, no engine, no interceptor: what any Python gRPC gateway in front of the
vendor's SDK must at least spend. `python -m bench.ceiling --port-file PATH` with OPENAI_BASE_URL
set, or `--provider gemini` with GOOGLE_GEMINI_BASE_URL set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

import grpc
import openai
import pybase64
from google import genai
from google.genai import types

from aigen.v1 import generation_service_pb2_grpc, types_pb2


class OpenAICeiling(generation_service_pb2_grpc.GenerationServiceServicer):
    """GenerateImage only, through the OpenAI SDK."""

    def __init__(self) -> None:
        self.client = openai.AsyncOpenAI(
            api_key="bench",
            base_url=os.environ["OPENAI_BASE_URL"],
            max_retries=0,
            timeout=120,
            http_client=openai.DefaultAioHttpClient(),  # the transport the aigen adapter runs on
        )

    async def GenerateImage(self, request, context):
        """images.generate (JSON answer), as the aigen adapter calls it without previews."""
        answer = await self.client.images.generate(
            model="gpt-image-1.5", prompt=request.prompt, size="1024x1024", quality="auto"
        )
        data = pybase64.b64decode(answer.data[0].b64_json or "", validate=True) if answer.data else b""
        if not data:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no image")
        return types_pb2.GenerationResult(data=data, content_type="image/png", provider="openai")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.close()


class GeminiCeiling(generation_service_pb2_grpc.GenerationServiceServicer):
    """GenerateImage only, through google-genai (on its aiohttp session, as the aigen adapter runs it)."""

    def __init__(self) -> None:
        options = types.HttpOptions(
            base_url=os.environ["GOOGLE_GEMINI_BASE_URL"],
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self.client = genai.Client(api_key="bench", http_options=options)
        self.config = types.GenerateContentConfig(
            response_modalities=["IMAGE"], image_config=types.ImageConfig(aspect_ratio="1:1")
        )

    async def GenerateImage(self, request, context):
        """generate_content with an IMAGE answer; the inline image's bytes."""
        response = await self.client.aio.models.generate_content(
            model="gemini-2.5-flash-image", contents=request.prompt, config=self.config
        )
        parts = response.candidates[0].content.parts if response.candidates else []
        data = next((part.inline_data.data for part in parts or [] if part.inline_data), b"")
        if not data:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no image")
        return types_pb2.GenerationResult(data=data, content_type="image/png", provider="gemini")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aio.aclose()


async def _serve(provider: str, port_file: Path | None) -> None:
    servicer = GeminiCeiling() if provider == "gemini" else OpenAICeiling()
    server = grpc.aio.server(options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
    generation_service_pb2_grpc.add_GenerationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    if port_file is not None:
        await asyncio.to_thread(port_file.write_text, str(port))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    await servicer.aclose()


def main() -> None:
    """Serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--provider", choices=("openai", "gemini"), default="openai")
    args = parser.parse_args()
    asyncio.run(_serve(args.provider, args.port_file))


if __name__ == "__main__":
    main()
