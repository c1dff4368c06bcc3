"""Reference images from paths, bytes or PIL images, as typed ImageData messages."""

from __future__ import annotations

import io
import mimetypes
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union

from aigen.v1 import types_pb2

ReferenceImage = Union[str, Path, bytes, bytearray, memoryview, "types_pb2.ImageData", Any]
"""A path, encoded bytes, a PIL image, or an ImageData message."""


def _pil_bytes(image: Any) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


def _path_bytes(path: Path) -> tuple[bytes, str]:
    mime, _ = mimetypes.guess_type(path.name)
    return path.read_bytes(), mime if mime and mime.startswith("image/") else ""


def to_image_data(reference: ReferenceImage) -> types_pb2.ImageData:
    """One reference image as ImageData (the server sniffs the type when it is empty)."""
    if isinstance(reference, types_pb2.ImageData):
        return reference
    if isinstance(reference, str | Path):
        data, mime = _path_bytes(Path(reference))
    elif isinstance(reference, bytes | bytearray | memoryview):
        data, mime = bytes(reference), ""
    elif hasattr(reference, "save") and hasattr(reference, "mode"):
        data, mime = _pil_bytes(reference)
    else:
        raise TypeError(f"reference images are paths, bytes or PIL images, not {type(reference).__name__}")
    return types_pb2.ImageData(data=data, mime_type=mime)


def to_image_data_list(references: Iterable[ReferenceImage] | None) -> list[types_pb2.ImageData]:
    """Every reference image as ImageData."""
    return [to_image_data(reference) for reference in references or ()]
