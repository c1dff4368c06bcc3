"""Request id, request log line, RPC metrics and RPC span for every unary and server-streaming RPC.

Registered before the error interceptor, so it wraps it: it sees the final status code the
error interceptor aborts with. The handler below receives a thin proxy of the servicer
context that notes that code and adds `x-request-id` to the initial metadata (a header for
REST callers) or, for an error without messages, to the trailing metadata.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from aigen.server.observability import context, logs, tracing
from aigen.server.observability.context import REQUEST_ID_HEADER, RequestContext
from aigen.server.observability.telemetry import Telemetry

# Envoy health-checks the server every few seconds: counted, not logged.
QUIET_PREFIXES = ("/grpc.health.v1.Health/",)


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    """A grpc.Status with extra trailing metadata."""


class ObservedContext:
    """Delegates to the real servicer context; notes the status and carries the request id."""

    def __init__(self, inner: grpc.aio.ServicerContext, request: RequestContext) -> None:
        self._inner = inner
        self._request = request
        self.initial_sent = False  # the initial metadata (with x-request-id) has gone out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _id_pair(self) -> tuple[str, str]:
        return (REQUEST_ID_HEADER, self._request.request_id)

    async def send_initial_metadata(self, metadata) -> None:
        """The handler's initial metadata plus x-request-id."""
        self.initial_sent = True
        await self._inner.send_initial_metadata((*tuple(metadata), self._id_pair()))

    def _note(self, code: grpc.StatusCode, details: str) -> None:
        self._request.code = code
        self._request.message = details or ""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        """Abort with x-request-id in the trailing metadata."""
        self._note(code, details)
        await self._inner.abort(code, details, (*tuple(trailing_metadata or ()), self._id_pair()))

    async def abort_with_status(self, status: grpc.Status) -> None:
        """Abort with the rich status and x-request-id."""
        self._note(status.code, status.details)
        trailing = (*tuple(status.trailing_metadata or ()), self._id_pair())
        await self._inner.abort_with_status(_Status(status.code, status.details, trailing))

    def set_code(self, code: grpc.StatusCode) -> None:
        """Note and set the final code."""
        self._request.code = code
        self._inner.set_code(code)

    def set_details(self, details: str) -> None:
        """Note and set the status message."""
        self._request.message = details
        self._inner.set_details(details)


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Wraps unary and server-streaming handlers (bidirectional reflection passes through)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    async def intercept_service(self, continuation, handler_call_details):
        """Wrap the handler found by the inner interceptors."""
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        return handler

    def _unary(self, method: str, behavior: Callable) -> Callable:
        async def wrapper(request, servicer_context: grpc.aio.ServicerContext):
            call, observed, token = self._begin(method, request, servicer_context)
            try:
                response = await behavior(request, observed)
                self._describe_response(call, response)
                if not observed.initial_sent:  # x-request-id, unless the handler sent its own
                    await observed.send_initial_metadata(())
                return response
            except BaseException as exc:
                _note_exception(call, exc, servicer_context)
                raise
            finally:
                self._finish(method, call, token)

        return wrapper

    def _stream(self, method: str, behavior: Callable) -> Callable:
        async def wrapper(request, servicer_context: grpc.aio.ServicerContext) -> AsyncIterator:
            call, observed, token = self._begin(method, request, servicer_context)
            try:
                async for response in behavior(request, observed):
                    if not observed.initial_sent:
                        await observed.send_initial_metadata(())
                    yield response
            except BaseException as exc:
                _note_exception(call, exc, servicer_context)
                raise
            finally:
                self._finish(method, call, token)

        return wrapper

    def _begin(self, method: str, request, servicer_context: grpc.aio.ServicerContext):
        metadata = {key: value for key, value in servicer_context.invocation_metadata() or () if isinstance(value, str)}
        call = RequestContext(request_id=context.request_id_from(metadata), rpc=method.lstrip("/"))
        call.span = tracing.start_rpc_span(method, metadata)
        call.project = _text_field(request, "project")
        call.session_id = _text_field(request, "session_id")
        if self.telemetry.log_prompts:
            call.prompt = _text_field(request, "prompt") or _text_field(request, "instructions")
        token = context.activate(call)
        return call, ObservedContext(servicer_context, call), token

    @staticmethod
    def _describe_response(call: RequestContext, response) -> None:
        call.session_id = call.session_id or _text_field(response, "session_id")
        call.project = call.project or _text_field(response, "project")

    def _finish(self, method: str, call: RequestContext, token) -> None:
        try:
            self.telemetry.metrics.record_rpc(call.rpc, call.code.name, call.duration_s())
            span_context = call.span.get_span_context()
            trace_id = f"{span_context.trace_id:032x}" if span_context.is_valid else ""
            attributes = {"aigen.request_id": call.request_id, "aigen.project": call.project}
            attributes["aigen.session_id"] = call.session_id
            tracing.end_rpc_span(call.span, call.code.name, call.code.value[0], attributes)
            if not method.startswith(QUIET_PREFIXES):
                logs.log_request(self.telemetry.request_log, logs.request_fields(call, trace_id))
        finally:
            context.deactivate(token)


def _text_field(message, name: str) -> str:
    value = getattr(message, name, "")
    return value if isinstance(value, str) else ""


def _note_exception(call: RequestContext, exc: BaseException, servicer_context: grpc.aio.ServicerContext) -> None:
    """The code the caller sees for an exception that left the handler."""
    if isinstance(exc, grpc.aio.AbortError) or call.code != grpc.StatusCode.OK:
        return  # the code was noted when the handler aborted
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        remaining = servicer_context.time_remaining()
        expired = remaining is not None and remaining <= 0
        call.code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
        return
    call.code = grpc.StatusCode.UNKNOWN
    call.message = type(exc).__name__
