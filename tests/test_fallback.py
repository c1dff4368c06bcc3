"""Every path of the fallback engine, observed through the public API."""

from __future__ import annotations

import grpc
import pytest
from providers import Fail, ScriptedProvider, Succeed, png_bytes, profile
from server_harness import expect_error, running_server

from aigen.server.errors import (
    ContentRefused,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    ProviderUnreachable,
)
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import types_pb2

pytestmark = pytest.mark.both_stores

Outcome = types_pb2.AttemptOutcome
Reason = types_pb2.ErrorReason
Turn = gen_pb2.Turn


async def _session(h) -> str:
    return (await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="p"))).session_id


def _summary(attempts) -> list[tuple[str, int]]:
    return [(a.provider, a.outcome) for a in attempts]


async def test_skip_a_model_that_cannot_edit(tmp_path):
    alpha = ScriptedProvider("alpha", [profile("alpha", "alpha-1", can_edit=False)])
    beta = ScriptedProvider("beta")
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")]) as h:
        sid = await _session(h)
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        result = await h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="y"))
        assert _summary(result.attempts) == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_SKIPPED_CAPABILITY),
            ("beta", Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
        ]
        skipped = result.attempts[0]
        assert skipped.reason == Reason.ERROR_REASON_CAPABILITY_UNSUPPORTED
        assert "edit" in skipped.error
        assert skipped.chain_position == 0
        assert result.attempts[1].chain_position == 1
        assert len(alpha.calls) == 1  # only the generate
        assert beta.calls[0].source_image is not None
        assert (result.fallback_used.provider, result.original_request.provider) == ("beta", "alpha")


async def test_skip_a_model_that_takes_fewer_reference_images(tmp_path):
    alpha = ScriptedProvider("alpha", [profile("alpha", "alpha-1", max_reference_images=1)])
    beta = ScriptedProvider("beta")
    references = [types_pb2.ImageData(data=png_bytes(16, 16)) for _ in range(2)]
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")]) as h:
        result = await h.generation.GenerateImage(
            gen_pb2.GenerateImageRequest(prompt="x", reference_image_data=references)
        )
        assert _summary(result.attempts) == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_SKIPPED_CAPABILITY),
            ("beta", Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
        ]
        assert "reference" in result.attempts[0].error
        assert alpha.calls == []
        assert len(beta.calls[0].reference_images) == 2

        single = await h.generation.GenerateImage(
            gen_pb2.GenerateImageRequest(prompt="x", reference_image_data=references[:1])
        )
        assert single.provider == "alpha"


async def test_skip_a_provider_that_is_not_configured(tmp_path):
    alpha = ScriptedProvider("alpha", is_configured=False)
    beta = ScriptedProvider("beta")
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")]) as h:
        sid = await _session(h)
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        assert _summary(result.attempts) == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_SKIPPED_NOT_CONFIGURED),
            ("beta", Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
        ]
        assert result.attempts[0].reason == Reason.ERROR_REASON_PROVIDER_NOT_CONFIGURED
        assert "SCRIPTED_API_KEY" in result.attempts[0].error
        assert alpha.calls == []

        alpha.is_configured = True
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        assert result.provider == "alpha"
        assert not result.HasField("fallback_used")


async def test_retryable_failure_moves_to_the_next_pair(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderUnavailable("503 from alpha"))])
    beta = ScriptedProvider("beta")
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")], retry_attempts=0) as h:
        sid = await _session(h)
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        assert _summary(result.attempts) == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE),
            ("beta", Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
        ]
        assert [a.attempt_number for a in result.attempts] == [1, 2]
        assert [a.chain_position for a in result.attempts] == [0, 1]
        assert result.attempts[0].reason == Reason.ERROR_REASON_PROVIDER_UNAVAILABLE
        assert result.attempts[0].error == "503 from alpha"
        assert (result.fallback_used.provider, result.fallback_used.model) == ("beta", "beta-1")
        assert (result.original_request.provider, result.original_request.model) == ("alpha", "alpha-1")
        assert len(alpha.calls) == 1


async def test_retry_with_backoff_on_the_same_pair(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderUnavailable("blip")), Succeed()])
    beta = ScriptedProvider("beta")
    async with running_server(
        tmp_path,
        [alpha, beta],
        fallback_chain=[("beta", "beta-1")],
        retry_attempts=2,
        retry_base_delay_s=0.1,
        retry_max_delay_s=1.0,
    ) as h:
        sid = await _session(h)
        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        assert (result.provider, result.model) == ("alpha", "alpha-1")
        assert not result.HasField("fallback_used")
        assert _summary(result.attempts) == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE),
            ("alpha", Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
        ]
        assert [a.attempt_number for a in result.attempts] == [1, 2]
        assert [a.chain_position for a in result.attempts] == [0, 0]
        assert len(alpha.calls) == 2
        assert alpha.call_times[1] - alpha.call_times[0] >= 0.05  # backoff: uniform(base/2, base)
        assert beta.calls == []


async def test_retry_after_is_honoured(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderRateLimited("429", retry_after=0.4)), Succeed()])
    async with running_server(tmp_path, [alpha], retry_attempts=1) as h:
        result = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x"))
        assert result.provider == "alpha"
        assert result.attempts[0].reason == Reason.ERROR_REASON_PROVIDER_RATE_LIMITED
        assert alpha.call_times[1] - alpha.call_times[0] >= 0.4


async def test_retry_after_reaches_the_caller_when_everything_is_rate_limited(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderRateLimited("429", retry_after=0.3))])
    beta = ScriptedProvider("beta", script=[Fail(ProviderRateLimited("429", retry_after=1.5))])
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")], retry_attempts=0) as h:
        error = await expect_error(h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x")))
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.reason == "PROVIDER_RATE_LIMITED"
        assert error.retry_delay_s == 1.5
        assert [a.provider for a in error.attempts] == ["alpha", "beta"]


async def test_rejection_stops_the_chain(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderRejected("prompt violates the format"))])
    beta = ScriptedProvider("beta")
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")], retry_attempts=2) as h:
        sid = await _session(h)
        error = await expect_error(h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x")))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert error.reason == "PROVIDER_REJECTED"
        assert "prompt violates the format" in error.message
        assert _summary(error.attempts) == [("alpha", Outcome.ATTEMPT_OUTCOME_FAILED)]
        assert error.attempts[0].reason == Reason.ERROR_REASON_PROVIDER_REJECTED
        assert len(alpha.calls) == 1
        assert beta.calls == []

        history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
        assert [t.status for t in history.turns] == [Turn.STATUS_FAILED]
        assert _summary(history.turns[0].attempts) == [("alpha", Outcome.ATTEMPT_OUTCOME_FAILED)]
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.status == "ready"
        assert not session.HasField("current_image")


async def test_content_refusal_moves_on_without_retrying(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ContentRefused("safety filter"))])
    beta = ScriptedProvider("beta")
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")], retry_attempts=2) as h:
        result = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x"))
        assert _summary(result.attempts) == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_REFUSED),
            ("beta", Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
        ]
        assert result.attempts[0].reason == Reason.ERROR_REASON_CONTENT_REFUSED
        assert len(alpha.calls) == 1
        assert result.fallback_used.provider == "beta"


async def test_all_failing_differently_is_one_unavailable_error_with_every_attempt(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderUnavailable("alpha down"))])
    beta = ScriptedProvider("beta", script=[Fail(ContentRefused("beta refuses"))])
    gamma = ScriptedProvider("gamma", is_configured=False)
    async with running_server(
        tmp_path,
        [alpha, beta, gamma],
        fallback_chain=[("beta", "beta-1"), ("gamma", "gamma-1")],
        retry_attempts=1,
    ) as h:
        sid = await _session(h)
        error = await expect_error(h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x")))
        assert error.code == grpc.StatusCode.UNAVAILABLE
        assert error.reason == "ALL_PROVIDERS_FAILED"
        assert _summary(error.attempts) == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE),
            ("alpha", Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE),
            ("beta", Outcome.ATTEMPT_OUTCOME_REFUSED),
            ("gamma", Outcome.ATTEMPT_OUTCOME_SKIPPED_NOT_CONFIGURED),
        ]
        assert [a.chain_position for a in error.attempts] == [0, 0, 1, 2]
        assert [a.reason for a in error.attempts] == [
            Reason.ERROR_REASON_PROVIDER_UNAVAILABLE,
            Reason.ERROR_REASON_PROVIDER_UNAVAILABLE,
            Reason.ERROR_REASON_CONTENT_REFUSED,
            Reason.ERROR_REASON_PROVIDER_NOT_CONFIGURED,
        ]
        for name in ("alpha down", "beta refuses", "gamma"):
            assert name in error.message

        history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
        assert _summary(history.turns[0].attempts) == _summary(error.attempts)


async def test_all_failing_alike_reports_the_shared_status(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderUnavailable("alpha down"))])
    beta = ScriptedProvider("beta", script=[Fail(ProviderUnavailable("beta down"))])
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")], retry_attempts=0) as h:
        error = await expect_error(h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x")))
        assert error.code == grpc.StatusCode.UNAVAILABLE
        assert error.reason == "PROVIDER_UNAVAILABLE"
        assert [a.provider for a in error.attempts] == ["alpha", "beta"]

        alpha.script = [Fail(ContentRefused("no"))]
        beta.script = [Fail(ContentRefused("no"))]
        error = await expect_error(h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x")))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert error.reason == "CONTENT_REFUSED"
        assert _summary(error.attempts) == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_REFUSED),
            ("beta", Outcome.ATTEMPT_OUTCOME_REFUSED),
        ]


async def test_cooldown_after_repeated_failures_skips_the_pair(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderUnavailable("down"))])
    beta = ScriptedProvider("beta")
    async with running_server(
        tmp_path,
        [alpha, beta],
        fallback_chain=[("beta", "beta-1")],
        retry_attempts=1,
        cooldown_failures=2,
        cooldown_s=60,
    ) as h:
        first = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x"))
        assert first.provider == "beta"
        assert len(alpha.calls) == 2

        providers = {p.name: p for p in (await h.generation.ListProviders(gen_pb2.ListProvidersRequest())).providers}
        assert list(providers["alpha"].models_in_cooldown) == ["alpha-1"]
        assert list(providers["beta"].models_in_cooldown) == []
        models = {m.model: m for m in (await h.generation.ListModels(gen_pb2.ListModelsRequest())).models}
        assert models["alpha-1"].in_cooldown
        assert not models["beta-1"].in_cooldown

        second = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x"))
        assert _summary(second.attempts) == [
            ("alpha", Outcome.ATTEMPT_OUTCOME_SKIPPED_COOLDOWN),
            ("beta", Outcome.ATTEMPT_OUTCOME_SUCCEEDED),
        ]
        assert second.attempts[0].reason == Reason.ERROR_REASON_PROVIDER_COOLDOWN
        assert len(alpha.calls) == 2


async def test_a_provider_that_refuses_connections_is_not_retried(tmp_path):
    dead = ScriptedProvider("alpha", script=[ProviderUnreachable("alpha: cannot connect")])
    alive = ScriptedProvider("beta")
    async with running_server(tmp_path, [dead, alive], retry_attempts=2, fallback_chain=[("beta", "beta-1")]) as h:
        result = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x", omit_image_data=True))
        assert result.provider == "beta"
        assert len(dead.calls) == 1  # with two attempts allowed, a retry would have called alpha again
        assert result.attempts[0].outcome == types_pb2.AttemptOutcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE
