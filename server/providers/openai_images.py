"""OpenAI GPT Image through the openai async client, streaming partial images as previews.

Generation uses `images.generate`; anything with input images (the image to edit, references,
a mask) uses `images.edit`. When somebody watches progress both stream: partial images reach
the progress callback as previews, and the `*.completed` event carries the final image.
Otherwise the plain JSON answer is cheaper (no event parsing of the partial images); it is asked
for through the SDK's raw `post` and read once, the image decoded from base64 straight out of
the body (`loads_lifting`), instead of through the SDK's models.
The SDK still makes every request; streamed bodies are split into events here (`SSEReader`),
a few `bytes.find` calls per event instead of the SDK's line-by-line decoding, which kept the
event loop busy for milliseconds per image-sized event.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx2
import openai
from PIL import Image

from aigen.server.errors import (
    CapabilityUnsupported,
    ContentRefused,
    ProviderError,
    ProviderNotConfigured,
    ProviderUnavailable,
)
from aigen.server.imaging import nearest_ratio, ratio_value
from aigen.server.providers.base import (
    ImageProvider,
    ImageRequest,
    ImageResult,
    InputImage,
    ModelProfile,
    Progress,
    ProgressCallback,
    register,
)
from aigen.server.providers.remote import (
    connection_limits,
    error_for_status,
    lifted_bytes,
    loads_lifting,
    parse_retry_after,
    transport_failure,
    with_model_id,
)

if TYPE_CHECKING:
    from aigen.server.config import Settings

NAME = "openai"
DEFAULT_MODEL_ID = "gpt-image-1.5"
PARTIAL_IMAGES = 2

PROFILE = ModelProfile(
    provider=NAME,
    name="gpt-image",
    internal_id=DEFAULT_MODEL_ID,
    aliases=("gpt-image-1",),
    aspect_ratios=("1:1", "3:2", "2:3"),
    image_sizes=("1K",),
    max_reference_images=15,  # 16 input images, one of them possibly the image to edit
    can_edit=True,
    supports_mask=True,
    streams_previews=True,
    typical_latency_s=30.0,
    credits_per_image=50,
    notes="Precise prompt following and text; 1024px to 1536px",
)

# The only output sizes, by aspect ratio.
SIZES = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}
QUALITIES = ("low", "medium", "high", "auto")
# Input formats images.edit accepts; anything else is converted to PNG.
UPLOAD_TYPES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
OUTPUT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
REFUSAL_CODES = {"moderation_blocked", "content_policy_violation"}

FileTuple = tuple[str, bytes, str]


def _profile(settings: Settings) -> ModelProfile:
    """The profile with the internal id from settings (a replaced default id stays an alias)."""
    return with_model_id(PROFILE, settings.model_ids)


@register
class OpenAIProvider(ImageProvider):
    """GPT Image generation and editing with streamed partial images."""

    name = NAME
    description = "OpenAI GPT Image"
    credential_env = "OPENAI_API_KEY"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._profile = _profile(settings)
        self._client = _client(settings) if settings.openai_api_key else None

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIProvider:
        """Build from the API key, base URL, timeouts and model id in settings."""
        return cls(settings)

    def models(self) -> Sequence[ModelProfile]:
        """GPT Image."""
        return (self._profile,)

    @property
    def configured(self) -> bool:
        """True when an API key is set."""
        return self._client is not None

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        """One image; streamed with previews to `progress` when `request.previews` asks for them."""
        client = self._checked(request)
        size, degradations = _size(request)
        quality, quality_degradations = _quality(request.quality)
        options: dict[str, Any] = {
            "model": self._profile.internal_id,
            "prompt": request.prompt,
            "size": size,
            "quality": quality,
        }
        timeout = self._settings.timeout_for(NAME, self._profile.name)
        if timeout != self._settings.generation_timeout_s:  # the client's own timeout otherwise
            options["timeout"] = timeout
        if request.previews:
            options.update(stream=True, partial_images=PARTIAL_IMAGES)
        images = await asyncio.to_thread(_uploads, request) if _has_inputs(request) else []
        if request.mask is not None and not images:
            degradations = (*degradations, "mask ignored (no image to edit)")
        if images:
            options.update(image=images, **await _mask_option(request))
        with _map_api_errors():
            if request.previews and images:
                async with client.images.with_streaming_response.edit(**options) as response:
                    result = await _consume(response.http_response, progress)
            elif request.previews:
                async with _streamed(client, options) as response:
                    result = await _consume(response, progress)
            elif images:
                raw = await client.images.with_raw_response.edit(**options)
                result = _read_answer(raw.content)
            else:
                result = _read_answer(await _generated(client, options))
        if degradations or quality_degradations:
            result = replace(result, degradations=(*degradations, *quality_degradations))
        return result

    def _checked(self, request: ImageRequest) -> openai.AsyncOpenAI:
        """The client, once the request is known to fit this provider."""
        if self._client is None:
            raise ProviderNotConfigured("OpenAI has no API key (set OPENAI_API_KEY)")
        if request.model not in self._profile.names():
            raise CapabilityUnsupported(f"OpenAI has no model {request.model!r}")
        limit = self._profile.max_reference_images
        if len(request.reference_images) > limit:
            raise CapabilityUnsupported(f"gpt-image takes at most {limit} reference images")
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            await self._client.close()


def _client(settings: Settings) -> openai.AsyncOpenAI:
    """The SDK's client over its aiohttp transport, holding at most provider_max_connections."""
    return openai.AsyncOpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url or None,
        max_retries=0,  # the engine owns retries
        timeout=settings.generation_timeout_s,
        http_client=openai.DefaultAioHttpClient(limits=connection_limits(settings.provider_max_connections)),
    )


# Request translation.


async def _generated(client: openai.AsyncOpenAI, options: dict[str, Any]) -> bytes:
    """The raw answer of images.generate, sent through the SDK's own `post`.

    The typed method checks its arguments against their TypedDict on every call (a walk over
    the type hints) and wraps the answer twice before the raw bytes come out: together a fifth
    of the SDK's CPU for one image. The body is the same JSON, with the same authentication,
    transport, timeout and errors.
    """
    body, request_options = _post_arguments(options)
    response = await client.post("/images/generations", cast_to=httpx2.Response, body=body, options=request_options)
    return response.content


@contextlib.asynccontextmanager
async def _streamed(client: openai.AsyncOpenAI, options: dict[str, Any]) -> AsyncIterator[httpx2.Response]:
    """images.generate with `stream: true` through the SDK's own `post` (see `_generated`): the
    response with its event stream unread, closed on exit.
    """
    body, request_options = _post_arguments(options)
    response = await client.post(
        "/images/generations", cast_to=httpx2.Response, body=body, options=request_options, stream=True
    )
    try:
        yield response
    finally:
        await response.aclose()


def _post_arguments(options: dict[str, Any]) -> tuple[dict[str, Any], openai.RequestOptions]:
    """The JSON body and the request options (authentication, timeout) of a raw images call."""
    body = dict(options)
    request_options: openai.RequestOptions = {"security": {"bearer_auth": True}}
    if "timeout" in body:
        request_options["timeout"] = body.pop("timeout")
    return body, request_options


def _has_inputs(request: ImageRequest) -> bool:
    return request.source_image is not None or bool(request.reference_images)


def _size(request: ImageRequest) -> tuple[str, tuple[str, ...]]:
    """The output size for the request, and how it differs from what was asked."""
    if request.size:
        width, height = (int(side) for side in request.size.lower().split("x"))
        size = SIZES[nearest_ratio(width / height, tuple(SIZES))]
        return size, (() if size == f"{width}x{height}" else (f"size {request.size} -> {size}",))
    degradations: list[str] = []
    ratio = request.aspect_ratio
    if ratio not in SIZES:
        chosen = nearest_ratio(ratio_value(ratio), tuple(SIZES))
        degradations.append(f"aspect_ratio {ratio} -> {chosen}")
        ratio = chosen
    if request.image_size not in PROFILE.image_sizes:
        degradations.append(f"image_size {request.image_size} -> {PROFILE.image_sizes[0]}")
    return SIZES[ratio], tuple(degradations)


def _quality(quality: str) -> tuple[str, tuple[str, ...]]:
    if quality in QUALITIES:
        return quality, ()
    return "auto", (f"quality {quality} -> auto",)


def _uploads(request: ImageRequest) -> list[FileTuple]:
    """The images for images.edit: the image to edit first, then the references."""
    images = [request.source_image] if request.source_image is not None else []
    images.extend(request.reference_images)
    return [_upload(image, f"image-{index}") for index, image in enumerate(images)]


def _upload(image: InputImage, stem: str) -> FileTuple:
    extension = UPLOAD_TYPES.get(image.mime_type)
    if extension is not None:
        return f"{stem}.{extension}", image.data, image.mime_type
    return f"{stem}.png", _to_png(image.data), "image/png"


def _to_png(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data)) as image:
        image.convert("RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


async def _mask_option(request: ImageRequest) -> dict[str, FileTuple]:
    """The `mask` argument: our white-is-editable mask as OpenAI's transparent-is-editable PNG."""
    if request.mask is None:
        return {}
    source = request.source_image.data if request.source_image is not None else None
    mask = await asyncio.to_thread(_alpha_mask, request.mask.data, source)
    return {"mask": ("mask.png", mask, "image/png")}


def _alpha_mask(mask: bytes, source: bytes | None) -> bytes:
    """A PNG whose alpha is 0 where `mask` is white, sized like the image to edit."""
    with Image.open(io.BytesIO(mask)) as opened:
        editable = opened.convert("L")
    if source is not None:
        with Image.open(io.BytesIO(source)) as image:
            if image.size != editable.size:
                editable = editable.resize(image.size)
    result = Image.new("RGBA", editable.size, (0, 0, 0, 255))
    result.putalpha(editable.point(lambda value: 255 - value))
    buffer = io.BytesIO()
    result.save(buffer, format="PNG")
    return buffer.getvalue()


# Response reading.


async def _consume(response: httpx2.Response, progress: ProgressCallback) -> ImageResult:
    """Read the event stream to its end: previews to `progress`, the completed event as the result.

    The stream is read past the completed event: closing a response before its end discards the
    connection, so every generation would open a new one (measured: +2-3 ms CPU per request).
    """
    result: ImageResult | None = None
    async with contextlib.aclosing(_events(response)) as events:
        async for event, image in events:
            if result is None:
                result = _read_event(event, image, progress)
    if result is None:
        raise ProviderUnavailable("OpenAI's stream ended without an image")
    return result


def _read_event(event: dict[str, Any], image: bytes | None, progress: ProgressCallback) -> ImageResult | None:
    """A partial image to `progress`; the result when `event` is the completed one."""
    kind = event.get("type") or ""
    if kind.endswith(".partial_image"):
        preview = lifted_bytes(event.get("b64_json") or "", image)
        message = f"partial image {(event.get('partial_image_index') or 0) + 1} of {PARTIAL_IMAGES}"
        if preview:
            progress(Progress(message=message, preview=InputImage(preview, _mime(event))))
    elif kind.endswith(".completed"):
        data = lifted_bytes(event.get("b64_json") or "", image)
        if not data:
            raise ProviderUnavailable("OpenAI sent an empty image")
        return ImageResult(data=data, mime_type=_mime(event), revised_prompt=event.get("revised_prompt") or "")
    return None


async def _events(response: httpx2.Response) -> AsyncIterator[tuple[dict[str, Any], bytes | None]]:
    """The JSON objects of the stream's events, as the SDK reads them, each with its image
    decoded on the way (`loads_lifting`).

    Like the SDK: `[DONE]` ends the stream, an event whose data has an `error` raises APIError,
    transport failures raise APITimeoutError or APIConnectionError.
    """
    reader = SSEReader()
    async with contextlib.aclosing(_body(response)) as chunks:
        async for chunk in chunks:
            for data in reader.feed(chunk):
                if data.startswith(b"[DONE]"):
                    await _drain(chunks)
                    return
                yield _event_json(data, response.request)


def _event_json(data: bytes, request: httpx2.Request) -> tuple[dict[str, Any], bytes | None]:
    """One event's data as a JSON object and its image; APIError when it carries an error."""
    decoded, image = loads_lifting(data, "b64_json")
    if not isinstance(decoded, dict):
        raise ProviderUnavailable("OpenAI sent a malformed event")
    error = decoded.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else None
        if not message or not isinstance(message, str):
            message = "An error occurred during streaming"
        raise openai.APIError(message=message, request=request, body=error)
    return decoded, image


# Transport failures while reading a body, as the SDK counts them.
_TIMEOUTS = (httpx2.TimeoutException, TimeoutError)
_DROPPED = (httpx2.RequestError, aiohttp.ClientError, ssl.SSLError)
DRAIN_S = 0.1  # how long the remainder after `[DONE]` is read for connection reuse (the SDK's)


async def _body(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The response body's chunks; transport failures as the SDK's exceptions."""
    try:
        async for chunk in response.aiter_bytes():
            yield chunk
    except _TIMEOUTS as exc:
        raise openai.APITimeoutError(request=response.request) from exc
    except _DROPPED as exc:
        raise openai.APIConnectionError(request=response.request) from exc


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]` for a short while, so the connection can be reused."""
    with contextlib.suppress(TimeoutError, openai.APIConnectionError):
        async with asyncio.timeout(DRAIN_S):
            async for _ in chunks:
                pass


COLON = ord(":")  # a line starting with it is an SSE comment


class SSEReader:
    """Splits a server-sent event stream into the data of its events, chunk by chunk.

    Events end at a blank line; lines end at LF, CRLF or CR. An event's data is its `data:`
    lines joined by LF; comments and other fields are skipped, and a block with no field
    yields nothing (after an `id:` field every block counts, as in the SDK's decoder). A last
    event without its blank line is dropped. Lines are found with a one-byte search (memchr):
    looking for a two-byte blank line, or splitting a block, scans an image-sized event ~50 x
    slower.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()  # the unfinished line
        self._scanned = 0  # how much of it is known to hold no line end
        self._carriage = False  # the last chunk ended in CR: an LF starting the next one is its pair
        self._has_id = False
        self._data: list[bytes] = []  # the event being read: its data lines and other fields
        self._event = self._retry = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The data of every event that `chunk` completes."""
        if self._carriage or b"\r" in chunk:
            chunk = self._unify_line_ends(chunk)
        buffer = self._buffer
        buffer += chunk
        found: list[bytes] = []
        start = 0
        end = buffer.find(b"\n", self._scanned)
        while end >= 0:
            if end == start:
                self._dispatch(found)
            elif buffer[start] != COLON:  # a comment otherwise
                self._field(buffer, start, end)
            start = end + 1
            end = buffer.find(b"\n", start)
        del buffer[:start]
        self._scanned = len(buffer)
        return found

    def _unify_line_ends(self, chunk: bytes) -> bytes:
        if self._carriage and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._carriage = chunk.endswith(b"\r")
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def _field(self, buffer: bytearray, start: int, end: int) -> None:
        """One `name: value` line of the event being read."""
        colon = buffer.find(b":", start, end)
        if colon < 0:
            name, value = bytes(buffer[start:end]), b""
        else:
            name = bytes(buffer[start:colon])
            first = colon + 2 if buffer[colon + 1 : colon + 2] == b" " else colon + 1
            with memoryview(buffer) as view:  # one copy of an image-sized value, not two
                value = bytes(view[first:end])
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = bool(value)
        elif name == b"retry":
            self._retry = self._retry or _is_int(value)
        elif name == b"id" and b"\0" not in value:
            self._has_id = bool(value)

    def _dispatch(self, found: list[bytes]) -> None:
        """A blank line: the event read so far, if it has a field (or an id came before)."""
        if self._data or self._event or self._retry or self._has_id:
            found.append(b"\n".join(self._data))
        self._data = []
        self._event = self._retry = False


def _is_int(value: bytes) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _read_answer(body: bytes) -> ImageResult:
    """The image of a plain (not streamed) answer, from its raw JSON body."""
    answer, image = loads_lifting(body, "b64_json")
    items = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ProviderUnavailable("OpenAI sent a malformed answer")
    item = items[0] if items else {}
    encoded = item.get("b64_json") or ""
    if not isinstance(encoded, str):
        raise ProviderUnavailable("OpenAI sent a malformed answer")
    data = lifted_bytes(encoded, image)
    if not data:
        raise ProviderUnavailable("OpenAI answered without an image")
    mime_type = OUTPUT_TYPES.get(answer.get("output_format") or "png", "image/png")
    return ImageResult(data=data, mime_type=mime_type, revised_prompt=item.get("revised_prompt") or "")


def _mime(event: dict[str, Any]) -> str:
    return OUTPUT_TYPES.get(event.get("output_format") or "png", "image/png")


# Errors, translated at the edge.


@contextmanager
def _map_api_errors() -> Iterator[None]:
    """Turn SDK exceptions into ProviderError subclasses."""
    try:
        yield
    except openai.APIConnectionError as exc:  # APITimeoutError included
        raise transport_failure("OpenAI", exc) from exc
    except openai.APIStatusError as exc:
        raise _status_error(exc) from exc
    except openai.APIError as exc:  # an error event in the stream, or an answer off the schema
        if exc.code in REFUSAL_CODES:
            raise ContentRefused(f"OpenAI refused the request: {exc.message}") from exc
        raise ProviderUnavailable(f"OpenAI failed: {exc.message}") from exc
    except ValueError as exc:  # undecodable JSON or base64
        raise ProviderUnavailable("OpenAI sent a malformed answer") from exc


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    message = f"OpenAI: {exc.message}"
    if exc.code in REFUSAL_CODES:
        return ContentRefused(message)
    if exc.code == "insufficient_quota":
        return ProviderNotConfigured(f"{message} (the account has no quota left)")
    return error_for_status(exc.status_code, message, retry_after=_retry_after(exc.response.headers))


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from retry-after-ms or Retry-After (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))
