"""Operability: Prometheus metrics, the request log line, request ids and spans, on the real server."""

from __future__ import annotations

import asyncio
import base64
import json

import grpc
import pytest
from envoy_harness import running_stack
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from providers import Hang, ScriptedProvider, Succeed, png_bytes
from server_harness import expect_error, running_server

from aigen.server.errors import ContentRefused, ProviderUnavailable
from aigen.server.observability.tracing import tracing_requested
from aigen.server.providers.base import ProviderRegistry
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import ops_service_pb2, ops_service_pb2_grpc, types_pb2
from aigen.v1 import session_service_pb2 as session_pb2

pytestmark = pytest.mark.both_stores

GENERATE_IMAGE = "aigen.v1.GenerationService/GenerateImage"
ADMIN_KEY = "adm-SECRET-9f8e7d6c5b4a"
SECRETS = (ADMIN_KEY, "apptok-SECRET-1a2b3c")


# Helpers -------------------------------------------------------------------------------------
async def scrape(channel: grpc.aio.Channel) -> str:
    """The /metrics text, fetched through the real OpsService."""
    stub = ops_service_pb2_grpc.OpsServiceStub(channel)
    body = await stub.GetMetrics(ops_service_pb2.GetMetricsRequest())
    assert body.content_type.startswith("text/plain; version=0.0.4")
    return body.data.decode()


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def request_lines(captured: str) -> list[dict]:
    """The JSON request log lines in captured stderr."""
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{") and '"request"' in line]


def attempts(provider: str, model: str, outcome: str, text: str) -> float:
    return value(text, "aigen_provider_attempts_total", provider=provider, model=model, outcome=outcome)


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """An SDK tracer provider exporting to memory (installed once for the process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "another tracer provider was installed first"
    return exporter


# Metrics -------------------------------------------------------------------------------------
async def test_metrics_follow_generate_refusal_fallback_and_cooldown(tmp_path):
    alpha = ScriptedProvider(
        "alpha", script=[Succeed(), ContentRefused("refused by policy"), ProviderUnavailable("upstream 502")]
    )
    beta = ScriptedProvider("beta")
    gamma = ScriptedProvider("gamma", is_configured=False)
    chain = [("gamma", "gamma-1"), ("beta", "beta-1")]
    async with running_server(
        tmp_path, [alpha, beta, gamma], fallback_chain=chain, cooldown_failures=1, cooldown_s=300
    ) as h:
        before = await scrape(h.channel)
        assert value(before, "aigen_generations_in_flight") == 0
        assert value(before, "aigen_providers_in_cooldown") == 0

        # 1. Served by the requested pair.
        first = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="a"))
        text = await scrape(h.channel)
        assert attempts("alpha", "alpha-1", "succeeded", text) == 1
        completed = {"provider": "alpha", "model": "alpha-1", "outcome": "completed"}
        assert value(text, "aigen_generation_duration_seconds_count", **completed) == 1
        assert value(text, "aigen_credits_charged_total", provider="alpha", model="alpha-1") == first.credits_used
        stored = value(text, "aigen_image_bytes_stored_total", provider="alpha", model="alpha-1")
        assert stored == len(first.data) > 0
        assert value(text, "aigen_fallbacks_total") == 0
        assert value(text, "aigen_rpc_requests_total", rpc=GENERATE_IMAGE, code="OK") == 1

        # 2. Refused: the chain skips the unconfigured pair and beta serves.
        second = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="b"))
        assert second.provider == "beta"
        text = await scrape(h.channel)
        assert attempts("alpha", "alpha-1", "refused", text) == 1
        assert attempts("gamma", "gamma-1", "skipped_not_configured", text) == 1
        fallback = {"requested_provider": "alpha", "requested_model": "alpha-1", "served_provider": "beta"}
        assert value(text, "aigen_fallbacks_total", **fallback, served_model="beta-1") == 1
        assert value(text, "aigen_credits_charged_total", provider="beta", model="beta-1") == second.credits_used

        # 3. A retryable failure: one failure is enough to cool alpha down.
        await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="c"))
        text = await scrape(h.channel)
        assert attempts("alpha", "alpha-1", "failed_retryable", text) == 1
        assert value(text, "aigen_provider_cooldown", provider="alpha", model="alpha-1") == 1
        assert value(text, "aigen_providers_in_cooldown") == 1

        # 4. Alpha is skipped while it cools down.
        await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="d"))
        text = await scrape(h.channel)
        assert attempts("alpha", "alpha-1", "skipped_cooldown", text) == 1
        assert len(alpha.calls) == 3
        assert value(text, "aigen_fallbacks_total", **fallback, served_model="beta-1") == 3
        assert value(text, "aigen_generation_duration_seconds_count", **completed) == 1
        assert value(text, "aigen_rpc_requests_total", rpc=GENERATE_IMAGE, code="OK") == 4

        # 5. Invalid input is counted under its status code.
        await expect_error(h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt=" ")))
        text = await scrape(h.channel)
        assert value(text, "aigen_rpc_requests_total", rpc=GENERATE_IMAGE, code="INVALID_ARGUMENT") == 1
        assert value(text, "aigen_generations_in_flight") == 0


async def test_failed_generation_latency_is_on_the_requested_pair(tmp_path):
    alpha = ScriptedProvider("alpha", script=[ProviderUnavailable("down")])
    async with running_server(tmp_path, [alpha]) as h:
        error = await expect_error(h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x")))
        assert error.code == grpc.StatusCode.UNAVAILABLE
        text = await scrape(h.channel)
        failed = {"provider": "alpha", "model": "alpha-1", "outcome": "failed"}
        assert value(text, "aigen_generation_duration_seconds_count", **failed) == 1
        assert value(text, "aigen_rpc_requests_total", rpc=GENERATE_IMAGE, code="UNAVAILABLE") == 1
        assert value(text, "aigen_credits_charged_total", provider="alpha", model="alpha-1") == 0


async def test_in_flight_and_open_stream_gauges(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Hang()])
    async with running_server(tmp_path, [alpha]) as h:
        call = h.generation.StreamGenerateImage(gen_pb2.GenerateImageRequest(prompt="x"))
        await call.read()  # PHASE_QUEUED
        await alpha.wait_called()
        text = await scrape(h.channel)
        assert value(text, "aigen_generations_in_flight") == 1
        assert value(text, "aigen_progress_streams_open") == 1
        call.cancel()
        await alpha.wait_cancelled()
        async with asyncio.timeout(5):
            while True:
                text = await scrape(h.channel)
                if value(text, "aigen_progress_streams_open") == 0 and value(text, "aigen_generations_in_flight") == 0:
                    break
                await asyncio.sleep(0.02)
        assert attempts("alpha", "alpha-1", "cancelled", text) == 1
        cancelled = {"provider": "alpha", "model": "alpha-1", "outcome": "cancelled"}
        assert value(text, "aigen_generation_duration_seconds_count", **cancelled) == 1


# Request log ---------------------------------------------------------------------------------
async def test_one_json_line_per_request_without_secrets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIGEN_LOG_FORMAT", "json")
    monkeypatch.delenv("AIGEN_LOG_PROMPTS", raising=False)
    alpha = ScriptedProvider("alpha", script=[ContentRefused("refused")])
    beta = ScriptedProvider("beta")
    reference = png_bytes(24, 24, (250, 7, 99))
    metadata = (("x-request-id", "rid-json-1"), ("authorization", f"Bearer {ADMIN_KEY}"), ("x-app-token", SECRETS[1]))
    providers = [alpha, beta]
    async with running_server(tmp_path, providers, fallback_chain=[("beta", "beta-1")], admin_key=ADMIN_KEY) as h:
        session = await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="proj-7"))
        capsys.readouterr()
        request = gen_pb2.GenerateRequest(
            session_id=session.session_id,
            prompt="PROMPT-MARKER lighthouse",
            reference_image_data=[types_pb2.ImageData(data=reference, mime_type="image/png")],
        )
        call = h.generation.Generate(request, metadata=metadata)
        result = await call
        assert ("x-request-id", "rid-json-1") in tuple(await call.initial_metadata())
    captured = capsys.readouterr().err
    lines = request_lines(captured)
    assert len(lines) == 1, captured
    line = lines[0]
    assert line["request_id"] == "rid-json-1"
    assert line["rpc"] == "aigen.v1.GenerationService/Generate"
    assert line["code"] == "OK"
    assert line["project"] == "proj-7"
    assert line["session_id"] == session.session_id
    assert line["generation"] == "completed"
    assert line["served"] == "beta/beta-1"
    assert [(a["provider"], a["outcome"]) for a in line["attempts"]] == [("alpha", "refused"), ("beta", "succeeded")]
    assert line["duration_ms"] >= 0
    for forbidden in (*SECRETS, "PROMPT-MARKER", base64.b64encode(reference).decode()[:40]):
        assert forbidden not in captured
    assert base64.b64encode(result.data).decode()[:40] not in captured
    assert "prompt" not in line


async def test_prompt_logged_only_when_enabled_in_text_format(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIGEN_LOG_FORMAT", "text")
    monkeypatch.setenv("AIGEN_LOG_PROMPTS", "true")
    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        capsys.readouterr()
        await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="PROMPT-MARKER dusk"))
    lines = [line for line in capsys.readouterr().err.splitlines() if " request " in line]
    assert len(lines) == 1
    assert f"rpc={GENERATE_IMAGE}" in lines[0]
    assert "code=OK" in lines[0]
    assert "attempts=alpha/alpha-1#1:succeeded" in lines[0]
    assert 'prompt="PROMPT-MARKER dusk"' in lines[0]
    assert "request_id=req_" in lines[0]  # generated when the caller sends none


async def test_errors_are_logged_with_their_final_code_and_carry_the_request_id(tmp_path, monkeypatch, capsys):
    # The request log interceptor wraps the error interceptor: it sees the code the caller sees,
    # and the rich status still reaches the caller intact.
    monkeypatch.setenv("AIGEN_LOG_FORMAT", "json")
    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        capsys.readouterr()
        call = h.generation.GenerateImage(
            gen_pb2.GenerateImageRequest(prompt=""), metadata=(("x-request-id", "rid-err-2"),)
        )
        error = await expect_error(call)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.fields == ("prompt",)
        assert ("x-request-id", "rid-err-2") in tuple(await call.trailing_metadata())
        missing = await expect_error(h.sessions.GetSession(session_pb2.GetSessionRequest(session_id="sess_nope")))
        assert missing.code == grpc.StatusCode.NOT_FOUND
    lines = request_lines(capsys.readouterr().err)
    assert [(line["rpc"].rsplit("/", 1)[1], line["code"]) for line in lines] == [
        ("GenerateImage", "INVALID_ARGUMENT"),
        ("GetSession", "NOT_FOUND"),
    ]
    assert lines[0]["request_id"] == "rid-err-2"
    assert "prompt" in lines[0]["message"]
    assert lines[1]["session_id"] == "sess_nope"


async def test_malformed_request_ids_are_replaced(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIGEN_LOG_FORMAT", "json")
    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        capsys.readouterr()
        sent = []
        for given in ('bad id "quoted"=x', "x" * 200):
            call = h.generation.ListProviders(gen_pb2.ListProvidersRequest(), metadata=(("x-request-id", given),))
            await call
            sent.append(dict(await call.initial_metadata())["x-request-id"])
    assert all(request_id.startswith("req_") for request_id in sent)
    assert [line["request_id"] for line in request_lines(capsys.readouterr().err)] == sent


async def test_request_id_through_envoy(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIGEN_LOG_FORMAT", "json")
    registry = ProviderRegistry()
    registry.add(ScriptedProvider("alpha"))
    settings = {"default_provider": "alpha", "default_model": "alpha-1", "fallback_chain": []}
    stack_context = running_stack(tmp_path, registry, local_fallback="never", **settings)
    async with stack_context as stack, stack.client() as client:
        capsys.readouterr()
        given = await client.post("/generate", json={"prompt": "x"}, headers={"x-request-id": "rest-rid-3"})
        generated = await client.post("/generate", json={"prompt": "y", "omitImageData": True})
        failed = await client.post("/generate", json={"prompt": ""})
        metrics = await client.get("/metrics")
    assert given.status_code == 200 and generated.status_code == 200
    assert given.headers["x-request-id"] == "rest-rid-3"
    assert failed.status_code == 400 and failed.json()["code"] == 3
    lines = request_lines(capsys.readouterr().err)
    by_id = {line["request_id"]: line for line in lines}
    assert by_id["rest-rid-3"]["code"] == "OK"
    envoy_id = generated.headers["x-request-id"]  # generated by Envoy, passed on to the server
    assert by_id[envoy_id]["rpc"] == GENERATE_IMAGE
    assert by_id[failed.headers["x-request-id"]]["code"] == "INVALID_ARGUMENT"
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert value(metrics.text, "aigen_rpc_requests_total", rpc=GENERATE_IMAGE, code="OK") == 2


# Tracing -------------------------------------------------------------------------------------
async def test_spans_for_the_rpc_and_each_attempt(tmp_path, spans):
    spans.clear()
    alpha = ScriptedProvider("alpha", script=[ContentRefused("refused")])
    beta = ScriptedProvider("beta")
    gamma = ScriptedProvider("gamma", is_configured=False)
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traceparent = (("traceparent", f"00-{trace_id}-{parent_id}-01"),)
    chain = [("gamma", "gamma-1"), ("beta", "beta-1")]
    async with running_server(tmp_path, [alpha, beta, gamma], fallback_chain=chain) as h:
        await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x"), metadata=traceparent)
    finished = {span.name: span for span in spans.get_finished_spans() if span.context.trace_id == int(trace_id, 16)}
    rpc = finished[GENERATE_IMAGE]
    assert rpc.parent.span_id == int(parent_id, 16)
    assert rpc.kind == trace.SpanKind.SERVER
    assert rpc.attributes["rpc.grpc.status_code"] == 0
    assert rpc.attributes["aigen.request_id"].startswith("req_")
    skipped = [event.attributes for event in rpc.events if event.name == "aigen.attempt.skipped"]
    assert [(e["aigen.provider"], e["aigen.attempt.outcome"]) for e in skipped] == [("gamma", "skipped_not_configured")]
    attempt_spans = sorted(
        (s for s in spans.get_finished_spans() if s.name == "aigen.provider_attempt" and s.parent == rpc.context),
        key=lambda s: s.attributes["aigen.attempt.number"],
    )
    assert [dict(s.attributes) for s in attempt_spans] == [
        {
            "aigen.provider": "alpha",
            "aigen.model": "alpha-1",
            "aigen.attempt.number": 1,
            "aigen.attempt.chain_position": 0,
            "aigen.attempt.outcome": "refused",
            "aigen.attempt.reason": "ERROR_REASON_CONTENT_REFUSED",
        },
        {
            "aigen.provider": "beta",
            "aigen.model": "beta-1",
            "aigen.attempt.number": 3,  # the skipped pair took number 2
            "aigen.attempt.chain_position": 2,
            "aigen.attempt.outcome": "succeeded",
        },
    ]
    assert attempt_spans[0].status.status_code == trace.StatusCode.ERROR
    assert all(rpc.start_time <= s.start_time <= s.end_time <= rpc.end_time for s in attempt_spans)


@pytest.mark.no_server
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "TRUE"}, False),
    ],
)
def test_tracing_is_off_unless_the_environment_asks(env, expected):
    assert tracing_requested(env) is expected
