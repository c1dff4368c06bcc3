"""What every fake provider server shares: an aiohttp app on 127.0.0.1:0, a reply script, a record.

A test queues replies (`fake.script(handler)` or the vendor fake's shortcuts); each request takes
the next one, or the fake's default reply when the script is empty. Every request is recorded
with its headers, raw body, JSON body and multipart parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web
from PIL import Image


@dataclass
class FormPart:
    """One part of a multipart/form-data request."""

    name: str
    filename: str | None
    content_type: str
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode()


@dataclass
class Recorded:
    """A request the fake received."""

    method: str
    path: str
    match: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    parts: list[FormPart] = field(default_factory=list)

    def fields(self) -> dict[str, str]:
        """The multipart fields that are not files."""
        return {part.name: part.text for part in self.parts if part.filename is None}

    def files(self, *names: str) -> list[FormPart]:
        """The multipart file parts, optionally only those called one of `names`."""
        return [part for part in self.parts if part.filename is not None and (not names or part.name in names)]


Handler = Callable[[web.Request, Recorded], Awaitable[web.StreamResponse]]


def png_bytes(width: int = 8, height: int = 8, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A real, small PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def sized_png(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40), scale: int = 16) -> bytes:
    """A PNG with the shape of width x height, `scale` times smaller (at least 1 px a side)."""
    return png_bytes(max(1, width // scale), max(1, height // scale), color)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON reply."""
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json", headers=headers)


async def truncated_response(request: web.Request, status: int, body: bytes, content_type: str) -> web.StreamResponse:
    """Announce the whole body, send half of it, then drop the connection."""
    response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.close()
    return response


class FakeServer:
    """Base of the fake vendor servers. Use as `async with FakeX() as fake: fake.base_url`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Handler] = deque()
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._arrival: asyncio.Condition | None = None
        self.port = 0

    # Subclasses declare their routes and their default reply.
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    async def default_reply(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        raise NotImplementedError

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def reset(self) -> None:
        """Forget the recorded requests and any unused scripted replies."""
        self.requests.clear()
        self._script.clear()

    def script(self, *handlers: Handler) -> Self:
        """Queue replies for the next requests, in order."""
        self._script.extend(handlers)
        return self

    def slow(self, seconds: float, then: Handler | None = None) -> Self:
        """Queue a reply that waits `seconds` (cut short when the fake stops) before answering."""

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            await self.pause(seconds)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the client gave up; nobody reads this
            return await (then or self.default_reply)(request, recorded)

        return self.script(handler)

    def hang_up(self) -> Self:
        """Queue a reply that closes the connection without answering."""

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            assert request.transport is not None
            request.transport.close()
            return web.Response()  # never sent: the connection is gone

        return self.script(handler)

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the fake stops."""
        assert self._closing is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def __aenter__(self) -> Self:
        self._closing = asyncio.Event()
        self._arrival = asyncio.Condition()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._closing is not None and self._runner is not None
        self._closing.set()
        await self._runner.cleanup()

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Record the request, then answer with the next scripted reply."""
        recorded = await self._record(request)
        await self._arrived(recorded)
        handler = self._script.popleft() if self._script else self.default_reply
        return await handler(request, recorded)

    async def wait_for_requests(self, count: int = 1) -> None:
        """Wait until `count` requests have arrived in total."""
        assert self._arrival is not None
        async with self._arrival:
            await self._arrival.wait_for(lambda: len(self.requests) >= count)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, checking it as each request arrives."""
        assert self._arrival is not None
        async with self._arrival:
            await self._arrival.wait_for(predicate)

    async def _arrived(self, recorded: Recorded) -> None:
        assert self._arrival is not None
        async with self._arrival:
            self.requests.append(recorded)
            self._arrival.notify_all()

    @staticmethod
    async def _record(request: web.Request) -> Recorded:
        recorded = Recorded(
            method=request.method,
            path=request.path,
            match=dict(request.match_info),
            headers={key.lower(): value for key, value in request.headers.items()},
            body=b"",
        )
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                data = await part.read()  # type: ignore[union-attr]
                content_type = part.headers.get("Content-Type", "")
                recorded.parts.append(FormPart(part.name or "", part.filename, content_type, bytes(data)))
            return recorded
        recorded.body = await request.read()
        with contextlib.suppress(ValueError):
            recorded.json = json.loads(recorded.body) if recorded.body else None
        return recorded
