"""OpenAI GPT Image through the openai async client, streaming partial images as previews.

Generation uses `images.generate`; anything with input images (the image to edit, references,
a mask) uses `images.edit`. When somebody watches progress both stream: partial images reach
the progress callback as previews, and the `*.completed` event carries the final image.
Otherwise the plain JSON answer is cheaper (no event parsing of the partial images); its raw
body is read once (orjson, then base64 straight to bytes) instead of through the SDK's models.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import openai
import orjson
from PIL import Image

from aigen.server.errors import (
    CapabilityUnsupported,
    ContentRefused,
    ProviderError,
    ProviderNotConfigured,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
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
    b64_bytes,
    connection_limits,
    error_for_status,
    is_connect_failure,
    parse_retry_after,
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
        self._client: openai.AsyncOpenAI | None = None
        if settings.openai_api_key:
            self._client = openai.AsyncOpenAI(
                api_key=settings.openai_api_key,
                base_url=settings.openai_base_url or None,
                max_retries=0,  # the engine owns retries
                timeout=settings.generation_timeout_s,
                http_client=openai.DefaultAsyncHttpxClient(limits=connection_limits(settings.provider_max_connections)),
            )

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
        with _map_api_errors():
            if request.previews:
                result = await _consume(await _call(client.images, images, options, request), progress)
            else:
                raw = await _call(client.images.with_raw_response, images, options, request)
                result = _read_answer(raw.content)
        return replace(result, degradations=(*degradations, *quality_degradations))

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


# Request translation.


async def _call(images_api: Any, images: list[FileTuple], options: dict[str, Any], request: ImageRequest) -> Any:
    """images.edit when there are input images, else images.generate (of `images_api`)."""
    if images:
        return await images_api.edit(image=images, **options, **await _mask_option(request))
    return await images_api.generate(**options)


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


async def _consume(stream: openai.AsyncStream[Any], progress: ProgressCallback) -> ImageResult:
    """Read the event stream to its end: previews to `progress`, the completed event as the result.

    The stream is read past the completed event: closing a response before its end discards the
    connection, so every generation would open a new one (measured: +2-3 ms CPU per request).
    """
    result: ImageResult | None = None
    try:
        async for event in stream:
            if result is not None:
                continue
            if event.type.endswith(".partial_image"):
                preview = b64_bytes(event.b64_json or "")
                message = f"partial image {event.partial_image_index + 1} of {PARTIAL_IMAGES}"
                if preview:
                    progress(Progress(message=message, preview=InputImage(preview, _mime(event))))
            elif event.type.endswith(".completed"):
                data = b64_bytes(event.b64_json or "")
                if not data:
                    raise ProviderUnavailable("OpenAI sent an empty image")
                revised = getattr(event, "revised_prompt", None) or ""
                result = ImageResult(data=data, mime_type=_mime(event), revised_prompt=revised)
    finally:
        await stream.close()
    if result is None:
        raise ProviderUnavailable("OpenAI's stream ended without an image")
    return result


def _read_answer(body: bytes) -> ImageResult:
    """The image of a plain (not streamed) answer, from its raw JSON body."""
    answer = orjson.loads(body)
    items = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ProviderUnavailable("OpenAI sent a malformed answer")
    item = items[0] if items else {}
    encoded = item.get("b64_json") or ""
    if not isinstance(encoded, str):
        raise ProviderUnavailable("OpenAI sent a malformed answer")
    data = b64_bytes(encoded)
    if not data:
        raise ProviderUnavailable("OpenAI answered without an image")
    mime_type = OUTPUT_TYPES.get(answer.get("output_format") or "png", "image/png")
    return ImageResult(data=data, mime_type=mime_type, revised_prompt=item.get("revised_prompt") or "")


def _mime(event: Any) -> str:
    return OUTPUT_TYPES.get(getattr(event, "output_format", None) or "png", "image/png")


# Errors, translated at the edge.


@contextmanager
def _map_api_errors() -> Iterator[None]:
    """Turn SDK exceptions into ProviderError subclasses."""
    try:
        yield
    except openai.APITimeoutError as exc:
        raise ProviderTimeout("OpenAI did not answer in time") from exc
    except openai.APIConnectionError as exc:
        if is_connect_failure(exc):
            raise ProviderUnreachable("OpenAI is unreachable (cannot connect)") from exc
        raise ProviderUnavailable("OpenAI dropped the connection") from exc
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
