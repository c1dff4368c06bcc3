"""GenerationService: unary and streaming generation, history, and the model catalogue."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import grpc

from aigen.server import access, errors, routes
from aigen.server.convert import turn_proto
from aigen.server.generation import Generations
from aigen.server.image_sends import ImageSends, SendSlot
from aigen.server.interceptor import status_for
from aigen.server.models import ModelResolver
from aigen.server.progress import ProgressReporter
from aigen.v1 import generation_service_pb2 as pb2
from aigen.v1 import generation_service_pb2_grpc as pb2_grpc
from aigen.v1 import types_pb2

Phase = types_pb2.GenerationEvent.Phase


_HEARTBEATS = (Phase.PHASE_RUNNING, Phase.PHASE_PERSISTING)


def _supersedes(event: types_pb2.GenerationEvent | None, waiting: types_pb2.GenerationEvent | None) -> bool:
    """Both are progress of the same phase without a preview: `event` says all `waiting` says, later."""
    return (
        event is not None
        and waiting is not None
        and event.phase == waiting.phase
        and event.phase in _HEARTBEATS
        and not event.HasField("preview")
        and not waiting.HasField("preview")
    )


class _Outbox:
    """A stream's events waiting to be sent; `None` ends the stream.

    A progress event still waiting when a newer one comes is replaced by it: a stream whose
    sends are slow (a busy server, a slow reader) gets its latest progress, not a backlog.
    """

    def __init__(self) -> None:
        self._events: deque[types_pb2.GenerationEvent | None] = deque()
        self._waiter: asyncio.Future[None] | None = None  # the reader's, while the box is empty

    def put(self, event: types_pb2.GenerationEvent | None) -> None:
        """Queue `event`, in place of a waiting progress event when both are progress."""
        if self._events and _supersedes(event, self._events[-1]):
            self._events[-1] = event
        else:
            self._events.append(event)
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> types_pb2.GenerationEvent | None:
        """The oldest waiting event."""
        while not self._events:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._events.popleft()


class GenerationServicer(pb2_grpc.GenerationServiceServicer):
    """Every generation RPC goes through the same Generations use cases."""

    def __init__(self, generations: Generations, resolver: ModelResolver, image_sends: ImageSends) -> None:
        self.generations = generations
        self.resolver = resolver
        self.image_sends = image_sends

    async def Generate(self, request, context):
        """Generate in a session."""
        return await self._unary("generate", request, context)

    async def Iterate(self, request, context):
        """Edit the session's current image."""
        return await self._unary("iterate", request, context)

    async def GenerateImage(self, request, context):
        """Generate without a session; through the APP-API route, the answer has the URL, not the bytes."""
        if routes.through_app_api(context):
            request.omit_image_data = True
        return await self._unary("image", request, context)

    def StreamGenerate(self, request, context):
        """Generate with progress events."""
        return self._stream("generate", request, context)

    def StreamIterate(self, request, context):
        """Iterate with progress events."""
        return self._stream("iterate", request, context)

    def StreamGenerateImage(self, request, context):
        """Sessionless generation with progress events."""
        return self._stream("image", request, context)

    async def _unary(self, kind: str, request, context: grpc.aio.ServicerContext) -> types_pb2.GenerationResult:
        prepared = await self.generations.prepare(kind, request, context.time_remaining())
        return await self.generations.execute(prepared, ProgressReporter(None))

    async def _stream(self, kind: str, request, context: grpc.aio.ServicerContext) -> AsyncIterator:
        prepared = await self.generations.prepare(kind, request, context.time_remaining())
        outbox = _Outbox()
        reporter = ProgressReporter(outbox.put)
        slot = self.image_sends.slot()
        task = asyncio.create_task(self._run(prepared, reporter, slot))
        task.add_done_callback(lambda _: outbox.put(None))
        self.generations.observer.stream_opened()
        try:
            reporter.event(Phase.PHASE_QUEUED, "accepted")
            while (event := await outbox.get()) is not None:
                yield event
        finally:
            reporter.close()
            self.generations.observer.stream_closed()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            slot.release()  # the final event is sent, or the caller has gone

    async def _run(self, prepared, reporter: ProgressReporter, slot: SendSlot) -> None:
        """Execute, wait for a turn to send the image, then emit the in-band terminal event."""
        try:
            result = await slot.take(await self.generations.execute(prepared, reporter))
        except errors.AigenError as exc:
            reporter.event(Phase.PHASE_FAILED, exc.message, error=status_for(exc))
            return
        except Exception as exc:  # reported in-band; details are logged, never sent
            reporter.event(Phase.PHASE_FAILED, "internal error", error=status_for(exc))
            return
        reporter.event(Phase.PHASE_COMPLETED, "completed", result=result, percent=100.0)

    async def GetHistory(self, request: pb2.GetHistoryRequest, context) -> pb2.GetHistoryResponse:
        """Every turn of a session, oldest first."""
        store = self.generations.store
        session = await store.get_session(request.session_id, access.current().scope)
        turns = await store.list_turns(session.session_id)
        images = {}
        for turn in turns:
            if turn.image_id:
                images[turn.image_id] = await store.get_image(turn.image_id)
        base_url = self.generations.base_url
        return pb2.GetHistoryResponse(
            session_id=session.session_id, turns=[turn_proto(t, images.get(t.image_id), base_url) for t in turns]
        )

    async def ListProviders(self, request, context) -> pb2.ListProvidersResponse:
        """Providers and whether each is configured."""
        return self.resolver.list_providers()

    async def ListModels(self, request: pb2.ListModelsRequest, context) -> pb2.ListModelsResponse:
        """Models with capabilities, latency and price."""
        principal = access.current()
        if request.project and principal.scope not in (None, request.project):
            raise errors.project_not_found(request.project)
        return self.resolver.list_models(request.provider, principal.project.allowed_providers)
