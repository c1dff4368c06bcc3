"""`python -m aigen.server.serve` as users run it: both children start, answer through Envoy,
and stop cleanly on SIGTERM; a crashed child takes the service down with a non-zero exit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from envoy_harness import free_port, stop_process

pytestmark = pytest.mark.timeout(90)


@dataclass
class Service:
    process: asyncio.subprocess.Process
    http_port: int
    grpc_port: int
    output: list[str]

    def children(self) -> list[int]:
        """Pids of the supervisor's direct children (from /proc)."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                pids.append(int(stat.parent.name))
        return pids

    async def read_until(self, marker: str, within: float = 60) -> None:
        async with asyncio.timeout(within):
            while not any(marker in line for line in self.output):
                line = await self.process.stdout.readline()
                if not line:
                    raise AssertionError("supervisor exited:\n" + "".join(self.output))
                self.output.append(line.decode())


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    http_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "AIGEN_HTTP_PORT": str(http_port),
        "AIGEN_GRPC_PORT": str(grpc_port),
        "AIGEN_DATA_DIR": str(tmp_path / "data"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aigen.server.serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    running = Service(process, http_port, grpc_port, [])
    try:
        await running.read_until("  providers  ")
        yield running
    finally:
        await stop_process(process, grace=30)


def is_envoy(pid: int) -> bool:
    return "envoy" in Path(f"/proc/{pid}/cmdline").read_text()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_serve_answers_through_envoy_and_stops_on_sigterm(service: Service) -> None:
    banner = "".join(service.output)
    assert f"http://localhost:{service.http_port}" in banner
    assert f"localhost:{service.grpc_port}" in banner
    assert "local renderer" in banner
    children = service.children()
    assert len(children) == 2

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.http_port}", timeout=60) as client:
        response = await client.post("/generate", json={"prompt": "Blue planet with rings"})
        assert response.status_code == 200, response.text
        image = await client.get(urlparse(response.json()["url"]).path)
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/png"
        assert image.content.startswith(b"\x89PNG")

    service.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(service.process.wait(), 30) == 0
    assert all(gone(pid) for pid in children)


async def test_serve_stops_everything_when_a_child_dies(service: Service) -> None:
    children = service.children()
    envoy = next(pid for pid in children if is_envoy(pid))
    os.kill(envoy, signal.SIGKILL)
    assert await asyncio.wait_for(service.process.wait(), 30) != 0
    rest = (await service.process.stdout.read()).decode()
    assert "envoy exited" in rest
    assert all(gone(pid) for pid in children)
