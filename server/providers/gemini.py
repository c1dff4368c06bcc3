"""Google Gemini image models ("Nano Banana") through google-genai's async client.

Edits keep Gemini's conversation context: the model turn that produced the image (its parts
and thought signatures, without the image bytes) travels in `ImageResult.provider_state` and
is replayed before the next instructions when the image to edit is that very output.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from aigen.server.errors import (
    CapabilityUnsupported,
    ContentRefused,
    ProviderError,
    ProviderNotConfigured,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
)
from aigen.server.providers.base import (
    ALL_IMAGE_SIZES,
    ImageProvider,
    ImageRequest,
    ImageResult,
    InputImage,
    ModelProfile,
    ProgressCallback,
    register,
)
from aigen.server.providers.remote import (
    b64_bytes,
    b64_text,
    error_for_status,
    is_connect_failure,
    parse_retry_after,
    with_model_id,
)

if TYPE_CHECKING:
    from aigen.server.config import Settings

NAME = "gemini"
API_VERSION = "v1beta"

MODELS = (
    ModelProfile(
        provider=NAME,
        name="nano-banana",
        internal_id="gemini-2.5-flash-image",
        image_sizes=("1K",),
        max_reference_images=3,
        can_edit=True,
        typical_latency_s=8.0,
        credits_per_image=4,
        notes="Fast, 1024px",
    ),
    ModelProfile(
        provider=NAME,
        name="nano-banana-pro",
        internal_id="gemini-3-pro-image-preview",
        image_sizes=("1K", "2K", "4K"),
        max_reference_images=14,
        can_edit=True,
        typical_latency_s=30.0,
        credits_per_image=15,
        notes="Higher quality, up to 4K, ~30s",
    ),
    ModelProfile(
        provider=NAME,
        name="nano-banana-2",
        internal_id="gemini-3.1-flash-image-preview",
        image_sizes=ALL_IMAGE_SIZES,
        max_reference_images=14,
        can_edit=True,
        typical_latency_s=12.0,
        credits_per_image=6,
        notes="Fast, 512px to 4K",
    ),
)

# google.rpc.ErrorInfo reasons that mean the credential, not the request, is at fault.
_KEY_REASONS = {"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED", "SERVICE_DISABLED"}


def _profiles(settings: Settings) -> tuple[ModelProfile, ...]:
    """The built-in profiles with internal ids from settings (a replaced id stays an alias)."""
    return tuple(with_model_id(profile, settings.model_ids) for profile in MODELS)


@register
class GeminiProvider(ImageProvider):
    """Gemini image generation and editing (generateContent with an IMAGE response)."""

    name = NAME
    description = "Google Gemini image models (Nano Banana)"
    credential_env = "GEMINI_API_KEY"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._profiles = _profiles(settings)
        self._http: httpx2.AsyncClient | None = None
        self._client: genai.Client | None = None
        if settings.gemini_api_key:
            # One transport everywhere: the SDK would switch to aiohttp when it is installed.
            self._http = httpx2.AsyncClient(timeout=settings.generation_timeout_s)
            options = types.HttpOptions(
                base_url=settings.gemini_base_url or None,
                api_version=API_VERSION,
                timeout=_millis(settings.generation_timeout_s),
                retry_options=types.HttpRetryOptions(attempts=1),  # the engine owns retries
                httpx_async_client=self._http,
            )
            self._client = genai.Client(api_key=settings.gemini_api_key, http_options=options)

    @classmethod
    def from_settings(cls, settings: Settings) -> GeminiProvider:
        """Build from the API key, base URL, timeouts and model ids in settings."""
        return cls(settings)

    def models(self) -> Sequence[ModelProfile]:
        """Nano Banana, Nano Banana Pro and Nano Banana 2."""
        return self._profiles

    @property
    def configured(self) -> bool:
        """True when an API key is set."""
        return self._client is not None

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        """One generateContent call. Gemini reports no progress, so none is sent (the engine estimates)."""
        client, profile = self._checked(request)
        image_size, degradations = _image_size(request, profile)
        if request.mask is not None:
            degradations = (*degradations, "mask ignored")
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE"],
            image_config=types.ImageConfig(aspect_ratio=request.aspect_ratio, image_size=image_size),
            seed=request.seed,
            http_options=types.HttpOptions(timeout=_millis(self._settings.timeout_for(NAME, profile.name))),
        )
        contents = _contents(request, profile.internal_id)
        with _map_api_errors():
            response = await client.aio.models.generate_content(
                model=profile.internal_id, contents=contents, config=config
            )
        return _result(response, request, profile.internal_id, degradations)

    async def aclose(self) -> None:
        """Close the SDK client and its HTTP connection pool."""
        if self._client is not None:
            await self._client.aio.aclose()
        if self._http is not None:
            await self._http.aclose()

    def _checked(self, request: ImageRequest) -> tuple[genai.Client, ModelProfile]:
        """The client and the model's profile, once the request is known to fit them."""
        if self._client is None:
            raise ProviderNotConfigured("Gemini has no API key (set GEMINI_API_KEY)")
        profile = next((item for item in self._profiles if request.model in item.names()), None)
        if profile is None:
            raise CapabilityUnsupported(f"Gemini has no model {request.model!r}")
        if len(request.reference_images) > profile.max_reference_images:
            raise CapabilityUnsupported(f"{profile.name} takes at most {profile.max_reference_images} reference images")
        return self._client, profile


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _image_size(request: ImageRequest, profile: ModelProfile) -> tuple[str | None, tuple[str, ...]]:
    """The tier to send (None for single-tier models, which take no tier), and any degradation."""
    sizes = profile.image_sizes
    size = request.image_size
    degradations: tuple[str, ...] = ()
    if size not in sizes:
        order = list(ALL_IMAGE_SIZES)
        lower = [tier for tier in sizes if order.index(tier) <= order.index(size)]
        chosen = lower[-1] if lower else sizes[0]
        degradations = (f"image_size {size} -> {chosen}",)
        size = chosen
    return (size if len(sizes) > 1 else None), degradations


def _image_part(image: InputImage) -> types.Part:
    return types.Part.from_bytes(data=image.data, mime_type=image.mime_type)


def _contents(request: ImageRequest, internal_id: str) -> list[types.Content]:
    """The conversation to send: the prompt and images, after the previous turn when it applies."""
    references = [_image_part(image) for image in request.reference_images]
    if request.source_image is None:
        return [types.Content(role="user", parts=[types.Part(text=request.prompt), *references])]
    history = _history(request.provider_state, request.source_image, internal_id)
    if history:
        return [*history, types.Content(role="user", parts=[types.Part(text=request.prompt), *references])]
    source = _image_part(request.source_image)
    return [types.Content(role="user", parts=[types.Part(text=request.prompt), source, *references])]


# Provider state: the previous turn's prompt and model parts, image bytes replaced by a digest.


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signature(part: types.Part) -> str | None:
    return b64_text(part.thought_signature) if part.thought_signature else None


def _state(prompt: str, internal_id: str, parts: list[types.Part], image: bytes) -> bytes | None:
    """What the next turn needs to continue this conversation (None when it cannot be replayed)."""
    if sum(part.inline_data is not None for part in parts) != 1:
        return None  # only the returned image's bytes come back as the next image to edit
    kept = []
    for part in parts:
        if part.inline_data is not None:
            kept.append({"image": part.inline_data.mime_type or "image/png", "signature": _signature(part)})
        elif part.text is not None:
            kept.append({"text": part.text, "signature": _signature(part)})
    state = {"model": internal_id, "prompt": prompt, "image_sha256": _digest(image), "parts": kept}
    return json.dumps(state).encode()


def _history(state: bytes | None, source: InputImage, internal_id: str) -> list[types.Content]:
    """The previous turn, when the state is this model's and the image to edit is its output."""
    if not state:
        return []
    try:
        saved = json.loads(state)
        if saved["model"] != internal_id or saved["image_sha256"] != _digest(source.data):
            return []
        parts = [_saved_part(item, source) for item in saved["parts"]]
        return [
            types.Content(role="user", parts=[types.Part(text=saved["prompt"])]),
            types.Content(role="model", parts=parts),
        ]
    except (ValueError, KeyError, TypeError):
        return []  # state from an older format: edit without the context


def _saved_part(item: dict[str, Any], source: InputImage) -> types.Part:
    signature = b64_bytes(item["signature"], strict=False) if item.get("signature") else None
    if "image" in item:
        blob = types.Blob(data=source.data, mime_type=item["image"])
        return types.Part(inline_data=blob, thought_signature=signature)
    return types.Part(text=item["text"], thought_signature=signature)


# Response reading.


def _result(
    response: types.GenerateContentResponse, request: ImageRequest, internal_id: str, degradations: tuple[str, ...]
) -> ImageResult:
    """The last non-thought image of the first candidate, or ContentRefused."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        raise ContentRefused(f"Gemini blocked the prompt ({_enum_name(feedback.block_reason)})")
    candidate = response.candidates[0] if response.candidates else None
    parts = _answer_parts(candidate)
    images = [part for part in parts if part.inline_data is not None and part.inline_data.data]
    if not images:
        raise ContentRefused(_refusal_message(candidate, parts))
    blob = images[-1].inline_data
    assert blob is not None and blob.data is not None
    return ImageResult(
        data=blob.data,
        mime_type=blob.mime_type or "image/png",
        degradations=degradations,
        provider_state=_state(request.prompt, internal_id, parts, blob.data),
    )


def _answer_parts(candidate: types.Candidate | None) -> list[types.Part]:
    """The candidate's parts without thoughts (interim thought images included)."""
    if candidate is None or candidate.content is None:
        return []
    return [part for part in candidate.content.parts or [] if not part.thought]


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _refusal_message(candidate: types.Candidate | None, parts: list[types.Part]) -> str:
    reason = _enum_name(candidate.finish_reason) if candidate and candidate.finish_reason else "none"
    text = " ".join(part.text for part in parts if part.text).strip()
    message = f"Gemini returned no image (finish reason {reason})"
    return f"{message}: {text[:200]}" if text else message


# Errors, translated at the edge.


@contextmanager
def _map_api_errors() -> Iterator[None]:
    """Turn SDK and transport exceptions into ProviderError subclasses."""
    try:
        yield
    except genai_errors.APIError as exc:
        raise _api_error(exc) from exc
    except (httpx2.TimeoutException, TimeoutError) as exc:
        raise ProviderTimeout("Gemini did not answer in time") from exc
    except (httpx2.TransportError, OSError) as exc:
        if is_connect_failure(exc):
            raise ProviderUnreachable("Gemini is unreachable (cannot connect)") from exc
        raise ProviderUnavailable(f"Gemini dropped the connection ({type(exc).__name__})") from exc
    except ValueError as exc:  # undecodable JSON or an answer that does not fit the schema
        raise ProviderUnavailable("Gemini sent a malformed answer") from exc


def _api_error(exc: genai_errors.APIError) -> ProviderError:
    details = _details(exc)
    message = f"Gemini: {exc.message or exc.status or exc.code}"
    reasons = {detail.get("reason") for detail in details}
    code = exc.code or 0
    if reasons & _KEY_REASONS or (code == 400 and exc.status == "FAILED_PRECONDITION"):
        return ProviderNotConfigured(f"{message} (the API key or account cannot use this model)")
    return error_for_status(code, message, retry_after=_retry_after(exc, details))


def _details(exc: genai_errors.APIError) -> list[dict[str, Any]]:
    body = exc.details if isinstance(exc.details, dict) else {}
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, dict) else None
    return [detail for detail in details or [] if isinstance(detail, dict)]


def _retry_after(exc: genai_errors.APIError, details: list[dict[str, Any]]) -> float | None:
    """Seconds to wait: the Retry-After header, else google.rpc.RetryInfo.retryDelay ("7s")."""
    headers = getattr(exc.response, "headers", None)
    header = headers.get("retry-after") if headers is not None else None
    if header:
        return parse_retry_after(header)
    for detail in details:
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and (match := re.fullmatch(r"(\d+(?:\.\d+)?)s", delay.strip())):
            return float(match.group(1))
    return None
