"""A fake OpenAI Images API: `/v1/images/generations` (JSON) and `/v1/images/edits` (multipart).

    async with FakeOpenAI() as fake:
        client = AsyncOpenAI(api_key="test-key", base_url=fake.base_url)
        fake.fail(429, retry_after="2")   # the next request gets a 429, later ones an image

With `stream=true` the fake answers in server-sent events, as the real API does: one
`*.partial_image` event per requested partial image, then `*.completed` (generations use the
`image_generation.` prefix, edits `image_edit.`). Replies: `succeed` (optionally in small
network chunks, with CRLF or CR line ends, a `[DONE]` event, or a stall mid-stream), `fail`
(error JSON with code and Retry-After), `fail_midstream` (an error event after partial
images), `malformed`, `truncate`, `slow`.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

from .base import FakeServer, Handler, Recorded, json_response, sized_png, truncated_response

ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 429: "requests", 500: "server_error"}
PARTIAL_COLORS = ((40, 40, 200), (40, 200, 40), (200, 200, 40))
FINAL_COLOR = (200, 40, 40)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def params(recorded: Recorded) -> dict[str, Any]:
    """The request's parameters, from the JSON body or the multipart text fields."""
    return dict(recorded.json) if isinstance(recorded.json, dict) else recorded.fields()


def _wants_stream(recorded: Recorded) -> bool:
    return str(params(recorded).get("stream", "")).lower() == "true"


def _size(recorded: Recorded) -> tuple[int, int]:
    size = str(params(recorded).get("size") or "1024x1024")
    if size == "auto":
        return 1024, 1024
    width, height = size.split("x")
    return int(width), int(height)


def _event_prefix(recorded: Recorded) -> str:
    return "image_edit" if recorded.path.endswith("/edits") else "image_generation"


def _sse(event: str, payload: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()


def error_body(status: int, message: str, code: str | None, kind: str | None) -> dict[str, Any]:
    """The JSON body of an OpenAI API error."""
    return {
        "error": {"message": message, "type": kind or ERROR_TYPES.get(status, "api_error"), "param": None, "code": code}
    }


@dataclass(frozen=True)
class Wire:
    """How a stream goes out: in `chunk_size` pieces, `line_end` between lines, `[DONE]` after
    the events (`done`), and a pause of `stall_s` after the first event.
    """

    chunk_size: int = 0
    line_end: str = "\n"
    done: bool = False
    stall_s: float = 0.0

    async def send(self, request: web.Request, events: list[bytes], fake: FakeServer) -> web.StreamResponse:
        """Write `events` (LF-separated SSE blocks) as this wire says."""
        if self.done:
            events = [*events, b"data: [DONE]\n\n"]
        events = [event.replace(b"\n", self.line_end.encode()) for event in events]
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, event in enumerate(events):
            size = self.chunk_size or len(event)
            for start in range(0, len(event), size):
                await response.write(event[start : start + size])
            if index == 0 and self.stall_s:
                await fake.pause(self.stall_s)
        await response.write_eof()
        return response


class FakeOpenAI(FakeServer):
    """A scriptable OpenAI Images API server."""

    def __init__(self) -> None:
        super().__init__()
        self._ports: list[int] = []  # the client port of every request, in order

    def reset(self) -> None:
        super().reset()
        self._ports.clear()

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL should be."""
        return f"{self.origin}/v1"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/images/generations", self._answer), web.post("/v1/images/edits", self._answer)]

    def client_ports(self) -> set[int]:
        """The client-side ports of the connections the recorded requests came on."""
        return set(self._ports)

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        self._ports.append(peer[1] if peer else 0)
        return await self.dispatch(request)

    async def default_reply(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        return await self.image_reply()(request, recorded)

    # Reply factories.
    def image_reply(
        self,
        *,
        partials: int | None = None,
        revised_prompt: str | None = None,
        output_format: str = "png",
        complete: bool = True,
        wire: Wire | None = None,
    ) -> Handler:
        """An image: streamed with `partials` partial images (default: as many as asked), or as JSON.

        `complete=False` ends the stream after the partial images, without the final event;
        `wire` sets how the stream is written.
        """

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            width, height = _size(recorded)
            final = sized_png(width, height, FINAL_COLOR)
            common = self._common(recorded, output_format)
            if not _wants_stream(recorded):
                item: dict[str, Any] = {"b64_json": _b64(final)}
                if revised_prompt is not None:
                    item["revised_prompt"] = revised_prompt
                return json_response(200, {"created": int(time.time()), "data": [item], **common})
            count = int(params(recorded).get("partial_images") or 0) if partials is None else partials
            events = [self._partial(recorded, index, common) for index in range(count)]
            completed = {"type": f"{_event_prefix(recorded)}.completed", "b64_json": _b64(final), **common}
            completed["usage"] = _usage()
            if revised_prompt is not None:
                completed["revised_prompt"] = revised_prompt
            if complete:
                events.append(_sse(completed["type"], completed))
            return await (wire or Wire()).send(request, events, self)

        return handler

    def error_reply(
        self,
        status: int,
        message: str = "",
        *,
        code: str | None = None,
        kind: str | None = None,
        retry_after: str | None = None,
    ) -> Handler:
        """An API error; `retry_after` sets the Retry-After header."""
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        body = error_body(status, message or f"fake error {status}", code, kind)

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            return json_response(status, body, headers)

        return handler

    def midstream_error_reply(
        self, *, code: str = "moderation_blocked", message: str = "", partials: int = 1
    ) -> Handler:
        """A stream that sends partial images, then an `error` event instead of the image.

        Asked without streaming, the API answers the same refusal as a 400 JSON error.
        """

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            error = error_body(400, message or "Your request was rejected by the safety system.", code, None)
            if not _wants_stream(recorded):
                return json_response(400, error, None)
            common = self._common(recorded, "png")
            events = [self._partial(recorded, index, common) for index in range(partials)]
            events.append(_sse("error", {"type": "error", **error}))
            return await self._stream(request, events)

        return handler

    # Shortcuts that queue one reply.
    def succeed(self, **options: Any) -> Self:
        return self.script(self.image_reply(**options))

    def fail(self, status: int, message: str = "", **options: Any) -> Self:
        return self.script(self.error_reply(status, message, **options))

    def fail_midstream(self, **options: Any) -> Self:
        return self.script(self.midstream_error_reply(**options))

    def malformed(self) -> Self:
        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            if _wants_stream(recorded):
                event = f"event: {_event_prefix(recorded)}.completed\ndata: {{not json\n\n".encode()
                return await self._stream(request, [event])
            return web.Response(status=200, text='{"data": [{"b64_json": ', content_type="application/json")

        return self.script(handler)

    def truncate(self) -> Self:
        """Drop the connection halfway through the body (after one partial image when streaming)."""

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            if _wants_stream(recorded):
                common = self._common(recorded, "png")
                body = self._partial(recorded, 0, common) + b"event: image_generation.completed\ndata: {"
                return await truncated_response(request, 200, body + b" " * len(body), "text/event-stream")
            body = json.dumps({"created": 1, "data": [{"b64_json": _b64(sized_png(1024, 1024))}]}).encode()
            return await truncated_response(request, 200, body, "application/json")

        return self.script(handler)

    # Wire details.
    def _partial(self, recorded: Recorded, index: int, common: dict[str, Any]) -> bytes:
        width, height = _size(recorded)
        color = PARTIAL_COLORS[index % len(PARTIAL_COLORS)]
        event_type = f"{_event_prefix(recorded)}.partial_image"
        payload = {"type": event_type, "b64_json": _b64(sized_png(width, height, color)), "partial_image_index": index}
        return _sse(event_type, {**payload, **common})

    @staticmethod
    def _common(recorded: Recorded, output_format: str) -> dict[str, Any]:
        found = params(recorded)
        return {
            "created_at": int(time.time()),
            "size": found.get("size") or "1024x1024",
            "quality": found.get("quality") or "auto",
            "background": found.get("background") or "opaque",
            "output_format": output_format,
        }

    @staticmethod
    async def _stream(request: web.Request, events: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response


def _usage() -> dict[str, Any]:
    return {
        "input_tokens": 50,
        "input_tokens_details": {"image_tokens": 40, "text_tokens": 10},
        "output_tokens": 4160,
        "total_tokens": 4210,
    }
