"""Client: a blocking wrapper running an AsyncClient on a private event-loop thread."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from aigen.client._async_client import AsyncClient
from aigen.client._stream import GenerationStream
from aigen.client._types import GenerationResult, ProgressEvent

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="aigen-client", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait; an interrupt cancels it."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop and join the thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class GenerationEvents:
    """Blocking iterator of ProgressEvent for one streaming call (see GenerationStream)."""

    def __init__(self, runner: _LoopThread, stream: GenerationStream) -> None:
        self._runner = runner
        self._stream = stream

    @property
    def result(self) -> GenerationResult | None:
        """The result, once the "completed" event was seen."""
        return self._stream.result

    def __iter__(self) -> Iterator[ProgressEvent]:
        events = self._stream.__aiter__()
        try:
            while True:
                try:
                    event = self._runner.run(events.__anext__())
                except StopAsyncIteration:
                    return
                yield event
        finally:
            self._runner.run(events.aclose())

    def cancel(self) -> None:
        """Cancel the generation on the server."""
        self._runner.loop.call_soon_threadsafe(self._stream.cancel)

    def wait(self) -> GenerationResult:
        """Consume the remaining events and return the result."""
        for _ in self:
            pass
        assert self.result is not None
        return self.result


def _blocking(method: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """The blocking twin of an AsyncClient coroutine method."""

    @functools.wraps(method)
    def call(self: Client, *args: Any, **kwargs: Any) -> T:
        return self._runner.run(method(self._async, *args, **kwargs))

    return call


def _streaming(method: Callable[..., GenerationStream]) -> Callable[..., GenerationEvents]:
    """The blocking twin of an AsyncClient streaming method."""

    @functools.wraps(method)
    def call(self: Client, *args: Any, **kwargs: Any) -> GenerationEvents:
        async def start() -> GenerationStream:
            return method(self._async, *args, **kwargs)

        return GenerationEvents(self._runner, self._runner.run(start()))

    return call


class Client:
    """Blocking client of the aigen gateway; same methods and arguments as AsyncClient.

    Streaming methods return GenerationEvents, a plain iterator of ProgressEvent.
    Use as `with Client() as client: ...`, or call `close()`.
    """

    def __init__(self, address: str | None = None, **options: Any) -> None:
        self._runner = _LoopThread()

        async def connect() -> AsyncClient:
            return AsyncClient(address, **options)

        self._async = self._runner.run(connect())
        self.address = self._async.address

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and stop the loop thread."""
        if self._runner.loop.is_running():
            self._runner.run(self._async.close())
            self._runner.stop()

    create_session = _blocking(AsyncClient.create_session)
    get_session = _blocking(AsyncClient.get_session)
    list_sessions = _blocking(AsyncClient.list_sessions)
    delete_session = _blocking(AsyncClient.delete_session)
    generate = _blocking(AsyncClient.generate)
    iterate = _blocking(AsyncClient.iterate)
    generate_image = _blocking(AsyncClient.generate_image)
    stream_generate = _streaming(AsyncClient.stream_generate)
    stream_iterate = _streaming(AsyncClient.stream_iterate)
    stream_generate_image = _streaming(AsyncClient.stream_generate_image)
    history = _blocking(AsyncClient.history)
    list_providers = _blocking(AsyncClient.list_providers)
    list_models = _blocking(AsyncClient.list_models)
    separate_layers = _blocking(AsyncClient.separate_layers)
    lock_layer = _blocking(AsyncClient.lock_layer)
    unlock_layer = _blocking(AsyncClient.unlock_layer)
    list_layers = _blocking(AsyncClient.list_layers)
    export_layers = _blocking(AsyncClient.export_layers)
    get_image = _blocking(AsyncClient.get_image)
    save_image = _blocking(AsyncClient.save_image)
