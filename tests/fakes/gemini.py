"""A fake Gemini API: `POST /{version}/models/{model}:generateContent` with the real JSON shapes.

    async with FakeGemini(api_key="test-key") as fake:
        settings = Settings(gemini_api_key="test-key", gemini_base_url=fake.base_url)
        fake.fail(429, retry_delay="7s")   # the next request gets a 429, later ones an image

Replies: `succeed` (image, optional thought parts and signatures), `fail` (error JSON with
google.rpc details, optional Retry-After), `refuse` (prompt block or a safety finishReason),
`malformed` (broken JSON), `truncate` (connection dropped mid-body), `slow` (delay).
"""

from __future__ import annotations

import base64
from typing import Any, Self

from aiohttp import web

from .base import FakeServer, Handler, Recorded, json_response, sized_png, truncated_response

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_RATIOS = {"1:1": (1, 1), "2:3": (2, 3), "3:2": (3, 2), "3:4": (3, 4), "4:3": (4, 3), "4:5": (4, 5)}
_RATIOS |= {"5:4": (5, 4), "9:16": (9, 16), "16:9": (16, 9), "21:9": (21, 9)}
_TIERS = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64bytes(text: str) -> bytes:
    """Decode base64 in either alphabet (the SDK sends the URL-safe one)."""
    return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)


def _get(mapping: dict[str, Any], *names: str) -> Any:
    """The first key present among spellings (camelCase and snake_case both occur)."""
    for name in names:
        if name in mapping:
            return mapping[name]
    return None


def inline_parts(content: dict[str, Any]) -> list[tuple[str, bytes]]:
    """(mime type, bytes) of every inline image in one content entry."""
    images = []
    for part in content.get("parts", []):
        blob = _get(part, "inlineData", "inline_data")
        if blob:
            images.append((_get(blob, "mimeType", "mime_type"), b64bytes(blob["data"])))
    return images


def texts(content: dict[str, Any]) -> list[str]:
    """The text parts of one content entry."""
    return [part["text"] for part in content.get("parts", []) if "text" in part]


def image_config(recorded: Recorded) -> dict[str, Any]:
    """The generationConfig.imageConfig the client sent."""
    config = _get(recorded.json, "generationConfig", "generation_config") or {}
    return _get(config, "imageConfig", "image_config") or {}


def output_size(recorded: Recorded) -> tuple[int, int]:
    """The pixel size a real model would return for the request's ratio and tier."""
    config = image_config(recorded)
    across, down = _RATIOS.get(_get(config, "aspectRatio", "aspect_ratio") or "1:1", (1, 1))
    edge = _TIERS.get(_get(config, "imageSize", "image_size") or "1K", 1024)
    scale = edge / max(across, down)
    return round(across * scale), round(down * scale)


def error_body(status: int, message: str, details: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The JSON body of a Google API error."""
    return {
        "error": {
            "code": status,
            "message": message,
            "status": STATUS_NAMES.get(status, "UNKNOWN"),
            "details": list(details),
        }
    }


class FakeGemini(FakeServer):
    """A scriptable Gemini API server."""

    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        """What GOOGLE_GEMINI_BASE_URL should be (the SDK adds /v1beta/...)."""
        return self.origin

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/{version}/models/{model}:generateContent", self.dispatch)]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("x-goog-api-key") != self.api_key:
            await self._arrived(await self._record(request))
            detail = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            return json_response(400, error_body(400, "API key not valid. Please pass a valid API key.", [detail]))
        return await super().dispatch(request)

    async def default_reply(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        return await self.image_reply()(request, recorded)

    # Reply factories.
    def image_reply(
        self,
        *,
        text: str = "",
        thoughts: bool = False,
        signature: bytes | None = b"signature-1",
        image: bytes | None = None,
        mime_type: str = "image/png",
    ) -> Handler:
        """A candidate with an image part (and optionally thought parts before it)."""

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            parts: list[dict[str, Any]] = []
            if thoughts:
                parts.append({"text": "Planning the composition.", "thought": True})
                thought_image = sized_png(256, 256, (10, 10, 10))
                parts.append({"inlineData": {"mimeType": "image/png", "data": _b64(thought_image)}, "thought": True})
            if text:
                parts.append({"text": text})
            data = image if image is not None else sized_png(*output_size(recorded))
            image_part: dict[str, Any] = {"inlineData": {"mimeType": mime_type, "data": _b64(data)}}
            if signature is not None:
                image_part["thoughtSignature"] = _b64(signature)
            parts.append(image_part)
            candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            return json_response(200, self._response([candidate], recorded))

        return handler

    def error_reply(
        self,
        status: int,
        message: str = "",
        *,
        retry_after: str | None = None,
        retry_delay: str | None = None,
        reason: str | None = None,
        status_name: str | None = None,
    ) -> Handler:
        """A Google API error, with RetryInfo / ErrorInfo details and Retry-After when asked."""
        details = []
        if retry_delay is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
        if reason is not None:
            details.append({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason})
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        body = error_body(status, message or f"fake error {status}", details)
        if status_name is not None:
            body["error"]["status"] = status_name

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            return json_response(status, body, headers)

        return handler

    def refusal_reply(self, *, block_reason: str | None = None, finish_reason: str = "IMAGE_SAFETY") -> Handler:
        """A prompt blocked outright (`block_reason`), or a candidate that ended without an image."""

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            if block_reason is not None:
                payload = self._response([], recorded)
                payload["promptFeedback"] = {"blockReason": block_reason}
                return json_response(200, payload)
            candidate = {"content": {"role": "model", "parts": []}, "finishReason": finish_reason, "index": 0}
            if finish_reason == "STOP":
                candidate["content"]["parts"] = [{"text": "I can only describe this one."}]
            return json_response(200, self._response([candidate], recorded))

        return handler

    # Shortcuts that queue one reply.
    def succeed(self, **options: Any) -> Self:
        return self.script(self.image_reply(**options))

    def fail(self, status: int, message: str = "", **options: Any) -> Self:
        return self.script(self.error_reply(status, message, **options))

    def refuse(self, **options: Any) -> Self:
        return self.script(self.refusal_reply(**options))

    def malformed(self) -> Self:
        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            return web.Response(status=200, text='{"candidates": [{"content": ', content_type="application/json")

        return self.script(handler)

    def truncate(self) -> Self:
        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            response = await self.image_reply()(request, recorded)
            assert isinstance(response, web.Response) and response.body is not None
            return await truncated_response(request, 200, bytes(response.body), "application/json")

        return self.script(handler)

    @staticmethod
    def _response(candidates: list[dict[str, Any]], recorded: Recorded) -> dict[str, Any]:
        return {
            "candidates": candidates,
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 1290, "totalTokenCount": 1302},
            "modelVersion": recorded.match.get("model", ""),
            "responseId": f"fake-{len(recorded.body)}",
        }
