"""Scripted image providers for tests: deterministic, offline, observable.

`ScriptedProvider` follows a per-call script. Each call to `generate` takes the next step
(the last step repeats once the script is exhausted; an empty script always succeeds):

- `Succeed(delay=0, report_every=None, measured=False)`: optionally work for `delay`
  seconds reporting Progress every `report_every` seconds (with a percent when
  `measured`, without one otherwise), then return a real PNG of request.width x height.
- `Fail(error, delay=0)` or a bare ProviderError instance: raise it (after `delay`).
- `Hang()`: wait until cancelled; the cancellation is recorded, then propagated.

Every request received is kept in `calls` (with its arrival time in `call_times`), so tests
can assert what reached the provider. `configured` can be switched at any time.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageOps

from aigen.server.errors import ProviderError
from aigen.server.providers.base import (
    ALL_ASPECT_RATIOS,
    ALL_IMAGE_SIZES,
    ImageProvider,
    ImageRequest,
    ImageResult,
    ModelProfile,
    Progress,
    ProgressCallback,
)


@dataclass(frozen=True)
class Succeed:
    """Return a PNG, optionally after `delay` seconds of reported work."""

    delay: float = 0.0
    report_every: float | None = None
    measured: bool = False
    revised_prompt: str = ""


@dataclass(frozen=True)
class Fail:
    """Raise `error`, optionally after `delay` seconds."""

    error: ProviderError
    delay: float = 0.0


@dataclass(frozen=True)
class Hang:
    """Never answer; record the cancellation when it comes."""


Step = Succeed | Fail | Hang | ProviderError


def png_bytes(width: int, height: int, color: tuple[int, int, int] = (40, 120, 200), fmt: str = "PNG") -> bytes:
    """A real encoded image of the given size."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt)
    return buffer.getvalue()


def profile(
    provider: str,
    name: str,
    *,
    can_edit: bool = True,
    max_reference_images: int = 14,
    reports_progress: bool = False,
    typical_latency_s: float = 1.0,
    **kwargs,
) -> ModelProfile:
    """A permissive model profile (every ratio and size) unless told otherwise."""
    kwargs.setdefault("aspect_ratios", ALL_ASPECT_RATIOS)
    kwargs.setdefault("image_sizes", ALL_IMAGE_SIZES)
    return ModelProfile(
        provider=provider,
        name=name,
        internal_id=f"{provider}-{name}-internal",
        can_edit=can_edit,
        max_reference_images=max_reference_images,
        reports_progress=reports_progress,
        typical_latency_s=typical_latency_s,
        **kwargs,
    )


@dataclass
class ScriptedProvider(ImageProvider):
    """A provider whose every call follows the next step of `script`."""

    provider_name: str
    model_profiles: Sequence[ModelProfile] = ()
    script: list[Step] = field(default_factory=list)
    is_configured: bool = True
    calls: list[ImageRequest] = field(default_factory=list)
    call_times: list[float] = field(default_factory=list)
    cancelled: list[ImageRequest] = field(default_factory=list)
    completed: list[ImageRequest] = field(default_factory=list)
    credential_env = "SCRIPTED_API_KEY"
    description = "Scripted test provider"

    def __post_init__(self) -> None:
        if not self.model_profiles:
            self.model_profiles = (profile(self.provider_name, f"{self.provider_name}-1"),)
        self._position = 0
        self._called = asyncio.Event()
        self._cancelled = asyncio.Event()

    @property
    def name(self) -> str:  # type: ignore[override]
        """Provider name used in requests."""
        return self.provider_name

    @classmethod
    def from_settings(cls, settings) -> ScriptedProvider:
        """Not built from settings; tests construct it directly."""
        raise NotImplementedError

    def models(self) -> Sequence[ModelProfile]:
        """The declared profiles."""
        return tuple(self.model_profiles)

    @property
    def configured(self) -> bool:
        """Switchable with `is_configured`."""
        return self.is_configured

    def next_step(self) -> Step:
        """The step for the next call (the last one repeats)."""
        if not self.script:
            return Succeed()
        step = self.script[min(self._position, len(self.script) - 1)]
        self._position += 1
        return step

    async def wait_called(self, count: int = 1, within: float = 5.0) -> None:
        """Wait until `generate` has been entered at least `count` times."""
        async with asyncio.timeout(within):
            while len(self.calls) < count:
                self._called.clear()
                await self._called.wait()

    async def wait_cancelled(self, within: float = 5.0) -> None:
        """Wait until a call was cancelled."""
        async with asyncio.timeout(within):
            await self._cancelled.wait()

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        """Follow the script."""
        self.calls.append(request)
        self.call_times.append(time.monotonic())
        self._called.set()
        step = self.next_step()
        try:
            if isinstance(step, ProviderError):
                raise step
            if isinstance(step, Fail):
                await asyncio.sleep(step.delay)
                raise step.error
            if isinstance(step, Hang):
                await asyncio.Event().wait()
            assert isinstance(step, Succeed)
            await self._work(step, progress)
        except asyncio.CancelledError:
            self.cancelled.append(request)
            self._cancelled.set()
            raise
        self.completed.append(request)
        data = await asyncio.to_thread(png_bytes, request.width, request.height)
        return ImageResult(data=data, mime_type="image/png", revised_prompt=step.revised_prompt)

    @staticmethod
    async def _work(step: Succeed, progress: ProgressCallback) -> None:
        if step.delay <= 0:
            return
        if not step.report_every:
            await asyncio.sleep(step.delay)
            return
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < step.delay:
            percent = 100.0 * elapsed / step.delay if step.measured else None
            progress(Progress(percent=percent, message="working"))
            await asyncio.sleep(min(step.report_every, step.delay - elapsed))


class SlowProvider(ScriptedProvider):
    """Succeeds after `seconds`, reporting progress every `report_every` s (measured or not)."""

    def __init__(
        self,
        provider_name: str = "slow",
        seconds: float = 2.0,
        *,
        report_every: float | None = None,
        measured: bool = False,
        model_profiles: Sequence[ModelProfile] = (),
    ) -> None:
        super().__init__(
            provider_name,
            model_profiles,
            script=[Succeed(delay=seconds, report_every=report_every, measured=measured)],
        )


@dataclass
class RepaintingProvider(ScriptedProvider):
    """A provider that repaints the whole image and knows nothing of masks.

    An edit inverts every colour of the source image (whatever mask the request carries); a
    generation returns the next of `images` (encoded images, the last one repeats) or a flat
    PNG of the requested size. With `output_size` (width, height) every answer is resized to
    it, as a provider answering at another size would. Requests are kept in `calls`.
    """

    images: list[bytes] = field(default_factory=list)
    output_size: tuple[int, int] | None = None

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        """Invert the source image, or return the next scripted image."""
        self.calls.append(request)
        self.call_times.append(time.monotonic())
        self._called.set()
        image = self.images[min(self._position, len(self.images) - 1)] if self.images else None
        if request.source_image is None:
            self._position += 1
        data = await asyncio.to_thread(self._paint, request, image)
        self.completed.append(request)
        return ImageResult(data=data, mime_type="image/png")

    def _paint(self, request: ImageRequest, scripted: bytes | None) -> bytes:
        if request.source_image is not None:
            with Image.open(io.BytesIO(request.source_image.data)) as source:
                picture = ImageOps.invert(source.convert("RGB"))
        elif scripted is not None:
            with Image.open(io.BytesIO(scripted)) as given:
                picture = given.convert("RGB")
        else:
            picture = Image.new("RGB", (request.width, request.height), (40, 120, 200))
        if self.output_size is not None and picture.size != self.output_size:
            picture = picture.resize(self.output_size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return buffer.getvalue()
