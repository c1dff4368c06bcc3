"""The ceiling: a minimal grpc.aio GenerateImage that makes the same SDK call and returns the bytes.

No validation, no store, no engine, no interceptor: what any Python gRPC gateway in front of the
OpenAI SDK must at least spend. `python -m bench.ceiling --port-file PATH` with OPENAI_BASE_URL set.
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

from aigen.v1 import generation_service_pb2_grpc, types_pb2


class CeilingServicer(generation_service_pb2_grpc.GenerationServiceServicer):
    """GenerateImage only."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def GenerateImage(self, request, context):
        """images.generate streamed, as the aigen adapter calls it; the completed event's bytes."""
        stream = await self.client.images.generate(
            model="gpt-image-1.5",
            prompt=request.prompt,
            size="1024x1024",
            quality="auto",
            stream=True,
            partial_images=2,
        )
        data = b""
        try:
            async for event in stream:  # read to the end, so the connection goes back to the pool
                if event.type.endswith(".completed"):
                    data = pybase64.b64decode(event.b64_json, validate=True)
        finally:
            await stream.close()
        if not data:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no image")
        return types_pb2.GenerationResult(data=data, content_type="image/png", provider="openai")


async def _serve(port_file: Path | None) -> None:
    client = openai.AsyncOpenAI(api_key="bench", base_url=os.environ["OPENAI_BASE_URL"], max_retries=0, timeout=120)
    server = grpc.aio.server(options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
    generation_service_pb2_grpc.add_GenerationServiceServicer_to_server(CeilingServicer(client), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    if port_file is not None:
        await asyncio.to_thread(port_file.write_text, str(port))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    await client.close()


def main() -> None:
    """Serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", type=Path)
    asyncio.run(_serve(parser.parse_args().port_file))


if __name__ == "__main__":
    main()
