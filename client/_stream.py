"""A streaming generation: typed progress events, the final result, cancellation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from aigen.client._errors import AigenError, from_call, from_status
from aigen.client._types import GenerationResult, ProgressEvent
from aigen.v1 import types_pb2

Phase = types_pb2.GenerationEvent.Phase


class GenerationStream:
    """Async iterator of ProgressEvent for one streaming call.

    Iteration ends after the "completed" event (then `result` is set). A "failed" event raises
    the matching AigenError, whose `event` is that event. Leaving the iteration early, or
    `cancel()`, cancels the generation on the server.
    """

    def __init__(self, call: grpc.aio.UnaryStreamCall) -> None:
        self._call = call
        self.result: GenerationResult | None = None

    def __aiter__(self) -> AsyncIterator[ProgressEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ProgressEvent]:
        try:
            async for message in self._call:
                event = ProgressEvent.from_proto(message)
                if message.phase == Phase.PHASE_FAILED:
                    raise _failure(event, message)
                yield event
                if message.phase == Phase.PHASE_COMPLETED:
                    self.result = event.result
                    return
        except grpc.aio.AioRpcError as error:
            raise from_call(error) from None
        finally:
            self.cancel()
        raise AigenError("the stream ended without a terminal event", code=grpc.StatusCode.UNAVAILABLE)

    def cancel(self) -> bool:
        """Cancel the call (and so the generation) unless it already ended."""
        return False if self._call.done() else self._call.cancel()

    async def wait(self) -> GenerationResult:
        """Consume the remaining events and return the result."""
        async for _ in self:
            pass
        assert self.result is not None
        return self.result


def _failure(event: ProgressEvent, message: types_pb2.GenerationEvent) -> AigenError:
    error = from_status(message.error) if message.HasField("error") else AigenError(message.message)
    error.event = event
    return error
