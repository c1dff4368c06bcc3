"""Google Gemini image models ("Nano Banana") through google-genai's async client.

Edits keep Gemini's conversation context: the model turn that produced the image (its parts
and thought signatures, without the image bytes) travels in `ImageResult.provider_state` and
is replayed before the next instructions when the image to edit is that very output.

The SDK sends the request and hands back the raw answer (`should_return_http_response`): its
JSON is read once (orjson, the image's base64 straight to bytes) instead of through the SDK's
models. Continuation tokens are followed as the SDK would, one request per token.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from aigen.server.errors import (
    CapabilityUnsupported,
    ContentRefused,
    ProviderError,
    ProviderNotConfigured,
    ProviderUnavailable,
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
    environment_proxy,
    error_for_status,
    parse_retry_after,
    transport_failure,
    with_model_id,
)

if TYPE_CHECKING:
    from aigen.server.config import Settings

NAME = "gemini"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/"
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
        self._client: genai.Client | None = None
        self._session: aiohttp.ClientSession | None = None
        self._client_timeout = _millis(settings.generation_timeout_s)
        self._options: types.HttpOptions | None = None
        if settings.gemini_api_key:
            self._options = types.HttpOptions(
                base_url=settings.gemini_base_url or None,
                api_version=API_VERSION,
                timeout=self._client_timeout,
                retry_options=types.HttpRetryOptions(attempts=1),  # the engine owns retries
            )

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
        return self._options is not None

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        """One generateContent call. Gemini reports no progress, so none is sent (the engine estimates)."""
        client, profile = self._checked(request)
        image_size, degradations = _image_size(request, profile)
        if request.mask is not None:
            degradations = (*degradations, "mask ignored")
        timeout = _millis(self._settings.timeout_for(NAME, profile.name))
        config = _config(request.aspect_ratio, image_size, request.seed, timeout, self._client_timeout)
        contents = _contents(request, profile.internal_id)
        with _map_api_errors():
            answer = await _generate(client, profile.internal_id, contents, config)
        return _result(answer, request, profile.internal_id, degradations)

    async def aclose(self) -> None:
        """Close the SDK client and its HTTP connection pool."""
        if self._client is not None:
            await self._client.aio.aclose()
        if self._session is not None:
            await self._session.close()

    def _checked(self, request: ImageRequest) -> tuple[genai.Client, ModelProfile]:
        """The client and the model's profile, once the request is known to fit them."""
        if self._options is None:
            raise ProviderNotConfigured("Gemini has no API key (set GEMINI_API_KEY)")
        profile = next((item for item in self._profiles if request.model in item.names()), None)
        if profile is None:
            raise CapabilityUnsupported(f"Gemini has no model {request.model!r}")
        if len(request.reference_images) > profile.max_reference_images:
            raise CapabilityUnsupported(f"{profile.name} takes at most {profile.max_reference_images} reference images")
        return self._sdk(self._options), profile

    def _sdk(self, options: types.HttpOptions) -> genai.Client:
        """The SDK client on our aiohttp session, made on first use (inside the event loop).

        The session holds at most provider_max_connections, and takes the environment's proxy
        for the API once: the SDK's own session would read the environment on every request.
        """
        if self._client is None:
            base_url = options.base_url or DEFAULT_BASE_URL
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._settings.provider_max_connections),
                proxy=environment_proxy(base_url),
            )
            options = options.model_copy(update={"aiohttp_client": self._session})
            self._client = genai.Client(api_key=self._settings.gemini_api_key, http_options=options)
        return self._client


_NO_FUNCTION_CALLING = types.AutomaticFunctionCallingConfig(disable=True)


@functools.lru_cache(maxsize=256)
def _config(
    aspect_ratio: str, image_size: str | None, seed: int | None, timeout_ms: int, client_timeout_ms: int
) -> types.GenerateContentConfig:
    """The request's config, built once per distinct value (the SDK copies it before any change).

    A timeout equal to the client's is left out: per-request HTTP options cost the SDK a merge.
    """
    return types.GenerateContentConfig(
        response_modalities=["IMAGE"],
        image_config=types.ImageConfig(aspect_ratio=aspect_ratio, image_size=image_size),
        seed=seed,
        http_options=None if timeout_ms == client_timeout_ms else types.HttpOptions(timeout=timeout_ms),
        automatic_function_calling=_NO_FUNCTION_CALLING,  # no tools: skip the SDK's calling loop
        automatic_continuation=False,  # followed here, on the raw answers
        should_return_http_response=True,
    )


async def _generate(
    client: genai.Client, model: str, contents: list[types.Content], config: types.GenerateContentConfig
) -> dict[str, Any]:
    """The answer as JSON, with the parts of every continuation appended to the first candidate's."""
    answer = await _generate_once(client, model, contents, config)
    while (token := _continuation_token(answer)) is not None:
        more = await _generate_once(client, model, contents, config.model_copy(update={"continuation_token": token}))
        answer = _merged(answer, more)
    return answer


async def _generate_once(
    client: genai.Client, model: str, contents: list[types.Content], config: types.GenerateContentConfig
) -> dict[str, Any]:
    response = await client.aio.models.generate_content(model=model, contents=contents, config=config)
    raw = response.sdk_http_response
    answer = orjson.loads(raw.body or "{}") if raw is not None else {}
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    return answer


def _continuation_token(answer: dict[str, Any]) -> bytes | None:
    """The token to continue with: present, and the generation stopped short (or has no reason)."""
    candidate = _first_candidate(answer)
    token = candidate.get("continuationToken")
    if not token or candidate.get("finishReason") not in (None, "CONTINUATION"):
        return None
    return _b64_any(token)


def _merged(answer: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """`more` (the next continuation) with the first candidate's parts of `answer` before its own."""
    parts = [*_content_parts(_first_candidate(answer)), *_content_parts(_first_candidate(more))]
    candidate = {**_first_candidate(more), "content": {"role": "model", "parts": parts}}
    return {**more, "candidates": [candidate, *(more.get("candidates") or [])[1:]]}


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


def _signature(part: dict[str, Any]) -> str | None:
    """The part's thought signature as standard base64 (as the SDK's bytes would encode)."""
    signature = part.get("thoughtSignature")
    return b64_text(_b64_any(signature)) if signature else None


def _b64_any(text: str) -> bytes:
    """Bytes of base64 in either alphabet (standard or URL-safe), padded or not; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError("base64 field is not a string")
    try:
        return b64_bytes(text)
    except ValueError:
        normal = text.replace("-", "+").replace("_", "/")
        return b64_bytes(normal + "=" * (-len(normal) % 4))


def _state(prompt: str, internal_id: str, parts: list[dict[str, Any]], image: bytes) -> bytes | None:
    """What the next turn needs to continue this conversation (None when it cannot be replayed)."""
    if sum(isinstance(part.get("inlineData"), dict) for part in parts) != 1:
        return None  # only the returned image's bytes come back as the next image to edit
    kept = []
    for part in parts:
        if isinstance(part.get("inlineData"), dict):
            kept.append({"image": part["inlineData"].get("mimeType") or "image/png", "signature": _signature(part)})
        elif isinstance(part.get("text"), str):
            kept.append({"text": part["text"], "signature": _signature(part)})
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
    answer: dict[str, Any], request: ImageRequest, internal_id: str, degradations: tuple[str, ...]
) -> ImageResult:
    """The last non-thought image of the first candidate, or ContentRefused."""
    feedback = answer.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        raise ContentRefused(f"Gemini blocked the prompt ({feedback['blockReason']})")
    candidate = _first_candidate(answer)
    parts = _answer_parts(candidate)
    images = [part for part in parts if _inline_data(part)]
    if not images:
        raise ContentRefused(_refusal_message(candidate, parts))
    blob = images[-1]["inlineData"]
    data = _b64_any(blob["data"])
    state = _state(request.prompt, internal_id, parts, data) if request.keeps_state else None
    return ImageResult(
        data=data, mime_type=blob.get("mimeType") or "image/png", degradations=degradations, provider_state=state
    )


def _first_candidate(answer: dict[str, Any]) -> dict[str, Any]:
    candidates = answer.get("candidates")
    first = candidates[0] if isinstance(candidates, list) and candidates else {}
    return first if isinstance(first, dict) else {}


def _content_parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [part for part in parts or [] if isinstance(part, dict)]


def _answer_parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """The candidate's parts without thoughts (interim thought images included)."""
    return [part for part in _content_parts(candidate) if not part.get("thought")]


def _inline_data(part: dict[str, Any]) -> bool:
    """True for a part holding image bytes (a dict with non-empty data)."""
    blob = part.get("inlineData")
    return isinstance(blob, dict) and bool(blob.get("data"))


def _refusal_message(candidate: dict[str, Any], parts: list[dict[str, Any]]) -> str:
    reason = candidate.get("finishReason") or "none"
    text = " ".join(part["text"] for part in parts if isinstance(part.get("text"), str) and part["text"]).strip()
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
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise transport_failure("Gemini", exc) from exc
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
