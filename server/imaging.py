"""Image facts the gateway needs without decoding pixels: type, size, limits, target sizes.

Every function here is synchronous and may be slow on large inputs: call it through
`asyncio.to_thread` from request handlers.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from aigen.server.errors import InvalidArgument

ASPECT_ALIASES = {"story": "9:16", "feed": "4:5"}
TIER_EDGE = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}
SUPPORTED_MIME = {"image/png", "image/jpeg", "image/webp", "image/gif"}
MIN_EDGE, MAX_EDGE = 64, 8192


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header of an encoded image says."""

    mime_type: str
    width: int
    height: int


def inspect_image(data: bytes, field: str, max_bytes: int, max_pixels: int) -> ImageInfo:
    """Identify an encoded image and enforce byte and pixel limits before any decoding.

    Only the header is parsed, so a decompression bomb is refused without inflating it;
    a truncated or corrupt body is then caught by a full verify pass.
    """
    if len(data) > max_bytes:
        raise InvalidArgument(field, f"image is {len(data)} bytes; the limit is {max_bytes}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidArgument(field, f"image is {width}x{height} pixels; the limit is {max_pixels} pixels")
            mime_type = Image.MIME.get(image.format or "", "")
            image.verify()
    except InvalidArgument:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidArgument(field, "not a decodable image") from exc
    if mime_type not in SUPPORTED_MIME:
        raise InvalidArgument(field, f"unsupported image type {mime_type or 'unknown'}; use PNG, JPEG, WebP or GIF")
    return ImageInfo(mime_type, width, height)


def canonical_aspect_ratio(value: str, field: str = "aspectRatio") -> str:
    """Map the aliases (story = 9:16, feed = 4:5); anything else must be a supported ratio."""
    from aigen.server.providers.base import ALL_ASPECT_RATIOS

    ratio = ASPECT_ALIASES.get(value.strip().lower(), value.strip())
    if ratio not in ALL_ASPECT_RATIOS:
        allowed = ", ".join([*ALL_ASPECT_RATIOS, *ASPECT_ALIASES])
        raise InvalidArgument(field, f"unknown aspect ratio {value!r}; use one of {allowed}")
    return ratio


def canonical_image_size(value: str, field: str = "imageSize") -> str:
    """Normalise a size tier ("1k" -> "1K"); it must be one of 512, 1K, 2K, 4K."""
    size = value.strip().upper()
    if size not in TIER_EDGE:
        raise InvalidArgument(field, f"unknown image size {value!r}; use one of {', '.join(TIER_EDGE)}")
    return size


def parse_size(value: str, max_pixels: int, field: str = "size") -> tuple[int, int]:
    """Parse "WxH" with sane bounds."""
    try:
        width, height = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise InvalidArgument(field, f"expected WIDTHxHEIGHT such as 1024x1024, got {value!r}") from None
    if not (MIN_EDGE <= width <= MAX_EDGE and MIN_EDGE <= height <= MAX_EDGE):
        raise InvalidArgument(field, f"each side must be between {MIN_EDGE} and {MAX_EDGE} pixels")
    if width * height > max_pixels:
        raise InvalidArgument(field, f"{width}x{height} exceeds {max_pixels} pixels")
    return width, height


def ratio_value(ratio: str) -> float:
    """Width over height of a ratio such as "16:9"."""
    width, height = ratio.split(":")
    return int(width) / int(height)


def nearest_ratio(value: float, ratios: tuple[str, ...]) -> str:
    """The ratio in `ratios` closest to `value` (compared in log space)."""
    return min(ratios, key=lambda ratio: abs(math.log(ratio_value(ratio) / value)))


def target_dimensions(ratio: str, tier: str) -> tuple[int, int]:
    """Pixel size for a ratio at a tier: about tier² pixels, sides multiples of 16."""
    edge = TIER_EDGE[tier]
    value = ratio_value(ratio)
    width = math.sqrt(edge * edge * value)
    height = width / value
    return _round16(width), _round16(height)


def _round16(value: float) -> int:
    return max(16, round(value / 16) * 16)
