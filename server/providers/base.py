"""The provider boundary: typed frozen request/result types and the ImageProvider interface.

A provider is one module: a subclass of ImageProvider registered with `@register`, that
declares its models as capability profiles (data, not branches) and turns an ImageRequest
into an ImageResult, reporting progress through a callback and raising ProviderError
subclasses (never vendor exceptions).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from aigen.server.config import Settings

ALL_ASPECT_RATIOS = ("1:1", "4:5", "9:16", "16:9", "3:2", "2:3", "3:4", "4:3", "5:4", "21:9")
ALL_IMAGE_SIZES = ("512", "1K", "2K", "4K")


@dataclass(frozen=True, slots=True)
class InputImage:
    """Encoded image bytes with their MIME type (reference image, image to edit, mask)."""

    data: bytes
    mime_type: str


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """What the engine asks a provider for. Values are validated and canonical."""

    prompt: str
    model: str  # the model's short name in this provider (ModelProfile.name)
    aspect_ratio: str = "1:1"  # canonical ratio, one of ALL_ASPECT_RATIOS
    image_size: str = "1K"  # one of ALL_IMAGE_SIZES
    width: int = 1024  # target pixels, derived from ratio and tier (or `size`)
    height: int = 1024
    size: str = ""  # explicit "WxH" the caller asked for, if any
    quality: str = "auto"
    seed: int | None = None
    reference_images: tuple[InputImage, ...] = ()
    source_image: InputImage | None = None  # the image to edit (iterate)
    mask: InputImage | None = None  # PNG, white = editable (layered mode)
    provider_state: bytes | None = None  # what this provider kept from the previous turn
    previews: bool = True  # somebody watches progress: stream previews where the provider can
    keeps_state: bool = True  # a later turn may continue this one: return provider_state


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What a provider returns: one encoded image."""

    data: bytes
    mime_type: str
    revised_prompt: str = ""
    degradations: tuple[str, ...] = ()  # e.g. "aspect_ratio 21:9 -> 16:9"
    provider_state: bytes | None = None  # kept with the turn, given back on the next one


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress report from a provider. `percent` is None when the provider cannot tell."""

    percent: float | None = None
    message: str = ""
    preview: InputImage | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """A model's identity and capabilities. The engine decides from these, never from names."""

    provider: str
    name: str  # short name used in requests
    internal_id: str  # the provider's own model id
    aliases: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = ALL_ASPECT_RATIOS
    image_sizes: tuple[str, ...] = ("1K",)
    max_reference_images: int = 0
    can_edit: bool = False
    supports_mask: bool = False
    reports_progress: bool = False
    streams_previews: bool = False
    typical_latency_s: float = 10.0
    credits_per_image: int = 1
    notes: str = ""
    local: bool = False

    def names(self) -> tuple[str, ...]:
        """Every name that selects this model."""
        return (self.name, self.internal_id, *self.aliases)


class ImageProvider(ABC):
    """One image provider. Subclasses are registered with `@register`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # Environment variable holding the credential; None for keyless providers.
    credential_env: ClassVar[str | None] = None

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> ImageProvider:
        """Build the provider from settings (credentials, base URL, model ids)."""

    @abstractmethod
    def models(self) -> Sequence[ModelProfile]:
        """The models this provider serves, with their capability profiles."""

    @property
    def configured(self) -> bool:
        """True when the provider can be called (credentials present)."""
        return True

    @abstractmethod
    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        """Produce one image; edit `request.source_image` when it is set.

        Raise ProviderError subclasses only. Cancellation (asyncio.CancelledError) must
        cancel the remote work where the provider allows it, then propagate.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections."""


_PROVIDER_CLASSES: dict[str, type[ImageProvider]] = {}


def register(cls: type[ImageProvider]) -> type[ImageProvider]:
    """Class decorator: make a provider available by its `name`."""
    _PROVIDER_CLASSES[cls.name] = cls
    return cls


def registered_provider_classes() -> dict[str, type[ImageProvider]]:
    """Every registered provider class by name (importing aigen.server.providers fills it)."""
    return dict(_PROVIDER_CLASSES)


@dataclass
class ProviderRegistry:
    """Provider instances by name, and model lookup by any of a model's names."""

    providers: dict[str, ImageProvider] = field(default_factory=dict)

    def add(self, provider: ImageProvider) -> None:
        """Add (or replace) a provider instance."""
        self.providers[provider.name] = provider

    def get(self, name: str) -> ImageProvider | None:
        """The provider called `name`, if any."""
        return self.providers.get(name)

    def find_model(self, provider: str, model: str) -> ModelProfile | None:
        """The profile of `model` (short name, internal id or alias) in `provider`."""
        instance = self.providers.get(provider)
        if instance is None:
            return None
        for profile in instance.models():
            if model in profile.names():
                return profile
        return None

    def all_models(self) -> list[ModelProfile]:
        """Every model of every provider."""
        return [profile for provider in self.providers.values() for profile in provider.models()]

    async def aclose(self) -> None:
        """Close every provider."""
        for provider in self.providers.values():
            await provider.aclose()
