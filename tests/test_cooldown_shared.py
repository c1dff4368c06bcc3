"""Cooldowns shared by every replica on one PostgreSQL database.

Two in-process replicas (each with its own scripted providers, so calls are counted apart)
use one real database: a provider/model that keeps failing on one replica is skipped by the
other as well, until the cooldown runs out or a success clears it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import grpc
import pytest
from providers import Fail, ScriptedProvider, Succeed
from server_harness import make_settings

from aigen.server.app import RunningServer, start_server
from aigen.server.errors import ProviderUnavailable
from aigen.server.health_shared import SharedModelHealth
from aigen.server.providers.base import ProviderRegistry
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import generation_service_pb2_grpc, types_pb2

pytestmark = pytest.mark.timeout(90)
Outcome = types_pb2.AttemptOutcome
PAIR = ("alpha", "alpha-1")


async def eventually(check: Callable[[], bool], within: float = 2.0) -> float:
    """Poll `check` until true; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            raise AssertionError(f"not true within {within} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def rows(dsn: str) -> dict[tuple[str, str], float]:
    """Every cooldown row with its seconds left by the database clock."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch(
            "SELECT provider, model, until_epoch - extract(epoch FROM clock_timestamp())::float8 AS left_s"
            " FROM cooldowns"
        )
    finally:
        await conn.close()
    return {(row["provider"], row["model"]): row["left_s"] for row in found}


# The table round trip --------------------------------------------------------------------------
async def test_shared_model_health_round_trip(dsn: str) -> None:
    first = SharedModelHealth(dsn, cooldown_failures=2, cooldown_s=60, refresh_s=0.1)
    second = SharedModelHealth(dsn, cooldown_failures=2, cooldown_s=60, refresh_s=0.1)
    await first.open()
    await second.open()
    try:
        first.record_failure(PAIR, 1.0)
        await asyncio.sleep(0.3)
        assert await rows(dsn) == {}  # one failure is no cooldown
        assert not second.in_cooldown(PAIR)

        first.record_failure(PAIR, 1.0)
        assert first.in_cooldown(PAIR)
        await eventually(lambda: second.in_cooldown(PAIR))
        assert second.cooling_down() == [PAIR]
        assert 55 < (await rows(dsn))[PAIR] <= 60
        # Learnt from the table: the profile's latency is still the estimate.
        assert second.expected_latency(PAIR, 2.5) == 2.5

        # A shorter cooldown found elsewhere keeps the later end.
        shorter = SharedModelHealth(dsn, cooldown_failures=1, cooldown_s=5, refresh_s=0.1)
        await shorter.open()
        shorter.record_failure(PAIR, 1.0)
        await shorter.close()  # writes what is queued first
        assert (await rows(dsn))[PAIR] > 50

        # Rows written by another replica, by the database clock: one running, one over.
        conn = await asyncpg.connect(dsn)
        try:
            now = await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
            await conn.executemany(
                "INSERT INTO cooldowns (provider, model, until_epoch) VALUES ($1, $2, $3)",
                [("gamma", "gamma-1", now + 30), ("delta", "delta-1", now - 5)],
            )
        finally:
            await conn.close()
        await eventually(lambda: first.in_cooldown(("gamma", "gamma-1")))
        await asyncio.sleep(0.3)
        assert sorted(first.cooling_down()) == [PAIR, ("gamma", "gamma-1")]
        remaining = first._states[("gamma", "gamma-1")].cooldown_until - first.clock()
        assert 25 < remaining <= 30  # moved onto the local monotonic clock
        assert not second.in_cooldown(("delta", "delta-1"))

        # A success on either replica clears the pair for both.
        second.record_success(PAIR, 0.5, 1.0)
        assert not second.in_cooldown(PAIR)
        await eventually(lambda: not first.in_cooldown(PAIR))
        assert PAIR not in await rows(dsn)
        first.record_failure(PAIR, 1.0)  # the failures were reset with the cooldown
        await asyncio.sleep(0.3)
        assert not first.in_cooldown(PAIR) and not second.in_cooldown(PAIR)
    finally:
        await first.close()
        await second.close()


# Two replicas ---------------------------------------------------------------------------------
async def start_replica(
    dsn: str, data_dir: Path, cooldown_s: float
) -> tuple[RunningServer, ScriptedProvider, ScriptedProvider]:
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderUnavailable("alpha is down"))])
    beta = ScriptedProvider("beta")
    registry = ProviderRegistry()
    registry.add(alpha)
    registry.add(beta)
    settings = make_settings(
        data_dir,
        store="postgres",
        database_url=dsn,
        fallback_chain=[("beta", "beta-1")],
        retry_attempts=1,
        cooldown_failures=2,
        cooldown_s=cooldown_s,
    )
    return await start_server(settings, registry), alpha, beta


async def generate(replica: RunningServer) -> gen_pb2.GenerateImageResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}") as channel:
        stub = generation_service_pb2_grpc.GenerationServiceStub(channel)
        return await stub.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x", omit_image_data=True), timeout=20)


async def models_in_cooldown(replica: RunningServer) -> dict[str, list[str]]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}") as channel:
        stub = generation_service_pb2_grpc.GenerationServiceStub(channel)
        reply = await stub.ListProviders(gen_pb2.ListProvidersRequest(), timeout=10)
    return {provider.name: list(provider.models_in_cooldown) for provider in reply.providers}


def summary(reply: gen_pb2.GenerateImageResponse) -> list[tuple[str, int]]:
    return [(attempt.provider, attempt.outcome) for attempt in reply.attempts]


async def test_a_cooldown_found_by_one_replica_is_kept_by_the_other(dsn: str, tmp_path: Path) -> None:
    cooldown_s = 6.0  # room for a generation, three channels and a refresh on a loaded machine
    a, alpha_a, _ = await start_replica(dsn, tmp_path / "a", cooldown_s)
    try:
        b, alpha_b, beta_b = await start_replica(dsn, tmp_path / "b", cooldown_s)
        try:
            assert isinstance(a.model_health, SharedModelHealth)
            first = await generate(a)
            started = time.monotonic()
            assert first.provider == "beta"
            assert len(alpha_a.calls) == 2  # two failures: the cooldown starts on replica A
            assert (await models_in_cooldown(a))["alpha"] == ["alpha-1"]

            await eventually(lambda: b.model_health.in_cooldown(PAIR), within=2.0)
            assert (await models_in_cooldown(b)) == {"alpha": ["alpha-1"], "beta": []}
            on_b = await generate(b)
            assert summary(on_b) == [
                ("alpha", Outcome.ATTEMPT_OUTCOME_SKIPPED_COOLDOWN),
                ("beta", Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
            ]
            assert on_b.attempts[0].reason == types_pb2.ErrorReason.ERROR_REASON_PROVIDER_COOLDOWN
            assert alpha_b.calls == [] and len(beta_b.calls) == 1
            assert time.monotonic() - started < cooldown_s  # still within the cooldown

            # Over: both replicas try alpha again, and its success clears the pair everywhere.
            alpha_a.script[:] = [Succeed()]
            alpha_b.script[:] = [Succeed()]
            await asyncio.sleep(max(0.0, started + cooldown_s + 0.2 - time.monotonic()))
            assert not a.model_health.in_cooldown(PAIR) and not b.model_health.in_cooldown(PAIR)
            on_b = await generate(b)
            assert on_b.provider == "alpha" and summary(on_b) == [("alpha", Outcome.ATTEMPT_OUTCOME_SUCCEEDED)]
            assert len(alpha_b.calls) == 1
            on_a = await generate(a)
            assert on_a.provider == "alpha" and len(alpha_a.calls) == 3
            for _ in range(40):  # the success's delete is written in the background
                if not await rows(dsn):
                    break
                await asyncio.sleep(0.05)
            assert await rows(dsn) == {}
            assert (await models_in_cooldown(a))["alpha"] == []
            assert (await models_in_cooldown(b))["alpha"] == []
        finally:
            await b.stop(0)
    finally:
        await a.stop(0)
