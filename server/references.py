"""Reference images from requests: the three REST forms and the typed gRPC form.

REST callers send `referenceImages` as google.protobuf.Value items: a raw base64 string
(assumed PNG, sniffed anyway), a data URI, or a `{data, mimeType}` object. gRPC callers
send `referenceImageData` as bytes with a MIME type. Both end as InputImage values.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

import pybase64
from google.protobuf import struct_pb2

from aigen.server.errors import InvalidArgument
from aigen.server.imaging import inspect_image
from aigen.server.providers.base import InputImage
from aigen.v1 import types_pb2


def decode_reference_images(
    values: Sequence[struct_pb2.Value],
    typed: Sequence[types_pb2.ImageData],
    *,
    max_count: int,
    max_bytes: int,
    max_pixels: int,
) -> tuple[InputImage, ...]:
    """Validate and decode every reference image; errors name the offending element."""
    total = len(values) + len(typed)
    if total > max_count:
        field = "referenceImages" if values else "referenceImageData"
        raise InvalidArgument(field, f"{total} reference images; at most {max_count} are allowed")
    images = [_from_value(value, f"referenceImages[{i}]", max_bytes) for i, value in enumerate(values)]
    images += [(item.data, f"referenceImageData[{i}]") for i, item in enumerate(typed)]
    return tuple(_checked(data, field, max_bytes, max_pixels) for data, field in images)


def _checked(data: bytes, field: str, max_bytes: int, max_pixels: int) -> InputImage:
    info = inspect_image(data, field, max_bytes, max_pixels)
    return InputImage(data=data, mime_type=info.mime_type)


def _from_value(value: struct_pb2.Value, field: str, max_bytes: int) -> tuple[bytes, str]:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        text = value.string_value
        if text.startswith("data:"):
            text = _data_uri_payload(text, field)
        return _b64(text, field, max_bytes), field
    if kind == "struct_value":
        fields = value.struct_value.fields
        data = fields.get("data")
        if data is None or data.WhichOneof("kind") != "string_value":
            raise InvalidArgument(field, "an object reference image needs a base64 string in 'data'")
        text = data.string_value
        if text.startswith("data:"):
            text = _data_uri_payload(text, field)
        return _b64(text, f"{field}.data", max_bytes), field
    raise InvalidArgument(field, "expected a base64 string, a data URI or an object {data, mimeType}")


def _data_uri_payload(uri: str, field: str) -> str:
    header, sep, payload = uri.partition(",")
    if not sep or not header.endswith(";base64"):
        raise InvalidArgument(field, "data URIs must look like data:image/png;base64,...")
    return payload


def _b64(text: str, field: str, max_bytes: int) -> bytes:
    if len(text) * 3 // 4 > max_bytes + 3:
        raise InvalidArgument(field, f"image is larger than {max_bytes} bytes")
    compact = "".join(text.split())
    try:
        return pybase64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        try:  # the URL-safe alphabet, validated too: garbage must not decode to a few stray bytes
            return pybase64.b64decode(compact + "=" * (-len(compact) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(field, "not valid base64") from None
