"""The real in-process gRPC server on an ephemeral port, with stubs over a real channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import store_modes
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from aigen.server.app import RunningServer, start_server
from aigen.server.config import ChainEntry, Settings
from aigen.server.providers.base import ImageProvider, ProviderRegistry
from aigen.v1 import (
    generation_service_pb2_grpc,
    image_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
    types_pb2,
)


def make_settings(data_dir: Path, **overrides) -> Settings:
    """Explicit test settings on the active storage mode; `fallback_chain` may be given as
    (provider, model) pairs.
    """
    chain = overrides.pop("fallback_chain", ())
    values = {
        **store_modes.overrides(data_dir, overrides),
        "grpc_port": 0,
        "data_dir": data_dir,
        "default_provider": "alpha",
        "default_model": "alpha-1",
        "fallback_chain": [ChainEntry(provider=p, model=m) for p, m in chain],
        "local_fallback": "never",
        "retry_attempts": 0,
        "retry_base_delay_s": 0.01,
        "retry_max_delay_s": 0.05,
        "cooldown_failures": 100,
        "grace_period_s": 0.5,
        "public_url": "http://images.test",
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Harness:
    """A running server and stubs bound to it."""

    server: RunningServer
    channel: grpc.aio.Channel
    sessions: session_service_pb2_grpc.SessionServiceStub
    generation: generation_service_pb2_grpc.GenerationServiceStub
    images: image_service_pb2_grpc.ImageServiceStub

    @property
    def settings(self) -> Settings:
        """The server's settings."""
        return self.server.settings


@contextlib.asynccontextmanager
async def running_server(
    data_dir: Path, providers: Sequence[ImageProvider] | None = (), **overrides
) -> AsyncIterator[Harness]:
    """Start the server with exactly `providers` registered; stop it on exit.

    With `providers=None` the server builds its real providers from the settings.
    """
    registry = None
    if providers is not None:
        registry = ProviderRegistry()
        for provider in providers:
            registry.add(provider)
    settings = make_settings(data_dir, **overrides)
    server = await start_server(settings, registry=registry)
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}",
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    try:
        yield Harness(
            server=server,
            channel=channel,
            sessions=session_service_pb2_grpc.SessionServiceStub(channel),
            generation=generation_service_pb2_grpc.GenerationServiceStub(channel),
            images=image_service_pb2_grpc.ImageServiceStub(channel),
        )
    finally:
        await channel.close()
        await server.stop(0.5)


@dataclass
class ErrorDetails:
    """The rich status of a failed call, unpacked."""

    code: grpc.StatusCode
    message: str
    status: status_pb2.Status | None
    reason: str = ""
    field_violations: tuple[tuple[str, str], ...] = ()
    retry_delay_s: float | None = None
    attempts: tuple[types_pb2.Attempt, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """Names of the BadRequest field violations."""
        return tuple(name for name, _ in self.field_violations)


def unpack_status(status: status_pb2.Status | None, code: grpc.StatusCode, message: str) -> ErrorDetails:
    """ErrorInfo, BadRequest, RetryInfo and Attempt details of a google.rpc.Status."""
    details = ErrorDetails(code=code, message=message, status=status)
    if status is None:
        return details
    violations: list[tuple[str, str]] = []
    attempts: list[types_pb2.Attempt] = []
    for packed in status.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            assert info.domain == "aigen"
            details.reason = info.reason
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
        elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            packed.Unpack(retry)
            details.retry_delay_s = retry.retry_delay.ToNanoseconds() / 1e9
        elif packed.Is(types_pb2.Attempt.DESCRIPTOR):
            attempt = types_pb2.Attempt()
            packed.Unpack(attempt)
            attempts.append(attempt)
    details.field_violations = tuple(violations)
    details.attempts = tuple(attempts)
    return details


def error_details(error: grpc.aio.AioRpcError) -> ErrorDetails:
    """Unpack the rich status carried by a failed call's trailers."""
    status = rpc_status.from_call(error)
    return unpack_status(status, error.code(), error.details() or "")


async def expect_error(awaitable) -> ErrorDetails:
    """Await a call that must fail; return its unpacked status."""
    try:
        await awaitable
    except grpc.aio.AioRpcError as error:
        return error_details(error)
    raise AssertionError("the call succeeded but an error was expected")


async def wait_ready(harness: Harness, session_id: str, within: float = 5.0) -> None:
    """Poll until the session is "ready" again."""
    async with asyncio.timeout(within):
        while True:
            session = await harness.sessions.GetSession(session_service_pb2.GetSessionRequest(session_id=session_id))
            if session.status == "ready":
                return
            await asyncio.sleep(0.02)
