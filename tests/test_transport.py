"""The gRPC transport under a burst: calls that wait for a busy event loop are not dropped."""

from __future__ import annotations

import asyncio
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_harness import running_server

BURST = 1600  # past gRPC's default of 1,000 waiting calls, where it starts cancelling new ones


def _outcomes(futures: list[grpc.Future]) -> dict[grpc.StatusCode, int]:
    counts: dict[grpc.StatusCode, int] = {}
    for future in futures:
        code = future.code()
        counts[code] = counts.get(code, 0) + 1
    return counts


def _hold_the_event_loop(seconds: float) -> None:
    """Block the running event loop, as a busy one would be."""
    time.sleep(seconds)


async def test_calls_arriving_while_the_event_loop_is_busy_all_run(tmp_path):
    async with running_server(tmp_path, []) as h:
        with grpc.insecure_channel(f"127.0.0.1:{h.server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            await asyncio.to_thread(health.Check, health_pb2.HealthCheckRequest(), timeout=10)  # connected first
            futures = [health.Check.future(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(BURST)]
            _hold_the_event_loop(2.0)  # every call arrives meanwhile and waits in gRPC, unaccepted
            outcomes = await asyncio.to_thread(_outcomes, futures)

    assert outcomes == {grpc.StatusCode.OK: BURST}
