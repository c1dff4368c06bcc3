"""What the adapters of remote providers share: reading the wire the same way for every vendor.

The meaning of an HTTP error status, Retry-After, transport failures, base64 and data URIs,
the URL schemes an adapter accepts, capped downloads of output images, and model ids from
settings. Vendor-specific readings (error bodies, textual hints, SDK exceptions) stay in the
adapters; everything here takes the provider's name as the `label` its messages start with.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import replace
from email.utils import parsedate_to_datetime
from typing import TypeVar

import aiohttp
import httpx
import httpx2
import orjson
import pybase64

from aigen.server.errors import (
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
)
from aigen.server.providers.base import InputImage, ModelProfile

Limits = TypeVar("Limits", httpx.Limits, httpx2.Limits)

# Idle connections each provider client keeps for reuse (the OpenAI SDK's default).
KEEPALIVE_CONNECTIONS = 100

# Models and settings ------------------------------------------------------------------------------


def with_model_id(profile: ModelProfile, model_ids: Mapping[str, str]) -> ModelProfile:
    """The profile with its internal id from settings: "provider/name" wins over "name".

    A replaced default id stays an alias, so requests naming it still select the model.
    """
    configured = model_ids.get(f"{profile.provider}/{profile.name}") or model_ids.get(profile.name)
    if not configured or configured == profile.internal_id:
        return profile
    kept = (*profile.aliases, profile.internal_id)
    aliases = tuple(dict.fromkeys(name for name in kept if name not in (profile.name, configured)))
    return replace(profile, internal_id=configured, aliases=aliases)


def connection_limits(total: int, kind: type[Limits] = httpx2.Limits) -> Limits:
    """Pool limits of a provider's HTTP client (httpx2 or, with `kind`, httpx): `total` connections,
    at most KEEPALIVE_CONNECTIONS of them kept idle.
    """
    return kind(max_connections=total, max_keepalive_connections=min(total, KEEPALIVE_CONNECTIONS))


# HTTP statuses and Retry-After --------------------------------------------------------------------


def error_for_status(
    status: int, message: str, *, retry_after: float | None = None, transient_4xx: bool = False
) -> ProviderError:
    """The ProviderError an HTTP error status stands for.

    401 and 403 mean the credential is at fault, 429 a rate limit (wait `retry_after`), 400 and
    422 a request the provider will not take. Otherwise 408 and 504 are timeouts and any other
    4xx a rejection; with `transient_4xx`, for APIs that also answer passing trouble of their own
    with a 4xx, every other status is an outage. Statuses from 500 up are always outages.
    """
    if status in (401, 403):
        return ProviderNotConfigured(message)
    if status == 429:
        return ProviderRateLimited(message, retry_after=retry_after)
    if status in (400, 422):
        return ProviderRejected(message)
    if not transient_4xx:
        if status in (408, 504):
            return ProviderTimeout(message)
        if 400 <= status < 500:
            return ProviderRejected(message)
    return ProviderUnavailable(message)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After value: a number of seconds or an HTTP date."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return None


@contextlib.contextmanager
def transport_errors(label: str, action: str) -> Iterator[None]:
    """Turn httpx exceptions raised while doing `action` into ProviderError subclasses."""
    try:
        yield
    except ProviderError:
        raise
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(f"{label}: timed out {action}") from exc
    except httpx.HTTPError as exc:
        if is_connect_failure(exc):
            raise ProviderUnreachable(f"{label}: cannot connect while {action}") from exc
        raise ProviderUnavailable(f"{label}: {type(exc).__name__} while {action}") from exc


_CONNECT_FAILURES = (httpx.ConnectError, httpx2.ConnectError, aiohttp.ClientConnectorError, ConnectionRefusedError)
_TIMEOUTS = (TimeoutError, httpx.TimeoutException, httpx2.TimeoutException)


def is_connect_failure(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) is a failure to connect, not a failure mid-answer."""
    return any(isinstance(cause, _CONNECT_FAILURES) for cause in _causes(exc))


def transport_failure(label: str, exc: BaseException) -> ProviderError:
    """What a failed exchange was: no connection, no answer in time, or a connection dropped.

    Read from the whole cause chain: the aiohttp transport under the OpenAI SDK reports every
    aiohttp connection error, a peer closing the connection included, as a connect timeout.
    """
    causes = _causes(exc)
    if any(isinstance(cause, _CONNECT_FAILURES) for cause in causes):
        return ProviderUnreachable(f"{label} is unreachable (cannot connect)")
    if any(_is_dropped(cause) for cause in causes):
        return ProviderUnavailable(f"{label} dropped the connection")
    if any(isinstance(cause, _TIMEOUTS) for cause in causes):
        return ProviderTimeout(f"{label} did not answer in time")
    return ProviderUnavailable(f"{label} dropped the connection ({type(causes[-1]).__name__})")


def _is_dropped(exc: BaseException) -> bool:
    """An aiohttp connection error that is not a timeout: the peer closed or reset it."""
    return isinstance(exc, aiohttp.ClientConnectionError) and not isinstance(exc, TimeoutError)


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it, outermost first."""
    causes: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in causes):
        causes.append(current)
        current = current.__cause__ or current.__context__
    return causes


def environment_proxy(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, NO_PROXY, ...) names for `url`, if any."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


# Base64 -------------------------------------------------------------------------------------------


def b64_text(data: bytes) -> str:
    """Standard base64 of `data`, as text."""
    return pybase64.b64encode(data).decode()


def b64_bytes(text: str, *, strict: bool = True) -> bytes:
    """The bytes of base64 `text`; `strict` refuses characters outside the alphabet (ValueError)."""
    return pybase64.b64decode(text, validate=strict)


LIFTED = "!"  # not base64: stands in a document for the string `loads_lifting` decoded


def loads_lifting(raw: bytes, key: str) -> tuple[object, bytes | None]:
    """`raw` parsed as JSON, with the first string value of `key` decoded from base64 on the way.

    An image answer is one large base64 string in a small JSON document: parsing it whole makes a
    Python str of the image (checked and copied) only to decode it again. Here the string is
    decoded straight from `raw` and the rest is parsed with LIFTED in its place. Returns the
    document and those bytes; (the plain parse, None) when no such plain string is found or it
    is not valid base64. Read the value back with `lifted_bytes`: the first match need not be
    the field the caller wants.
    """
    found = _string_field(key).search(raw)
    if found is not None:
        start = found.end()
        end = raw.find(b'"', start)
        if end > 0 and raw.find(b"\\", start, end) < 0:  # base64 has no escapes
            with memoryview(raw) as view:
                try:
                    data = pybase64.b64decode(view[start:end], validate=True)
                except ValueError:
                    data = None
            if data is not None:
                return orjson.loads(b"".join((raw[:start], LIFTED.encode(), raw[end:]))), data
    return orjson.loads(raw), None


@functools.cache
def _string_field(key: str) -> re.Pattern[bytes]:
    """Where a JSON string value of `key` starts."""
    return re.compile(b'"' + re.escape(key.encode()) + rb'"\s*:\s*"')


def lifted_bytes(value: str, lifted: bytes | None) -> bytes:
    """The bytes of a base64 field of a `loads_lifting` document: the lifted ones where it stood."""
    if value == LIFTED and lifted is not None:
        return lifted
    return b64_bytes(value)


def data_uri(image: InputImage) -> str:
    """The image as a base64 data URI."""
    return f"data:{image.mime_type};base64,{b64_text(image.data)}"


# Output images ------------------------------------------------------------------------------------


def allowed_schemes(base_url: str, *also: str) -> frozenset[str]:
    """URL schemes to accept from a provider: https, and http when its API is itself plain http."""
    plain_http = (base_url or "").startswith("http://")  # a local endpoint may answer over http
    return frozenset({"https", *also, *(("http",) if plain_http else ())})


def check_scheme(url: str, schemes: frozenset[str], label: str, what: str) -> None:
    """Refuse (ProviderUnavailable) a URL from a provider's answer whose scheme is not in `schemes`."""
    scheme = url.partition(":")[0].lower()
    if scheme not in schemes:
        raise ProviderUnavailable(f"{label}: unexpected {what} URL scheme {scheme!r}")


async def download_image(client: httpx.AsyncClient, url: str, limit: int, label: str) -> tuple[bytes, str]:
    """An output image and its MIME type, from a data URI or a GET of `url`, within `limit` bytes.

    Check the scheme first; httpx exceptions propagate for the caller to translate.
    """
    if url.partition(":")[0].lower() == "data":
        return _decode_data_uri(url, limit, label)
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            raise ProviderUnavailable(f"{label}: image download answered HTTP {response.status_code}")
        data = await _read_capped(response, limit, label)
    return data, image_type(data, response.headers.get("content-type", ""), label)


def image_type(data: bytes, declared: str, label: str) -> str:
    """The image type from its first bytes, else the declared one; ProviderUnavailable if neither."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"GIF8"):
        return "image/gif"
    declared = declared.split(";")[0].strip().lower()
    if declared.startswith("image/"):
        return declared
    raise ProviderUnavailable(f"{label}: the output is not an image")


def _decode_data_uri(uri: str, limit: int, label: str) -> tuple[bytes, str]:
    header, _, payload = uri.partition(",")
    if len(payload) * 3 // 4 > limit:
        raise ProviderUnavailable(f"{label}: the image exceeds {limit} bytes")
    mime_type = header[5:].split(";")[0]
    try:
        data = b64_bytes(payload) if header.endswith(";base64") else urllib.parse.unquote_to_bytes(payload)
    except ValueError as exc:
        raise ProviderUnavailable(f"{label}: the image data URI is malformed") from exc
    return data, image_type(data, mime_type, label)


async def _read_capped(response: httpx.Response, limit: int, label: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ProviderUnavailable(f"{label}: the image is {declared} bytes; the limit is {limit}")
    chunks, total = [], 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > limit:
            raise ProviderUnavailable(f"{label}: the image exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
