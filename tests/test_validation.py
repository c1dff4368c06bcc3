"""Bad inputs: each one's status code and the BadRequest field it names."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import grpc
import pytest
from google.protobuf import duration_pb2, struct_pb2
from PIL import Image
from providers import ScriptedProvider, png_bytes
from server_harness import expect_error, running_server

from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import image_service_pb2 as image_pb2
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import types_pb2

pytestmark = pytest.mark.both_stores

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
SESSION = "<session>"  # replaced by a real session id


def bomb_png(width: int = 7000, height: int = 7000) -> bytes:
    """A valid 1-bit PNG of width x height: a few kB on disk, ~49 Mpx once decoded."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


BOMB = bomb_png()
PNG = png_bytes(16, 16)


def _b64(data: bytes) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=base64.b64encode(data).decode())


def _object(data: str) -> struct_pb2.Value:
    value = struct_pb2.Value()
    value.struct_value.update({"data": data, "mimeType": "image/png"})
    return value


@pytest.mark.no_server
def test_the_bomb_is_small_but_huge():
    assert len(BOMB) < 20_000
    with Image.open(io.BytesIO(BOMB)) as image:
        assert image.size == (7000, 7000)


def _gen(**fields) -> tuple[str, gen_pb2.GenerateRequest]:
    fields.setdefault("session_id", SESSION)
    fields.setdefault("prompt", "a cat")
    return "Generate", gen_pb2.GenerateRequest(**fields)


def _image(**fields) -> tuple[str, gen_pb2.GenerateImageRequest]:
    fields.setdefault("prompt", "a cat")
    return "GenerateImage", gen_pb2.GenerateImageRequest(**fields)


def _iter(**fields) -> tuple[str, gen_pb2.IterateRequest]:
    fields.setdefault("session_id", SESSION)
    fields.setdefault("instructions", "red")
    return "Iterate", gen_pb2.IterateRequest(**fields)


def _timeout(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


# (case id, (rpc, request), status code, BadRequest field or None, ErrorInfo reason, text in the message)
CASES = [
    ("missing prompt", _gen(prompt=""), INVALID, "prompt", "INVALID_INPUT", "required"),
    ("blank prompt", _image(prompt="   "), INVALID, "prompt", "INVALID_INPUT", "required"),
    ("missing instructions", _iter(instructions=""), INVALID, "instructions", "INVALID_INPUT", "required"),
    ("prompt too long", _gen(prompt="x" * 4001), INVALID, "prompt", "INVALID_INPUT", "4000"),
    ("instructions too long", _iter(instructions="x" * 4001), INVALID, "instructions", "INVALID_INPUT", "4000"),
    ("unknown provider", _gen(provider="dalle"), INVALID, "provider", "INVALID_INPUT", "alpha, beta"),
    ("unknown model", _gen(provider="alpha", model="nope"), INVALID, "model", "INVALID_INPUT", "alpha-1"),
    ("unknown bare model", _image(model="nope"), INVALID, "model", "INVALID_INPUT", "nope"),
    (
        "unknown fallback provider",
        _image(fallback=[types_pb2.ModelRef(provider="dalle", model="x")]),
        INVALID,
        "fallback[0].provider",
        "INVALID_INPUT",
        "alpha, beta",
    ),
    (
        "unknown fallback model",
        _gen(fallback=[types_pb2.ModelRef(provider="alpha", model="alpha-1"), types_pb2.ModelRef(model="zzz")]),
        INVALID,
        "fallback[1].model",
        "INVALID_INPUT",
        "zzz",
    ),
    ("unknown aspect ratio", _gen(aspect_ratio="7:3"), INVALID, "aspectRatio", "INVALID_INPUT", "16:9"),
    ("unknown image size", _image(image_size="8K"), INVALID, "imageSize", "INVALID_INPUT", "4K"),
    ("size not WxH", _gen(size="large"), INVALID, "size", "INVALID_INPUT", "WIDTHxHEIGHT"),
    ("size too small", _image(size="10x10"), INVALID, "size", "INVALID_INPUT", "64"),
    ("size too large", _image(size="9000x9000"), INVALID, "size", "INVALID_INPUT", "8192"),
    ("bad quality", _gen(quality="ultra"), INVALID, "quality", "INVALID_INPUT", "ultra"),
    ("negative timeout", _image(timeout=_timeout(-1)), INVALID, "timeout", "INVALID_INPUT", "positive"),
    (
        "15 typed reference images",
        _gen(reference_image_data=[types_pb2.ImageData(data=PNG)] * 15),
        INVALID,
        "referenceImageData",
        "INVALID_INPUT",
        "14",
    ),
    (
        "15 reference images",
        _image(reference_images=[_b64(PNG)] * 15),
        INVALID,
        "referenceImages",
        "INVALID_INPUT",
        "14",
    ),
    (
        "invalid base64",
        _gen(reference_images=[_b64(PNG), struct_pb2.Value(string_value="***not base64***")]),
        INVALID,
        "referenceImages[1]",
        "INVALID_INPUT",
        "base64",
    ),
    (
        "invalid base64 in an object",
        _image(reference_images=[_object("@@@@")]),
        INVALID,
        "referenceImages[0].data",
        "INVALID_INPUT",
        "base64",
    ),
    (
        "bad data URI",
        _image(reference_images=[struct_pb2.Value(string_value="data:image/png,abc")]),
        INVALID,
        "referenceImages[0]",
        "INVALID_INPUT",
        "data:",
    ),
    (
        "reference image of the wrong JSON type",
        _image(reference_images=[struct_pb2.Value(number_value=3)]),
        INVALID,
        "referenceImages[0]",
        "INVALID_INPUT",
        "base64",
    ),
    (
        "base64 of something that is not an image",
        _iter(reference_images=[_b64(b"hello, this is text")]),
        INVALID,
        "referenceImages[0]",
        "INVALID_INPUT",
        "image",
    ),
    (
        "typed bytes that are not an image",
        _image(reference_image_data=[types_pb2.ImageData(data=b"plain text", mime_type="image/png")]),
        INVALID,
        "referenceImageData[0]",
        "INVALID_INPUT",
        "image",
    ),
    (
        "decompression bomb",
        _gen(reference_image_data=[types_pb2.ImageData(data=BOMB)]),
        INVALID,
        "referenceImageData[0]",
        "INVALID_INPUT",
        "pixels",
    ),
    (
        "decompression bomb as base64",
        _image(reference_images=[_b64(BOMB)]),
        INVALID,
        "referenceImages[0]",
        "INVALID_INPUT",
        "pixels",
    ),
    ("unknown session (generate)", _gen(session_id="sess_unknown"), NOT_FOUND, None, "SESSION_NOT_FOUND", ""),
    ("unknown session (iterate)", _iter(session_id="sess_unknown"), NOT_FOUND, None, "SESSION_NOT_FOUND", ""),
    ("missing session id", _gen(session_id=""), NOT_FOUND, None, "SESSION_NOT_FOUND", ""),
    (
        "unknown session (history)",
        ("GetHistory", gen_pb2.GetHistoryRequest(session_id="sess_unknown")),
        NOT_FOUND,
        None,
        "SESSION_NOT_FOUND",
        "",
    ),
    (
        "unknown session (get)",
        ("GetSession", session_pb2.GetSessionRequest(session_id="sess_unknown")),
        NOT_FOUND,
        None,
        "SESSION_NOT_FOUND",
        "",
    ),
    (
        "missing session id (get)",
        ("GetSession", session_pb2.GetSessionRequest()),
        INVALID,
        "sessionId",
        "INVALID_INPUT",
        "",
    ),
    (
        "unknown session (delete)",
        ("DeleteSession", session_pb2.DeleteSessionRequest(session_id="sess_unknown")),
        NOT_FOUND,
        None,
        "SESSION_NOT_FOUND",
        "",
    ),
    (
        "unknown image",
        ("GetImage", image_pb2.GetImageRequest(image_id="img_unknown")),
        NOT_FOUND,
        None,
        "IMAGE_NOT_FOUND",
        "",
    ),
    ("missing image id", ("GetImage", image_pb2.GetImageRequest()), INVALID, "imageId", "INVALID_INPUT", ""),
    (
        "bad mode",
        ("CreateSession", session_pb2.CreateSessionRequest(mode="poster")),
        INVALID,
        "mode",
        "INVALID_INPUT",
        "single",
    ),
    (
        "negative page size",
        ("ListSessions", session_pb2.ListSessionsRequest(page_size=-1)),
        INVALID,
        "pageSize",
        "INVALID_INPUT",
        "",
    ),
    (
        "bad page token",
        ("ListSessions", session_pb2.ListSessionsRequest(page_token="%%%garbage")),
        INVALID,
        "pageToken",
        "INVALID_INPUT",
        "",
    ),
]

STUB_OF = {
    "Generate": "generation",
    "Iterate": "generation",
    "GenerateImage": "generation",
    "GetHistory": "generation",
    "GetSession": "sessions",
    "DeleteSession": "sessions",
    "CreateSession": "sessions",
    "ListSessions": "sessions",
    "GetImage": "images",
}


@pytest.fixture(scope="module")
def providers():
    return [ScriptedProvider("alpha"), ScriptedProvider("beta")]


@pytest.fixture(scope="module")
async def harness(tmp_path_factory, providers, store_mode):
    """One server per storage mode."""
    async with running_server(tmp_path_factory.mktemp("validation"), providers) as h:
        yield h


@pytest.mark.parametrize(
    ("rpc_request", "code", "field", "reason", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_input(harness, providers, rpc_request, code, field, reason, text):
    rpc, request = rpc_request
    h = harness
    sid = (await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="p"))).session_id
    await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="first"))
    calls_before = [len(p.calls) for p in providers]
    if getattr(request, "session_id", None) == SESSION:
        request = type(request).FromString(request.SerializeToString())
        request.session_id = sid
    method = getattr(getattr(h, STUB_OF[rpc]), rpc)
    error = await expect_error(method(request))
    assert error.code == code, error.message
    assert error.reason == reason
    if field is None:
        assert error.fields == ()
    else:
        assert error.fields == (field,), error.field_violations
    assert text in error.message
    assert [len(p.calls) for p in providers] == calls_before

    session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
    assert session.status == "ready"
    assert session.turn_count == 1
    assert (await h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="ok"))).image_id
