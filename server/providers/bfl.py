"""Black Forest Labs: FLUX.2 [pro], [flex], [max] and FLUX.1 [dev] over the HTTP API (httpx).

A task is submitted to `POST {base}/v1/{model}`; its answer names a polling URL, often on
another host, polled with the same key until the task is Ready, moderated or failed. The result
is a signed URL valid for minutes, downloaded at once. Each model's size rules and image inputs
are data (`_Geometry`, `_Model`). BFL cannot cancel a task: cancelling only stops the polling.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import httpx

from aigen.server.errors import (
    CapabilityUnsupported,
    ContentRefused,
    ProviderError,
    ProviderNotConfigured,
    ProviderUnavailable,
)
from aigen.server.providers.base import (
    ALL_ASPECT_RATIOS,
    ImageProvider,
    ImageRequest,
    ImageResult,
    ModelProfile,
    Progress,
    ProgressCallback,
    register,
)
from aigen.server.providers.remote import (
    allowed_schemes,
    b64_text,
    check_scheme,
    connection_limits,
    download_image,
    error_for_status,
    parse_retry_after,
    transport_errors,
    with_model_id,
)

if TYPE_CHECKING:
    from aigen.server.config import Settings

log = logging.getLogger(__name__)

NAME = "bfl"
MiB = 1024 * 1024
_REFUSED = frozenset({"Request Moderated", "Content Moderated"})
_FAILED = frozenset({"Error", "Task not found"})


@dataclass(frozen=True, slots=True)
class _Geometry:
    """The output sizes a model accepts: sides a multiple of `multiple`, within bounds."""

    multiple: int
    min_side: int
    max_side: int | None = None
    max_pixels: int | None = None


@dataclass(frozen=True, slots=True)
class _Model:
    profile: ModelProfile
    geometry: _Geometry
    image_fields: tuple[str, ...] = ()  # image to edit first, then references
    reference_field: str | None = None  # a single guiding image, for models that cannot edit


_FLUX2_GEOMETRY = _Geometry(multiple=16, min_side=64, max_pixels=2048 * 2048)
_FLUX2_IMAGES = ("input_image", *(f"input_image_{n}" for n in range(2, 9)))


def _flux2(name: str, latency_s: float, credits: int, notes: str) -> _Model:
    profile = ModelProfile(
        provider=NAME,
        name=name,
        internal_id=name,
        aspect_ratios=ALL_ASPECT_RATIOS,
        image_sizes=("512", "1K", "2K"),
        max_reference_images=len(_FLUX2_IMAGES),
        can_edit=True,
        reports_progress=True,
        typical_latency_s=latency_s,
        credits_per_image=credits,
        notes=notes,
    )
    return _Model(profile, _FLUX2_GEOMETRY, image_fields=_FLUX2_IMAGES)


_MODELS = (
    _flux2("flux-2-pro", 10.0, 6, "FLUX.2 [pro]: fast, high quality; edits with up to 8 images"),
    _flux2("flux-2-flex", 20.0, 10, "FLUX.2 [flex]: best typography and fine detail; slower"),
    _flux2("flux-2-max", 20.0, 14, "FLUX.2 [max]: highest quality"),
    _Model(
        ModelProfile(
            provider=NAME,
            name="flux-dev",
            internal_id="flux-dev",
            aspect_ratios=ALL_ASPECT_RATIOS,
            image_sizes=("512", "1K"),
            max_reference_images=1,  # `image_prompt` guides the result; it does not edit
            reports_progress=True,
            typical_latency_s=8.0,
            credits_per_image=5,
            notes="FLUX.1 [dev]: open-weights model, up to 1440 px a side",
        ),
        _Geometry(multiple=32, min_side=256, max_side=1440),
        reference_field="image_prompt",
    ),
)


@register
class BflProvider(ImageProvider):
    """FLUX models from Black Forest Labs' own API."""

    name = NAME
    description = "Black Forest Labs: FLUX.2 [pro], [flex], [max] and FLUX.1 [dev]."
    credential_env = "BFL_API_KEY"

    def __init__(
        self,
        api_key: str = "",
        *,
        base_url: str = "https://api.bfl.ai",
        model_ids: Mapping[str, str] | None = None,
        max_download_bytes: int = 64 * MiB,
        max_connections: int = 4096,
        poll_interval_s: float = 0.5,
        timeout_s: float = 30.0,
    ) -> None:
        self._key = api_key
        self._base_url = (base_url or "https://api.bfl.ai").rstrip("/")
        ids = model_ids or {}  # "bfl/flux-dev" wins over "flux-dev"
        self._models = tuple(replace(model, profile=with_model_id(model.profile, ids)) for model in _MODELS)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=connection_limits(max_connections, httpx.Limits),
        )
        self._max_download_bytes = max_download_bytes
        self._poll_interval_s = poll_interval_s
        self._schemes = allowed_schemes(self._base_url)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> BflProvider:
        """Key, base URL, model ids and download cap from settings; `options` tune polling."""
        return cls(
            settings.bfl_api_key,
            base_url=settings.bfl_base_url,
            model_ids=settings.model_ids,
            max_download_bytes=settings.max_download_bytes,
            max_connections=settings.provider_max_connections,
            **options,
        )

    def models(self) -> Sequence[ModelProfile]:
        """FLUX.2 [pro], [flex], [max] and FLUX.1 [dev]."""
        return tuple(model.profile for model in self._models)

    @property
    def configured(self) -> bool:
        """True with an API key."""
        return bool(self._key)

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        """Submit a task, poll it until Ready, download the sample."""
        model = self._find(request.model)
        if not self.configured:
            raise ProviderNotConfigured("bfl: BFL_API_KEY is not set")
        body, notes = _body(model, request)
        polling_url = await self._submit(model.profile.internal_id, body)
        sample_url = await self._poll(polling_url, progress)
        data, mime_type = await self._download(sample_url)
        return ImageResult(data=data, mime_type=mime_type, degradations=tuple(notes))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    def _find(self, name: str) -> _Model:
        for model in self._models:
            if name in model.profile.names():
                return model
        raise CapabilityUnsupported(f"bfl has no model {name!r}")

    def _check_scheme(self, url: str, what: str) -> None:
        check_scheme(url, self._schemes, NAME, what)

    async def _submit(self, model_id: str, body: dict[str, object]) -> str:
        with transport_errors(NAME, "submitting a task"):
            response = await self._http.post(f"{self._base_url}/v1/{model_id}", json=body, headers=self._headers())
            polling_url = _json(response).get("polling_url")
        if not isinstance(polling_url, str) or not polling_url:
            raise ProviderUnavailable("bfl: the answer to a submission has no polling_url")
        self._check_scheme(polling_url, "polling")
        return polling_url

    async def _poll(self, polling_url: str, progress: ProgressCallback) -> str:
        """Poll until Ready and return the sample URL; cancellation simply stops polling."""
        while True:
            await asyncio.sleep(self._poll_interval_s)
            with transport_errors(NAME, "polling a task"):
                answer = _json(await self._http.get(polling_url, headers=self._headers()))
            status = answer.get("status")
            if status == "Ready":
                return _sample_url(answer)
            if status in _REFUSED:
                raise ContentRefused(f"bfl refused the content: {status}")
            if status in _FAILED or not isinstance(status, str):
                raise ProviderUnavailable(f"bfl: the task ended with status {status!r}: {_details(answer)}")
            progress(_progress_of(answer, status))

    async def _download(self, url: str) -> tuple[bytes, str]:
        """Fetch the signed sample URL (no key: it is another host) within the size cap."""
        self._check_scheme(url, "sample")
        with transport_errors(NAME, "downloading the image"):
            return await download_image(self._http, url, self._max_download_bytes, NAME)

    def _headers(self) -> dict[str, str]:
        return {"x-key": self._key, "accept": "application/json"}


# Building the request ----------------------------------------------------------------------------


def _body(model: _Model, request: ImageRequest) -> tuple[dict[str, object], list[str]]:
    """The JSON body for `request` and what the model could not honour."""
    name = model.profile.name
    notes: list[str] = []
    width, height = _fit_size(request.width, request.height, model.geometry)
    if (width, height) != (request.width, request.height):
        notes.append(f"size {request.width}x{request.height} -> {width}x{height} on {name}")
    body: dict[str, object] = {"prompt": request.prompt, "width": width, "height": height, "output_format": "png"}
    body.update(_image_inputs(model, request))
    if request.mask is not None:
        notes.append(f"mask ignored on {name}")
    if request.seed is not None:
        body["seed"] = request.seed
    return body, notes


def _image_inputs(model: _Model, request: ImageRequest) -> dict[str, str]:
    """The image to edit and the references, base64-encoded, in the model's fields."""
    label = f"bfl/{model.profile.name}"
    if request.source_image is not None and not model.image_fields:
        raise CapabilityUnsupported(f"{label} cannot edit images")
    images = [*([request.source_image] if request.source_image else []), *request.reference_images]
    fields = model.image_fields or ((model.reference_field,) if model.reference_field else ())
    if len(images) > len(fields):
        raise CapabilityUnsupported(f"{label} takes at most {len(fields)} images in all, got {len(images)}")
    return {field: b64_text(image.data) for field, image in zip(fields, images, strict=False)}


def _fit_size(width: int, height: int, geometry: _Geometry) -> tuple[int, int]:
    """The accepted size nearest to width x height, keeping its shape as far as the rules allow."""
    scale = 1.0
    if geometry.max_pixels and width * height > geometry.max_pixels:
        scale = math.sqrt(geometry.max_pixels / (width * height))
    if geometry.max_side:
        scale = min(scale, geometry.max_side / max(width, height))
    scale = max(scale, geometry.min_side / min(width, height))
    fitted = [_snap(side * scale, geometry, math.floor if scale < 1 else round) for side in (width, height)]
    while geometry.max_pixels and fitted[0] * fitted[1] > geometry.max_pixels:
        larger = 0 if fitted[0] >= fitted[1] else 1
        fitted[larger] -= geometry.multiple
    return fitted[0], fitted[1]


def _snap(value: float, geometry: _Geometry, rounding: Any) -> int:
    side = int(rounding(value / geometry.multiple)) * geometry.multiple
    return min(max(side, geometry.min_side), geometry.max_side or side)


# Reading answers ---------------------------------------------------------------------------------


def _json(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer; errors and malformed answers become ProviderErrors."""
    if response.status_code >= 400:
        raise _http_error(response)
    try:
        answer = response.json()
    except ValueError as exc:
        raise ProviderUnavailable("bfl: the answer is not JSON") from exc
    if not isinstance(answer, dict):
        raise ProviderUnavailable("bfl: the answer is not a JSON object")
    return answer


def _sample_url(answer: Mapping[str, Any]) -> str:
    result = answer.get("result")
    sample = result.get("sample") if isinstance(result, dict) else None
    if not isinstance(sample, str) or not sample:
        raise ProviderUnavailable("bfl: a Ready task has no result.sample")
    return sample


def _progress_of(answer: Mapping[str, Any], status: str) -> Progress:
    measured = answer.get("progress")
    if isinstance(measured, int | float) and not isinstance(measured, bool):
        return Progress(percent=max(0.0, min(100.0, measured * 100)), message=f"bfl: {status}")
    return Progress(message=f"bfl: {status}")


def _details(answer: Mapping[str, Any]) -> str:
    return str(answer.get("details") or answer.get("detail") or "no details")[:300]


# Errors ------------------------------------------------------------------------------------------


def _http_error(response: httpx.Response) -> ProviderError:
    status, detail = response.status_code, _error_detail(response)
    if status == 402:
        return ProviderNotConfigured(f"bfl: the account is out of credits (HTTP 402): {detail}")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return error_for_status(status, f"bfl: {detail} (HTTP {status})", retry_after=retry_after, transient_4xx=True)


def _error_detail(response: httpx.Response) -> str:
    """BFL's `detail`: a string, or FastAPI's list of validation errors."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:200] or response.reason_phrase
    if isinstance(detail, list):
        detail = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
    return str(detail or response.reason_phrase)[:300]
