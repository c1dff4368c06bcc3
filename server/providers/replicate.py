"""Replicate: Ideogram v3 Turbo, Recraft v3, FLUX.1 [dev] and FLUX1.1 [pro] through the async SDK.

Each model's input schema is data (`_Inputs`): which field takes the image to edit, the mask,
reference images and the seed, and which fixed inputs it needs. A prediction is created, then
reloaded every `poll_interval_s` until it ends; tqdm lines in its logs give measured progress.
Cancelling the calling task cancels the prediction. The SDK's own retries are off: the engine
decides about retries and fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import httpx
import replicate
from PIL import Image, ImageOps
from replicate.exceptions import ModelError, ReplicateError
from replicate.prediction import Prediction

from aigen.server.errors import (
    CapabilityUnsupported,
    ContentRefused,
    ProviderError,
    ProviderNotConfigured,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from aigen.server.imaging import TIER_EDGE, nearest_ratio, ratio_value
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
    allowed_schemes,
    check_scheme,
    connection_limits,
    data_uri,
    download_image,
    error_for_status,
    parse_retry_after,
    transport_errors,
    with_model_id,
)

if TYPE_CHECKING:
    from aigen.server.config import Settings

log = logging.getLogger(__name__)

NAME = "replicate"
MiB = 1024 * 1024
_TERMINAL = frozenset({"succeeded", "failed", "canceled"})
_REFUSAL = re.compile(r"nsfw|safety|sensitive|flagged|moderat|\bE005\b", re.IGNORECASE)
_RETRY_IN = re.compile(r"(\d+(?:\.\d+)?)\s*sec", re.IGNORECASE)
_CANCEL_WAIT_S = 5.0
_BACKGROUND: set[asyncio.Task[None]] = set()
# The SDK drops response headers from its errors; this keeps the last 429's Retry-After.
_RETRY_AFTER: contextvars.ContextVar[str | None] = contextvars.ContextVar("replicate_retry_after", default=None)


@dataclass(frozen=True, slots=True)
class _Inputs:
    """How one model's input schema spells each request field (None: the model has no such field)."""

    image: str | None = None  # the image to edit
    mask: str | None = None
    mask_white_keeps: bool = False  # the schema's mask is the inverse of ours (white = editable)
    reference: str | None = None
    reference_list: bool = False
    seed: str | None = "seed"
    tiers: Mapping[str, Mapping[str, object]] = field(default_factory=dict)  # image_size -> inputs
    fixed: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Model:
    profile: ModelProfile
    inputs: _Inputs


_MODELS = (
    _Model(
        ModelProfile(
            provider=NAME,
            name="ideogram",
            internal_id="ideogram-ai/ideogram-v3-turbo",
            aspect_ratios=(
                *("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4"),
                *("16:10", "10:16", "2:1", "1:2", "3:1", "1:3"),
            ),
            max_reference_images=3,
            can_edit=True,
            supports_mask=True,
            typical_latency_s=8.0,
            credits_per_image=6,
            notes="Good for text in images",
        ),
        _Inputs(
            image="image",
            mask="mask",
            mask_white_keeps=True,
            reference="style_reference_images",
            reference_list=True,
        ),
    ),
    _Model(
        ModelProfile(
            provider=NAME,
            name="recraft",
            internal_id="recraft-ai/recraft-v3",
            aspect_ratios=(
                *("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4"),
                *("2:1", "1:2", "7:5", "5:7", "5:3", "3:5"),
            ),
            typical_latency_s=10.0,
            credits_per_image=8,
            notes="High-quality illustrations",
        ),
        _Inputs(seed=None),
    ),
    _Model(
        ModelProfile(
            provider=NAME,
            name="flux-dev",
            internal_id="black-forest-labs/flux-dev",
            aspect_ratios=("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"),
            image_sizes=("512", "1K"),
            can_edit=True,
            reports_progress=True,
            typical_latency_s=6.0,
            credits_per_image=5,
            notes="Artistic",
        ),
        _Inputs(
            image="image",
            tiers={"512": {"megapixels": "0.25"}, "1K": {"megapixels": "1"}},
            fixed={"num_outputs": 1, "output_format": "png"},
        ),
    ),
    _Model(
        ModelProfile(
            provider=NAME,
            name="flux-pro",
            internal_id="black-forest-labs/flux-1.1-pro",
            aspect_ratios=("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"),
            max_reference_images=1,  # `image_prompt` guides composition; it does not edit
            typical_latency_s=8.0,
            credits_per_image=8,
            notes="Highest quality",
        ),
        _Inputs(reference="image_prompt", fixed={"output_format": "png"}),
    ),
)


@register
class ReplicateProvider(ImageProvider):
    """Models hosted on Replicate, called through the official SDK's async API."""

    name = NAME
    description = "Replicate: Ideogram v3 Turbo, Recraft v3, FLUX.1 [dev], FLUX1.1 [pro]."
    credential_env = "REPLICATE_API_TOKEN"

    def __init__(
        self,
        api_token: str = "",
        *,
        base_url: str = "",
        model_ids: Mapping[str, str] | None = None,
        max_download_bytes: int = 64 * MiB,
        max_connections: int = 4096,
        poll_interval_s: float = 0.5,
        timeout_s: float = 30.0,
        inline_limit_bytes: int = MiB,
    ) -> None:
        self._token = api_token
        ids = model_ids or {}  # "replicate/flux-pro" wins over "flux-pro"
        self._models = tuple(replace(model, profile=with_model_id(model.profile, ids)) for model in _MODELS)
        self._client = _sdk_client(api_token, base_url, timeout_s)
        self._downloads = httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=True, limits=connection_limits(max_connections, httpx.Limits)
        )
        self._max_download_bytes = max_download_bytes
        self._poll_interval_s = poll_interval_s
        self._timeout_s = timeout_s
        self._inline_limit_bytes = inline_limit_bytes
        self._schemes = allowed_schemes(base_url, "data")

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> ReplicateProvider:
        """Token, base URL, model ids and download cap from settings; `options` tune polling."""
        return cls(
            settings.replicate_api_token,
            base_url=settings.replicate_base_url,
            model_ids=settings.model_ids,
            max_download_bytes=settings.max_download_bytes,
            max_connections=settings.provider_max_connections,
            **options,
        )

    def models(self) -> Sequence[ModelProfile]:
        """Ideogram, Recraft, FLUX.1 [dev] and FLUX1.1 [pro]."""
        return tuple(model.profile for model in self._models)

    @property
    def configured(self) -> bool:
        """True with an API token."""
        return bool(self._token)

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        """Run one prediction and download its image."""
        model = self._find(request.model)
        if not self.configured:
            raise ProviderNotConfigured("replicate: REPLICATE_API_TOKEN is not set")
        payload, notes = await asyncio.to_thread(_plan_input, model, request)
        payload = await self._encode_files(payload)
        prediction = await self._predict(model.profile.internal_id, payload, progress)
        data, mime_type = await self._download(_output_url(prediction.output))
        return ImageResult(data=data, mime_type=mime_type, degradations=tuple(notes))

    async def aclose(self) -> None:
        """Close the SDK's and the download HTTP clients."""
        await self._client._async_client.aclose()
        await self._downloads.aclose()

    def _find(self, name: str) -> _Model:
        for model in self._models:
            if name in model.profile.names():
                return model
        raise CapabilityUnsupported(f"replicate has no model {name!r}")

    async def _encode_files(self, payload: dict[str, object]) -> dict[str, object]:
        """Replace images by data URIs (small) or by the URL of an upload (large)."""
        encoded: dict[str, object] = {}
        for key, value in payload.items():
            if isinstance(value, InputImage):
                encoded[key] = await self._file_input(value)
            elif isinstance(value, list):
                encoded[key] = [await self._file_input(item) for item in value]
            else:
                encoded[key] = value
        return encoded

    async def _file_input(self, image: InputImage) -> str:
        if len(image.data) <= self._inline_limit_bytes:
            return data_uri(image)
        extension = image.mime_type.rpartition("/")[2] or "bin"
        with _translated("uploading an input image"):
            async with asyncio.timeout(self._timeout_s):
                uploaded = await self._client.files.async_create(
                    io.BytesIO(image.data), filename=f"input.{extension}", content_type=image.mime_type
                )
            return uploaded.urls["get"]

    async def _predict(self, model_id: str, payload: dict[str, object], progress: ProgressCallback) -> Prediction:
        """Create the prediction and wait for it; cancel it remotely when this task is cancelled."""
        created = asyncio.ensure_future(self._create(model_id, payload))
        try:
            prediction = await asyncio.shield(created)
            return await self._wait(prediction, progress)
        except asyncio.CancelledError:
            await _cancel_quietly(created)
            raise

    async def _create(self, model_id: str, payload: dict[str, object]) -> Prediction:
        # The SDK sends creations and uploads without a timeout; bound them here.
        with _translated("creating a prediction"):
            async with asyncio.timeout(self._timeout_s):
                return await self._client.models.predictions.async_create(model=model_id, input=payload)

    async def _wait(self, prediction: Prediction, progress: ProgressCallback) -> Prediction:
        report = _Reporter(progress)
        report(prediction)
        while prediction.status not in _TERMINAL:
            await asyncio.sleep(self._poll_interval_s)
            with _translated("polling a prediction"):
                await prediction.async_reload()
            report(prediction)
        return _succeeded(prediction)

    async def _download(self, url: str) -> tuple[bytes, str]:
        """The output image: a data URI, or a URL fetched within the size cap."""
        check_scheme(url, self._schemes, NAME, "output")
        with _translated("downloading the image"):
            return await download_image(self._downloads, url, self._max_download_bytes, NAME)


class _Reporter:
    """Calls the progress callback on each poll whose progress differs from the last one."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._last: Progress | None = None

    def __call__(self, prediction: Prediction) -> None:
        measured = prediction.progress
        if measured is None:
            update = Progress(message=f"replicate: {prediction.status}")
        else:
            update = Progress(percent=measured.percentage * 100, message=f"step {measured.current}/{measured.total}")
        if update != self._last:
            self._last = update
            self._callback(update)


def _sdk_client(token: str, base_url: str, timeout_s: float) -> replicate.Client:
    client = replicate.Client(
        api_token=token or None,
        base_url=base_url or None,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
        event_hooks={"response": [_remember_retry_after]},
    )
    client._async_client._transport.max_attempts = 1  # no hidden retries: the engine owns them
    return client


async def _remember_retry_after(response: httpx.Response) -> None:
    _RETRY_AFTER.set(response.headers.get("retry-after") if response.status_code == 429 else None)


# Building the input ------------------------------------------------------------------------------


def _plan_input(model: _Model, request: ImageRequest) -> tuple[dict[str, object], list[str]]:
    """The model's input for `request` (images still as InputImage) and what it could not honour."""
    profile, inputs = model.profile, model.inputs
    notes: list[str] = []
    payload: dict[str, object] = {"prompt": request.prompt, **inputs.fixed}
    payload.update(inputs.tiers.get(_tier(profile, request.image_size, notes), {}))
    if request.source_image is not None:
        payload.update(_edit_input(model, request, notes))
    else:
        payload["aspect_ratio"] = _ratio(profile, request.aspect_ratio, notes)
        if request.size:
            notes.append(f"size {request.size} -> {payload['aspect_ratio']} on {profile.name}")
    payload.update(_reference_input(model, request.reference_images))
    if request.seed is not None and inputs.seed:
        payload[inputs.seed] = request.seed
    elif request.seed is not None:
        notes.append(f"seed ignored on {profile.name}")
    return payload, notes


def _ratio(profile: ModelProfile, requested: str, notes: list[str]) -> str:
    if requested in profile.aspect_ratios:
        return requested
    ratio = nearest_ratio(ratio_value(requested), profile.aspect_ratios)
    notes.append(f"aspect_ratio {requested} -> {ratio} on {profile.name}")
    return ratio


def _tier(profile: ModelProfile, requested: str, notes: list[str]) -> str:
    if requested in profile.image_sizes:
        return requested
    tier = min(profile.image_sizes, key=lambda t: abs(TIER_EDGE[t] - TIER_EDGE.get(requested, 1024)))
    notes.append(f"image_size {requested} -> {tier} on {profile.name}")
    return tier


def _edit_input(model: _Model, request: ImageRequest, notes: list[str]) -> dict[str, object]:
    """The image to edit and its mask. Edits keep the source image's shape."""
    profile, inputs, source = model.profile, model.inputs, request.source_image
    assert source is not None
    if inputs.image is None:
        raise CapabilityUnsupported(f"replicate/{profile.name} cannot edit images")
    width, height = _dimensions(source)
    if abs(math.log(width / height / ratio_value(request.aspect_ratio))) > 0.02:
        notes.append(f"aspect_ratio {request.aspect_ratio} -> {width}x{height} of the edited image on {profile.name}")
    payload: dict[str, object] = {inputs.image: source}
    if inputs.mask is not None:
        if request.mask is None:
            notes.append(f"no mask: the whole image is editable on {profile.name}")
        payload[inputs.mask] = _mask(request.mask, (width, height), inputs.mask_white_keeps)
    elif request.mask is not None:
        notes.append(f"mask ignored on {profile.name}")
    return payload


def _reference_input(model: _Model, references: Sequence[InputImage]) -> dict[str, object]:
    profile, inputs = model.profile, model.inputs
    if not references:
        return {}
    if inputs.reference is None or len(references) > profile.max_reference_images:
        raise CapabilityUnsupported(
            f"replicate/{profile.name} takes at most {profile.max_reference_images} reference images, "
            f"got {len(references)}"
        )
    return {inputs.reference: list(references) if inputs.reference_list else references[0]}


def _dimensions(image: InputImage) -> tuple[int, int]:
    with _opened(image, "the image to edit") as opened:
        return opened.size


def _mask(mask: InputImage | None, size: tuple[int, int], white_keeps: bool) -> InputImage:
    """Our mask (white = editable) in the schema's convention; no mask makes everything editable."""
    if mask is not None and not white_keeps:
        return mask
    if mask is None:
        grey = Image.new("L", size, 0 if white_keeps else 255)
    else:
        with _opened(mask, "the mask") as opened:
            grey = ImageOps.invert(opened.convert("L"))
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    return InputImage(buffer.getvalue(), "image/png")


@contextlib.contextmanager
def _opened(image: InputImage, what: str) -> Iterator[Image.Image]:
    try:
        with Image.open(io.BytesIO(image.data)) as opened:
            yield opened
    except OSError as exc:
        raise ProviderRejected(f"replicate: {what} cannot be decoded") from exc


# Reading the outcome -----------------------------------------------------------------------------


def _succeeded(prediction: Prediction) -> Prediction:
    if prediction.status == "succeeded":
        return prediction
    if prediction.status == "canceled":
        raise ProviderUnavailable(f"replicate: prediction {prediction.id} was canceled")
    raise _failure(str(prediction.error or "no error message"))


def _failure(error: str) -> ProviderError:
    if _REFUSAL.search(error):
        return ContentRefused(f"replicate refused the content: {error[:300]}")
    return ProviderUnavailable(f"replicate: the prediction failed: {error[:300]}")


def _output_url(output: object) -> str:
    """The first output: a URI string, or a list of them (FileOutput objects carry `.url`)."""
    if isinstance(output, list):
        output = output[0] if output else None
    url = getattr(output, "url", output)
    if not isinstance(url, str) or not url:
        raise ProviderUnavailable("replicate: the prediction returned no image")
    return url


# Errors ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """Turn SDK and transport exceptions raised while doing `action` into ProviderError subclasses."""
    with transport_errors(NAME, action):
        try:
            yield
        except ReplicateError as exc:
            raise _api_error(exc) from exc
        except ModelError as exc:
            raise _failure(str(exc.prediction.error or exc)) from exc
        except TimeoutError as exc:  # asyncio.timeout around an SDK call
            raise ProviderTimeout(f"replicate: timed out {action}") from exc
        except (ValueError, TypeError, KeyError) as exc:  # malformed JSON or a prediction missing fields
            raise ProviderUnavailable(f"replicate: malformed answer while {action}") from exc


def _api_error(exc: ReplicateError) -> ProviderError:
    status = exc.status or 0
    if status == 402:
        return ProviderNotConfigured(f"replicate: the account is out of credit (HTTP 402): {exc.detail or ''}")
    message = f"replicate: {exc.detail or exc.title or 'error'} (HTTP {status})"
    retry_after = _retry_after(_RETRY_AFTER.get(), exc.detail or "")
    return error_for_status(status, message, retry_after=retry_after, transient_4xx=True)


def _retry_after(header: str | None, detail: str) -> float | None:
    """Seconds from a Retry-After header (seconds or HTTP date), else from "available in N seconds"."""
    seconds = parse_retry_after(header)
    if seconds is not None:
        return seconds
    found = _RETRY_IN.search(detail)
    return float(found.group(1)) if found else None


# Cancellation ------------------------------------------------------------------------------------


async def _cancel_quietly(created: asyncio.Future[Prediction]) -> None:
    """Cancel the prediction once it exists; wait a little, never raise (shielded, best effort)."""
    task = asyncio.ensure_future(_cancel_remote(created))
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), _CANCEL_WAIT_S)


async def _cancel_remote(created: asyncio.Future[Prediction]) -> None:
    try:
        prediction = await created
        if prediction.status not in _TERMINAL:
            await prediction.async_cancel()
    except Exception as exc:  # best effort: the caller is gone either way
        log.debug("could not cancel a replicate prediction: %r", exc)
