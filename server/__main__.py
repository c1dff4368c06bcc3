"""`python -m aigen.server`: run the gRPC server until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from aigen.server.app import start_server
from aigen.server.config import Settings


async def serve(settings: Settings) -> None:
    """Start, wait for a stop signal, shut down gracefully."""
    running = await start_server(settings)
    # The imported SDKs are hundreds of thousands of objects every full collection would scan
    # again (12 % of the event loop with 2,000 streams); young collections run less often too.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    configured = [name for name, p in running.registry.providers.items() if p.configured and name != "local"]
    print(
        f"aigen gRPC listening on {settings.host}:{running.port}; "
        f"providers: {', '.join(configured) or 'none configured (local renderer)'}",
        flush=True,
    )
    await stop.wait()
    await running.stop()


def main() -> None:
    """Console entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The HTTP clients of the provider SDKs log every request at INFO: a line per provider call
    # (8 % of the server's CPU with 200 concurrent streams). Their warnings still show.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    asyncio.run(serve(Settings()))


if __name__ == "__main__":
    main()
