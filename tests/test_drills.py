"""Reliability drills, quick versions (the long ones run with `make drills`).

- Crash durability: kill -9 a server subprocess with 200 generations in flight, restart it on the
  same data dir: completed turns and images intact, no session stuck, SQLite intact.
- Provider faults through the server with the fake vendors: each fault is served by the fallback
  or ends in its typed error; credits are counted once; nothing is half-written.
- REST fuzz through the real Envoy (hypothesis-generated JSON shapes, paths and headers): no 500,
  no hang, the service keeps answering.
- Abuse: oversized bodies, decompression bombs, thousands of reference images, deep JSON, slow
  clients holding connections: refused early with the right status while others are served.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
import json
import os
import random
import re
import socket
import sqlite3
import struct
import sys
import zlib
from pathlib import Path
from urllib.parse import quote

import grpc
import httpx
import psutil
import pytest
import store_modes
from envoy_harness import running_stack
from fakes.base import json_response, png_bytes
from fakes.gemini import FakeGemini
from fakes.openai import FakeOpenAI, _sse, params
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from server_harness import error_details

from aigen.server.app import start_server
from aigen.server.config import ChainEntry, Settings
from aigen.v1 import (
    generation_service_pb2,
    generation_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
    types_pb2,
)

GEMINI_KEY = "drill-gemini-key"
LONG = os.environ.get("AIGEN_DRILLS") == "long"  # `make drills`: thousands of cases instead of hundreds
UNLIMITED = 10**9
Phase = types_pb2.GenerationEvent.Phase


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def integrity(db_path: Path) -> tuple[str, list]:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0], db.execute("PRAGMA foreign_key_check").fetchall()


def channel_to(port: int) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", -1)])


# Crash durability -------------------------------------------------------------------------------


class ServerProcess:
    """`python -m aigen.server` as a child process."""

    def __init__(self, data_dir: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "AIGEN_GRPC_PORT": str(self.port),
            "AIGEN_DATA_DIR": str(data_dir),
            "AIGEN_RATE_LIMIT": str(UNLIMITED),
        }
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as sink:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "aigen.server", env=self.env, stdout=sink, stderr=sink
            )
        async with channel_to(self.port) as channel, asyncio.timeout(60):
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                assert self.process.returncode is None, self.log.read_text()[-2000:]
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def test_kill_9_with_200_generations_in_flight_loses_nothing_committed(tmp_path):
    rng = random.Random(20261122)
    data_dir = tmp_path / "data"
    async with FakeOpenAI() as fake:
        # Round one: 200 sessions get an image. Round two: 250 generations, of which 50 answer
        # within 2 s (their commits race the kill) and 200 are still working when the server dies.
        for _ in range(200):
            fake.slow(rng.uniform(0.01, 0.3))
        for index in range(250):
            fake.slow(rng.uniform(0.0, 2.0) if index % 5 == 0 else 120.0)
        env = {
            "OPENAI_API_KEY": "drill-key",
            "OPENAI_BASE_URL": fake.base_url,
            "AIGEN_DEFAULT_PROVIDER": "openai",
            "AIGEN_DEFAULT_MODEL": "gpt-image",
            "AIGEN_FALLBACK_CHAIN": "[]",
            "AIGEN_LOCAL_FALLBACK": "never",
            "AIGEN_RETRY_ATTEMPTS": "0",
        }
        server = ServerProcess(data_dir, env, tmp_path / "server.log")
        await server.start()
        completed: dict[str, list[tuple[str, str]]] = {}  # session id -> [(image id, sha256 of the bytes)]
        try:
            async with channel_to(server.port) as channel:
                sessions = session_service_pb2_grpc.SessionServiceStub(channel)
                generation = generation_service_pb2_grpc.GenerationServiceStub(channel)
                ids = [
                    (await sessions.CreateSession(session_service_pb2.CreateSessionRequest(project="drill"))).session_id
                    for _ in range(250)
                ]

                async def generate(session_id: str) -> None:
                    request = generation_service_pb2.GenerateRequest(session_id=session_id, prompt="crash drill")
                    result = await generation.Generate(request, timeout=180)
                    completed.setdefault(session_id, []).append((result.image_id, sha(result.data)))

                await asyncio.gather(*(generate(session_id) for session_id in ids[:200]))
                calls = [asyncio.create_task(generate(session_id)) for session_id in ids]
                async with asyncio.timeout(90):
                    await fake.wait_for_requests(450)
                await server.kill()
                outcomes = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await server.stop()
        interrupted = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(interrupted) >= 200
        assert integrity(data_dir / "aigen.db") == ("ok", [])

        restarted = ServerProcess(data_dir, env, tmp_path / "server.log")
        await restarted.start()
        try:
            async with channel_to(restarted.port) as channel:
                await _check_after_crash(channel, ids, completed)
        finally:
            await restarted.stop()
    assert integrity(data_dir / "aigen.db") == ("ok", [])


async def _check_after_crash(channel: grpc.aio.Channel, ids: list[str], completed: dict) -> None:
    sessions = session_service_pb2_grpc.SessionServiceStub(channel)
    generation = generation_service_pb2_grpc.GenerationServiceStub(channel)
    images = image_service_pb2_grpc.ImageServiceStub(channel)
    Turn = generation_service_pb2.Turn
    for session_id in ids:
        session = await sessions.GetSession(session_service_pb2.GetSessionRequest(session_id=session_id))
        assert session.status == "ready"
        history = await generation.GetHistory(generation_service_pb2.GetHistoryRequest(session_id=session_id))
        done = [turn.image.image_id for turn in history.turns if turn.status == Turn.STATUS_COMPLETED]
        for image_id, digest in completed.get(session_id, []):  # the caller was told: it must be there
            assert image_id in done
            body = await images.GetImage(image_service_pb2.GetImageRequest(image_id=image_id))
            assert sha(body.data) == digest
        for image_id in done:  # a turn committed just before the kill is whole, too
            body = await images.GetImage(image_service_pb2.GetImageRequest(image_id=image_id))
            Image.open(io.BytesIO(body.data)).verify()
        assert session.current_image.image_id == (done[-1] if done else "")
        assert all(turn.credits_used > 0 for turn in history.turns if turn.status == Turn.STATUS_COMPLETED)
    semaphore = asyncio.Semaphore(16)

    async def generate_again(session_id: str) -> None:
        async with semaphore:
            request = generation_service_pb2.GenerateRequest(session_id=session_id, prompt="after the crash")
            result = await generation.Generate(request, timeout=60, wait_for_ready=True)
            assert result.image_id

    await asyncio.gather(*(generate_again(session_id) for session_id in ids))


# Provider fault matrix --------------------------------------------------------------------------


def _completed_event(data: bytes, output_format: str = "png") -> bytes:
    payload = {"type": "image_generation.completed", "b64_json": base64.b64encode(data).decode()}
    return _sse("image_generation.completed", {**payload, "output_format": output_format, "size": "1024x1024"})


def _image_event(fake: FakeOpenAI, data: bytes, output_format: str = "png"):
    """One image answer, streamed or as plain JSON, as the request asks."""

    async def handler(request, recorded):
        if str(params(recorded).get("stream", "")).lower() != "true":
            body = {"data": [{"b64_json": base64.b64encode(data).decode()}], "output_format": output_format}
            return json_response(200, body)
        return await fake._stream(request, [_completed_event(data, output_format)])

    return fake.script(handler)


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 120, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


FAULTS = {
    # name: (script the fault, gRPC code without a fallback, ErrorInfo reason without a fallback)
    "connection refused": (None, grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    "timeout": (lambda f: f.slow(30), grpc.StatusCode.DEADLINE_EXCEEDED, "PROVIDER_TIMEOUT"),
    "429 retry-after": (
        lambda f: f.fail(429, retry_after="7"),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "PROVIDER_RATE_LIMITED",
    ),
    "5xx": (lambda f: f.fail(503), grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    "malformed json": (lambda f: f.malformed(), grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    "dropped connection": (lambda f: f.truncate(), grpc.StatusCode.UNAVAILABLE, "PROVIDER_UNAVAILABLE"),
    "truncated image bytes": (
        lambda f: _image_event(f, png_bytes(64, 64)[:-40]),
        grpc.StatusCode.UNAVAILABLE,
        "PROVIDER_UNAVAILABLE",
    ),
    "not an image": (
        lambda f: _image_event(f, b"<html><body>Service busy</body></html>"),
        grpc.StatusCode.UNAVAILABLE,
        "PROVIDER_UNAVAILABLE",
    ),
    "safety refusal": (
        lambda f: f.fail_midstream(code="moderation_blocked"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONTENT_REFUSED",
    ),
}


@pytest.fixture
async def vendors():
    async with FakeOpenAI() as openai_fake, FakeGemini(api_key=GEMINI_KEY) as gemini_fake:
        yield openai_fake, gemini_fake


def _fault_settings(tmp_path: Path, openai_url: str, gemini_url: str) -> Settings:
    return Settings(
        **store_modes.overrides(tmp_path / "data"),
        grpc_port=0,
        data_dir=tmp_path / "data",
        openai_api_key="drill-key",
        openai_base_url=openai_url,
        gemini_api_key=GEMINI_KEY,
        gemini_base_url=gemini_url,
        default_provider="openai",
        default_model="gpt-image",
        fallback_chain=[ChainEntry(provider="gemini", model="nano-banana")],
        local_fallback="never",
        retry_attempts=0,
        cooldown_failures=1000,
        model_timeouts_s={"openai/gpt-image": 1.0},
        rate_limit=UNLIMITED,
    )


@pytest.mark.both_stores
@pytest.mark.parametrize("with_fallback", [True, False], ids=["fallback", "alone"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_provider_fault_is_served_by_fallback_or_typed_and_charged_once(
    tmp_path, vendors, fault, with_fallback, store_mode
):
    openai_fake, gemini_fake = vendors
    script, code, reason = FAULTS[fault]
    openai_url = f"http://127.0.0.1:{free_port()}/v1" if script is None else openai_fake.base_url
    if script is not None:
        script(openai_fake)
    settings = _fault_settings(tmp_path, openai_url, gemini_fake.base_url)
    assert settings.store == ("postgres" if store_mode == store_modes.SHARED else "sqlite")
    server = await start_server(settings)
    try:
        async with channel_to(server.port) as channel:
            sessions = session_service_pb2_grpc.SessionServiceStub(channel)
            generation = generation_service_pb2_grpc.GenerationServiceStub(channel)
            session = await sessions.CreateSession(session_service_pb2.CreateSessionRequest(project="faults"))
            fallback = [types_pb2.ModelRef(provider="gemini", model="nano-banana")] if with_fallback else []
            request = generation_service_pb2.GenerateRequest(
                session_id=session.session_id, prompt="fault drill", fallback=fallback
            )
            if not with_fallback:
                # An empty list keeps the configured chain; name the requested pair alone instead.
                request.fallback.append(types_pb2.ModelRef(provider="openai", model="gpt-image"))
            gemini_credits = server.registry.find_model("gemini", "nano-banana").credits_per_image
            if with_fallback:
                result = await generation.Generate(request, timeout=60)
                assert (result.provider, result.model) == ("gemini", "nano-banana")
                assert result.fallback_used.provider == "gemini"
                assert result.credits_used == gemini_credits
                assert result.attempts[0].provider == "openai" and result.attempts[0].outcome != 0
            else:
                details = error_details(await _expect_rpc_error(generation.Generate(request, timeout=60)))
                assert (details.code, details.reason) == (code, reason), details.message
                if fault == "429 retry-after":
                    assert details.retry_delay_s == pytest.approx(7, abs=1)
            history = await generation.GetHistory(
                generation_service_pb2.GetHistoryRequest(session_id=session.session_id)
            )
            current = await sessions.GetSession(session_service_pb2.GetSessionRequest(session_id=session.session_id))
        assert len(history.turns) == 1
        turn = history.turns[0]
        charged = sum(t.credits_used for t in history.turns)
        if with_fallback:
            assert turn.status == generation_service_pb2.Turn.STATUS_COMPLETED
            assert charged == gemini_credits and turn.image.image_id == result.image_id
            assert current.current_image.image_id == result.image_id
            assert len(store_modes.stored_blobs(settings)) == 1
        else:
            assert turn.status == generation_service_pb2.Turn.STATUS_FAILED
            assert charged == 0 and not turn.image.image_id and not current.current_image.image_id
            assert store_modes.stored_blobs(settings) == []
        assert current.status == "ready"
    finally:
        await server.stop(0)
    if settings.store == "sqlite":
        assert integrity(settings.data_dir / "aigen.db") == ("ok", [])


async def test_mislabelled_image_is_stored_with_its_real_type(tmp_path, vendors):
    openai_fake, gemini_fake = vendors
    _image_event(openai_fake, _jpeg(), output_format="png")
    server = await start_server(_fault_settings(tmp_path, openai_fake.base_url, gemini_fake.base_url))
    try:
        async with channel_to(server.port) as channel:
            generation = generation_service_pb2_grpc.GenerationServiceStub(channel)
            result = await generation.GenerateImage(
                generation_service_pb2.GenerateImageRequest(prompt="mislabelled"), timeout=60
            )
    finally:
        await server.stop(0)
    assert (result.provider, result.content_type) == ("openai", "image/jpeg")
    assert result.data.startswith(b"\xff\xd8\xff")


async def _expect_rpc_error(call) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise AssertionError("the call succeeded but an error was expected")


# REST fuzz through Envoy -------------------------------------------------------------------------

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
OPENAPI = Path(__file__).resolve().parent.parent / "gen" / "openapi.json"
STATIC_FIELDS = ["prompt", "instructions", "provider", "model", "fallback", "aspectRatio", "imageSize", "size"]
STATIC_ROUTES = [
    ("POST", "/generate"),
    ("POST", "/generate:stream"),
    ("POST", "/session"),
    ("POST", "/session/{sessionId}/generate"),
    ("POST", "/session/{sessionId}/iterate"),
    ("GET", "/session/{sessionId}"),
    ("GET", "/sessions"),
    ("GET", "/images/{imageId}"),
]


def contract() -> tuple[list[tuple[str, str]], list[str]]:
    """Routes and request body field names from gen/openapi.json, or a fixed list without it."""
    if not OPENAPI.exists():
        return STATIC_ROUTES, STATIC_FIELDS
    document = json.loads(OPENAPI.read_text())
    routes, fields = [], set(STATIC_FIELDS)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            routes.append((method.upper(), path))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                fields.update(media.get("schema", {}).get("properties", {}))
    return sorted(routes), sorted(fields)


ROUTES, FIELDS = contract()
BODY = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6),
    JSON,
    st.binary(max_size=64).map(lambda raw: raw.decode("latin-1")),
)
SEGMENT = st.text(alphabet=st.characters(codec="ascii", exclude_characters="/?#"), min_size=1, max_size=20)
CASE = st.tuples(
    st.sampled_from(ROUTES),
    SEGMENT,
    BODY,
    st.dictionaries(
        st.sampled_from(["content-type", "x-api-key", "authorization", "grpc-timeout", "x-request-id", "te"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.strip),
        max_size=3,
    ),
    st.dictionaries(st.sampled_from(["pageSize", "project", "x", "prompt"]), st.text(max_size=10), max_size=2),
)


def fuzz_cases(count: int, seed: int) -> list:
    """`count` hypothesis-generated requests, deterministic for a seed."""
    cases: list = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=CASE, salt=st.just(seed))
    def collect(case, salt):
        cases.append(case)

    collect()
    return cases


async def send_fuzz_case(client: httpx.AsyncClient, case) -> tuple[int, str]:
    """Send one case; returns (status, description)."""
    (method, template), segment, body, headers, params = case
    path = re.sub(r"\{[^}]+\}", quote(segment, safe=""), template)
    content = body if isinstance(body, str) else json.dumps(body)
    response = await client.request(method, path, content=content.encode(), headers=headers, params=params)
    return response.status_code, f"{method} {path} {content[:200]!r} {headers} -> {response.text[:200]}"


@pytest.fixture(scope="module")
async def fuzz_stack(tmp_path_factory, store_mode):
    async with FakeOpenAI() as fake:
        workdir = tmp_path_factory.mktemp("drills-rest")
        async with running_stack(
            workdir,
            openai_api_key="drill-key",
            openai_base_url=fake.base_url,
            default_provider="openai",
            default_model="gpt-image",
            fallback_chain=[],
            local_fallback="never",
            retry_attempts=0,
            rate_limit=UNLIMITED,
        ) as stack:
            yield stack


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


@pytest.mark.both_stores
async def test_rest_fuzz_never_answers_500_or_hangs(fuzz_stack):
    """Fuzzed routes, bodies, headers and query strings: 4xx (or a served image), never a 5xx."""
    count = 3000 if LONG else 300
    cases = fuzz_cases(count, seed=1)
    statuses: dict[int, int] = {}
    envoy_pid = fuzz_stack.envoy.process.pid
    async with fuzz_stack.client(timeout=30.0) as client:
        semaphore = asyncio.Semaphore(8)

        async def one(case) -> None:
            async with semaphore:
                status, described = await send_fuzz_case(client, case)
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, described

        warm = count // 10
        await asyncio.gather(*(one(case) for case in cases[:warm]))
        before = (rss_mb(os.getpid()), rss_mb(envoy_pid))
        await asyncio.gather(*(one(case) for case in cases[warm:]))
        after = (rss_mb(os.getpid()), rss_mb(envoy_pid))
        health = await client.post("/generate", json={"prompt": "still serving"})
    assert health.status_code == 200, health.text
    assert sum(statuses.values()) == count
    figures = {
        "cases": count,
        "statuses": dict(sorted(statuses.items())),
        "server_process_rss_mb": [round(before[0], 1), round(after[0], 1)],
        "envoy_rss_mb": [round(before[1], 1), round(after[1], 1)],
    }
    print("fuzz:", json.dumps(figures))
    if LONG:  # memory flat: what grows over 90 % of the run
        assert after[1] - before[1] < 32, figures
        assert after[0] - before[0] < 128, figures


# Abuse -----------------------------------------------------------------------------------------


def bomb_png(side: int = 100_000) -> bytes:
    """A PNG whose header claims side x side pixels; its data inflates to far more than it weighs."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\x00" * (side + 1) * 64, 9)  # the first rows only; enough to look real
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [8_000, 100_000])
async def test_decompression_bomb_reference_is_refused_without_inflating(fuzz_stack, side):
    bomb = base64.b64encode(bomb_png(side)).decode()
    async with fuzz_stack.client() as client:
        response = await client.post("/generate", json={"prompt": "bomb", "referenceImages": [bomb]})
    assert response.status_code == 400, response.text
    assert response.json()["details"][-1]["fieldViolations"][0]["field"] == "referenceImages[0]"


async def test_thousands_of_reference_images_are_refused(fuzz_stack):
    tiny = base64.b64encode(png_bytes(4, 4)).decode()
    async with fuzz_stack.client() as client:
        response = await client.post("/generate", json={"prompt": "many", "referenceImages": [tiny] * 3000})
    assert response.status_code == 400, response.text


async def test_deeply_nested_json_is_refused(fuzz_stack):
    depth = 20_000
    body = '{"prompt": "deep", "fallback": ' + "[" * depth + "]" * depth + "}"
    async with fuzz_stack.client() as client:
        response = await client.post("/generate", content=body.encode())
        after = await client.post("/generate", json={"prompt": "next caller"})
    assert 400 <= response.status_code < 500, response.text
    assert after.status_code == 200


async def test_gzip_body_is_not_inflated(fuzz_stack):
    bomb = zlib.compress(b"{" + b" " * 50_000_000 + b"}", 9)
    async with fuzz_stack.client() as client:
        response = await client.post(
            "/generate", content=bomb, headers={"content-encoding": "deflate", "content-type": "application/json"}
        )
    assert 400 <= response.status_code < 500, response.text


async def test_oversized_body_is_refused_before_all_of_it_is_sent(fuzz_stack):
    """A 200 MiB chunked body (no Content-Length) gets 413 once the 160 MiB cap is crossed."""
    limit = 200 * 1024 * 1024
    reader, writer = await asyncio.open_connection("127.0.0.1", fuzz_stack.envoy.http_port)
    sent = 0
    answer = asyncio.create_task(reader.readline())
    try:
        writer.write(
            b"POST /generate HTTP/1.1\r\nHost: drill\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * (1024 * 1024)
        with contextlib.suppress(ConnectionError):
            while sent < limit and not answer.done():
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                sent += len(chunk)
        async with asyncio.timeout(60):
            status_line = await answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert status_line.split()[1] == b"413", status_line
    assert sent < limit


async def test_declared_oversized_body_is_refused_from_its_headers(fuzz_stack):
    """A Content-Length over the cap gets 413 at once: no byte of the body is waited for."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fuzz_stack.envoy.http_port)
    try:
        writer.write(
            b"POST /generate HTTP/1.1\r\nHost: drill\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {1 << 30}\r\n\r\n".encode()
            + b'{"prompt": "'
        )
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            body = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert head.split()[1] == b"413", head
    error = json.loads(body)
    assert error["code"] == 3
    assert error["details"][0]["reason"] == "PAYLOAD_TOO_LARGE"
    async with fuzz_stack.client() as client:
        after = await client.post("/generate", json={"prompt": "still served"})
    assert after.status_code == 200, after.text


async def test_slow_clients_holding_connections_do_not_starve_others(fuzz_stack):
    idlers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(200):
            _, writer = await asyncio.open_connection("127.0.0.1", fuzz_stack.envoy.http_port)
            writer.write(b"POST /generate HTTP/1.1\r\nHost: drill\r\nContent-Length: 100\r\n\r\n{")
            idlers.append(writer)
        async with fuzz_stack.client() as client:
            for _ in range(5):
                response = await client.post("/generate", json={"prompt": "served meanwhile"})
                assert response.status_code == 200, response.text
                for writer in idlers[:50]:  # trickle a byte, like a slowloris client
                    writer.write(b" ")
    finally:
        for writer in idlers:
            writer.close()
