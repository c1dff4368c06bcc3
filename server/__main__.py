"""`python -m aigen.server`: run the gRPC server until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from aigen.server.app import start_server
from aigen.server.config import Settings


async def serve(settings: Settings) -> None:
    """Start, wait for a stop signal, shut down gracefully."""
    running = await start_server(settings)
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
    asyncio.run(serve(Settings()))


if __name__ == "__main__":
    main()
