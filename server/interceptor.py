"""Errors in one place: domain exceptions become rich gRPC statuses, the rest INTERNAL.

The interceptor also enforces the request size cap itself, so an oversized message is
INVALID_ARGUMENT naming the limit instead of gRPC's misleading RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from aigen.server import errors, headers
from aigen.server.convert import attempt_proto
from aigen.server.ids import new_id
from aigen.v1 import types_pb2

log = logging.getLogger(__name__)
DOMAIN = "aigen"


def reason_name(reason: int) -> str:
    """ErrorReason value as ErrorInfo.reason: the name without its prefix."""
    return types_pb2.ErrorReason.Name(reason).removeprefix("ERROR_REASON_")


def to_status(error: errors.AigenError) -> status_pb2.Status:
    """google.rpc.Status with ErrorInfo, BadRequest, RetryInfo and the attempts."""
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    details: list = [error_details_pb2.ErrorInfo(reason=reason_name(error.reason), domain=DOMAIN)]
    if error.field_violations:
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in error.field_violations
        ]
        details.append(error_details_pb2.BadRequest(field_violations=violations))
    if error.retry_after:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    details.extend(attempt_proto(attempt) for attempt in error.attempts)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status


def internal_status(exc: BaseException) -> status_pb2.Status:
    """A generic INTERNAL status; the exception is logged under an id the caller can quote."""
    log_id = new_id("err")
    log.error("internal error %s", log_id, exc_info=exc)
    return to_status(errors.AigenError(f"internal error (log id {log_id})"))


def status_for(exc: BaseException) -> status_pb2.Status:
    """The status to report for any exception."""
    if isinstance(exc, errors.AigenError):
        return to_status(exc)
    return internal_status(exc)


class _TooLarge:
    """Stands in for a request that exceeded the size cap."""

    def __init__(self, size: int) -> None:
        self.size = size


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps exceptions to statuses for unary and server-streaming handlers."""

    def __init__(self, max_request_bytes: int, guard: Guard | None = None) -> None:
        self.max_request_bytes = max_request_bytes
        self.guard = guard

    async def intercept_service(self, continuation, handler_call_details):
        """Wrap the handler's behaviour and request deserializer."""
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        deserialize = self._capped(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), deserialize, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream), deserialize, handler.response_serializer
            )
        return handler

    async def _admit(self, method: str, request, context: grpc.aio.ServicerContext) -> None:
        """Size cap, then the guard (credentials, rate limit), before the handler runs."""
        headers.begin()
        if (too_large := self._too_large(request)) is not None:
            raise too_large
        if self.guard is not None:
            await self.guard.check(method, context)

    def _capped(self, deserializer: Callable | None) -> Callable:
        def deserialize(data: bytes):
            if len(data) > self.max_request_bytes:
                return _TooLarge(len(data))
            return deserializer(data) if deserializer else data

        return deserialize

    def _too_large(self, request) -> errors.AigenError | None:
        if isinstance(request, _TooLarge):
            return errors.AigenError(
                f"request is {request.size} bytes; the limit is {self.max_request_bytes}",
                code=grpc.StatusCode.INVALID_ARGUMENT,
                reason=types_pb2.ErrorReason.ERROR_REASON_PAYLOAD_TOO_LARGE,
                field_violations=[("request", f"larger than {self.max_request_bytes} bytes")],
            )
        return None

    def _unary(self, method: str, behavior: Callable) -> Callable:
        async def wrapper(request, context: grpc.aio.ServicerContext):
            try:
                await self._admit(method, request, context)
                response = await behavior(request, context)
                await _send_headers(context)
                return response
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                await _abort(context, exc)

        return wrapper

    def _stream(self, method: str, behavior: Callable) -> Callable:
        async def wrapper(request, context: grpc.aio.ServicerContext) -> AsyncIterator:
            started = False
            try:
                await self._admit(method, request, context)
                async for response in behavior(request, context):
                    if not started:
                        started = True
                        await _send_headers(context)
                    yield response
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                await _abort(context, exc)

        return wrapper


class Guard(Protocol):
    """Checks a call before its handler runs (raises AigenError to refuse it)."""

    async def check(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """Admit or refuse the call."""


async def _send_headers(context: grpc.aio.ServicerContext) -> None:
    pending = headers.take()
    if pending:
        await context.send_initial_metadata(pending)


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    """Abort with the rich status; collected headers travel in the trailers (HTTP headers for REST)."""
    status = rpc_status.to_status(status_for(exc))
    pending = headers.take()
    if pending:
        status = _Status(status.code, status.details, (*status.trailing_metadata, *pending))
    await context.abort_with_status(status)


@dataclass(frozen=True)
class _Status(grpc.Status):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple
