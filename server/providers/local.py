"""The built-in local renderer: keyless and deterministic, so the gateway works offline.

It is not an AI model. It paints a scene whose colours and shapes derive from the prompt
and seed, at the requested size; an edit starts from the given image and changes it
according to the instructions, inside the mask when one is given.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageOps

from aigen.server.config import Settings
from aigen.server.errors import InvalidArgument
from aigen.server.imaging import TIER_EDGE
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

PROFILE = ModelProfile(
    provider="local",
    name="local",
    internal_id="local-renderer-1",
    aspect_ratios=ALL_ASPECT_RATIOS,
    image_sizes=tuple(TIER_EDGE),
    max_reference_images=14,
    can_edit=True,
    supports_mask=True,
    typical_latency_s=0.2,
    credits_per_image=0,
    notes="Local renderer, not an AI model: draws a deterministic scene from the prompt. Needs no key.",
    local=True,
)


@register
class LocalProvider(ImageProvider):
    """Deterministic Pillow renderer used when no provider key is configured."""

    name = "local"
    description = "Built-in local renderer (not an AI model); works offline with no key."

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalProvider:
        """The local renderer needs no settings."""
        return cls()

    def models(self) -> Sequence[ModelProfile]:
        """One model, `local`."""
        return (PROFILE,)

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        """Render (or edit) in a worker thread."""
        progress(Progress(percent=0.0, message="rendering locally"))
        data = await asyncio.to_thread(render, request)
        progress(Progress(percent=100.0, message="rendered"))
        return ImageResult(data=data, mime_type="image/png", revised_prompt="")


def render(request: ImageRequest) -> bytes:
    """Paint the image for `request` and return PNG bytes."""
    rng = random.Random(_seed(request))
    size = (request.width, request.height)
    if request.source_image is None:
        image = _scene(size, rng, request.prompt)
    else:
        source = _open_rgb(request.source_image.data).resize(size)
        edited = _edit(source, rng, request.prompt)
        image = _apply_mask(source, edited, request.mask.data if request.mask else None)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _seed(request: ImageRequest) -> int:
    text = f"{request.prompt}\x00{request.seed or 0}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big")


def _open_rgb(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise InvalidArgument("image", "the image to edit cannot be decoded") from exc


def _color(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _scene(size: tuple[int, int], rng: random.Random, prompt: str) -> Image.Image:
    """A vertical gradient sky, a few discs and rings, and the prompt as a caption."""
    width, height = size
    top, bottom = _color(rng), _color(rng)
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), gradient)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 4)):
        radius = rng.randint(min(size) // 10, min(size) // 4)
        cx, cy = rng.randint(radius, width - radius), rng.randint(radius, height - radius)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=_color(rng))
        if rng.random() < 0.5:
            ring = (cx - radius * 1.6, cy - radius * 0.35, cx + radius * 1.6, cy + radius * 0.35)
            draw.ellipse(ring, outline=_color(rng), width=max(2, radius // 10))
    _caption(draw, size, prompt)
    return image


def _edit(source: Image.Image, rng: random.Random, instructions: str) -> Image.Image:
    """Derive a new image from `source`: a tint and a new shape, plus the caption."""
    tint = Image.new("RGB", source.size, _color(rng))
    edited = Image.blend(source, tint, 0.25)
    if rng.random() < 0.5:
        edited = ImageOps.autocontrast(edited)
    draw = ImageDraw.Draw(edited)
    width, height = source.size
    radius = rng.randint(min(source.size) // 12, min(source.size) // 5)
    cx, cy = rng.randint(radius, width - radius), rng.randint(radius, height - radius)
    draw.rectangle((cx - radius, cy - radius, cx + radius, cy + radius), fill=_color(rng))
    _caption(draw, source.size, instructions)
    return edited


def _apply_mask(source: Image.Image, edited: Image.Image, mask_png: bytes | None) -> Image.Image:
    """Keep `source` where the mask is black; take `edited` where it is white."""
    if mask_png is None:
        return edited
    with Image.open(io.BytesIO(mask_png)) as mask:
        alpha = mask.convert("L").resize(source.size)
    return Image.composite(edited, source, alpha)


def _caption(draw: ImageDraw.ImageDraw, size: tuple[int, int], text: str) -> None:
    width, height = size
    band = max(14, height // 24)
    draw.rectangle((0, height - band - 8, width, height), fill=(0, 0, 0))
    draw.text((8, height - band - 4), text[:120], fill=(255, 255, 255), font_size=band - 2)
