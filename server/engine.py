"""The fallback engine: walks a chain of provider/model pairs until one serves.

For each pair it skips what cannot be tried (unconfigured, cooling down, incapable),
adapts the request to the model's profile (reporting every degradation), retries
retryable failures with exponential backoff and jitter within the deadline, and moves
down the chain. A non-retryable rejection stops the walk. When every pair fails, one
error carries every attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aigen.server import errors
from aigen.server.config import Settings
from aigen.server.health import ModelHealth
from aigen.server.imaging import TIER_EDGE, ImageInfo, inspect_image, nearest_ratio, ratio_value, target_dimensions
from aigen.server.observability.observer import NULL_OBSERVER, GenerationObserver
from aigen.server.progress import ProgressReporter
from aigen.server.providers.base import ImageProvider, ImageRequest, ImageResult, ModelProfile, ProviderRegistry
from aigen.server.store.records import AttemptRecord
from aigen.v1 import types_pb2

log = logging.getLogger(__name__)
Outcome = types_pb2.AttemptOutcome
Reason = types_pb2.ErrorReason


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated generation: the base request, the chain to walk and the deadline."""

    request: ImageRequest
    chain: tuple[tuple[str, str], ...]  # requested pair first
    deadline: float  # time.monotonic() value
    state_provider: str = ""  # provider that produced request.provider_state
    allowed: tuple[str, ...] = ()  # providers the project may use; empty allows all
    # Stores an accepted output from the worker thread that inspects it; returns its sha256.
    keep: Callable[[bytes], str] | None = None


@dataclass(frozen=True, slots=True)
class Served:
    """The image a pair produced, with everything tried on the way."""

    result: ImageResult
    profile: ModelProfile
    chain_position: int
    attempts: tuple[AttemptRecord, ...]
    degradations: tuple[str, ...]
    mime_type: str
    width: int
    height: int
    sha256: str = ""  # set when the plan's `keep` stored the image


class FallbackEngine:
    """Runs plans against the provider registry."""

    def __init__(
        self,
        registry: ProviderRegistry,
        settings: Settings,
        health: ModelHealth,
        observer: GenerationObserver = NULL_OBSERVER,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.health = health
        self.observer = observer

    async def run(self, plan: Plan, reporter: ProgressReporter, attempts: list[AttemptRecord] | None = None) -> Served:
        """Walk the chain; return the first image or raise one AigenError with every attempt.

        When `attempts` is given, every attempt is appended to it as it ends, so a caller
        whose walk is cancelled still knows what was tried.
        """
        if not reporter.active and plan.request.previews:  # nobody watches: providers may skip streaming
            plan = dataclasses.replace(plan, request=dataclasses.replace(plan.request, previews=False))
        walk = _Walk(self, plan, reporter, attempts)
        return await walk.run()


class _Walk:
    """One walk down a chain (keeps the attempt list)."""

    def __init__(
        self,
        engine: FallbackEngine,
        plan: Plan,
        reporter: ProgressReporter,
        attempts: list[AttemptRecord] | None = None,
    ) -> None:
        self.engine = engine
        self.plan = plan
        self.reporter = reporter
        self.attempts: list[AttemptRecord] = attempts if attempts is not None else []
        self.failures: list[errors.AigenError] = []

    async def run(self) -> Served:
        for position, (provider_name, model_name) in enumerate(self.plan.chain):
            served = await self._try_pair(position, provider_name, model_name)
            if served is not None:
                return served
        raise self._final_error()

    async def _try_pair(self, position: int, provider_name: str, model_name: str) -> Served | None:
        provider = self.engine.registry.get(provider_name)
        profile = self.engine.registry.find_model(provider_name, model_name)
        if provider is None or profile is None:
            self._skip(
                position,
                provider_name,
                model_name,
                Outcome.ATTEMPT_OUTCOME_SKIPPED_CAPABILITY,
                errors.CapabilityUnsupported(f"unknown model {provider_name}/{model_name}"),
            )
            return None
        if self.plan.allowed and provider_name not in self.plan.allowed:
            self._skip(
                position,
                provider_name,
                profile.name,
                Outcome.ATTEMPT_OUTCOME_SKIPPED_NOT_ALLOWED,
                errors.PermissionDenied(f"{provider_name} is not allowed for this project"),
            )
            return None
        if not provider.configured:
            message = f"{provider_name} is not configured; set {provider.credential_env}"
            self._skip(
                position,
                provider_name,
                profile.name,
                Outcome.ATTEMPT_OUTCOME_SKIPPED_NOT_CONFIGURED,
                errors.ProviderNotConfigured(message),
            )
            return None
        pair = (provider_name, profile.name)
        if self.engine.health.in_cooldown(pair):
            self._skip(
                position,
                provider_name,
                profile.name,
                Outcome.ATTEMPT_OUTCOME_SKIPPED_COOLDOWN,
                errors.ProviderUnavailable(
                    f"{provider_name}/{profile.name} is cooling down after repeated failures",
                    reason=Reason.ERROR_REASON_PROVIDER_COOLDOWN,
                ),
            )
            return None
        try:
            request, degradations = adapt_request(self.plan, provider_name, profile)
        except errors.CapabilityUnsupported as exc:
            self._skip(position, provider_name, profile.name, Outcome.ATTEMPT_OUTCOME_SKIPPED_CAPABILITY, exc)
            return None
        return await self._call_with_retries(position, provider, profile, request, degradations)

    async def _call_with_retries(
        self,
        position: int,
        provider: ImageProvider,
        profile: ModelProfile,
        request: ImageRequest,
        degradations: tuple[str, ...],
    ) -> Served | None:
        settings = self.engine.settings
        pair = (provider.name, profile.name)
        for retry in range(settings.retry_attempts + 1):
            outcome = await self._attempt(position, provider, profile, request)
            if isinstance(outcome, Served):
                if not degradations:
                    return outcome
                return dataclasses.replace(outcome, degradations=degradations + outcome.degradations)
            if not outcome.retryable:
                if isinstance(outcome, (errors.ContentRefused, errors.CapabilityUnsupported)):
                    return None
                raise self._stop_error(outcome)
            self.engine.health.record_failure(pair, profile.typical_latency_s)
            if isinstance(outcome, errors.ProviderUnreachable):
                return None  # nothing listens there: the next pair, not a retry
            delay = _backoff(retry, settings, outcome.retry_after)
            if retry == settings.retry_attempts or time.monotonic() + delay >= self.plan.deadline:
                return None
            await asyncio.sleep(delay)
        return None

    async def _attempt(
        self, position: int, provider: ImageProvider, profile: ModelProfile, request: ImageRequest
    ) -> Served | errors.ProviderError:
        pair = (provider.name, profile.name)
        number = len(self.attempts) + 1
        started = time.monotonic()
        remaining = self.plan.deadline - started
        budget = min(remaining, self.engine.settings.timeout_for(*pair))
        expected = self.engine.health.expected_latency(pair, profile.typical_latency_s)
        running = types_pb2.Attempt(
            provider=provider.name, model=profile.name, attempt_number=number, chain_position=position
        )
        self.reporter.start_attempt(running, expected, fallback=any(a.outcome for a in self.attempts))
        try:
            if budget <= 0:
                raise TimeoutError
            async with asyncio.timeout(budget):
                result = await provider.generate(request, self.reporter.on_provider_progress)
            settings = self.engine.settings
            info, kept = await asyncio.to_thread(
                _accept, result.data, settings.max_download_bytes, settings.max_image_pixels, self.plan.keep
            )
        except asyncio.CancelledError:
            self._record(
                position, pair, number, started, Outcome.ATTEMPT_OUTCOME_CANCELLED, errors.Cancelled("cancelled")
            )
            raise
        except TimeoutError:
            error = self._timeout_error(pair, budget, remaining)
            if isinstance(error, errors.DeadlineExceeded):  # the whole generation ran out of time
                self._record(position, pair, number, started, Outcome.ATTEMPT_OUTCOME_CANCELLED, error)
                raise self._deadline_error(error) from None
            self._record(position, pair, number, started, Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE, error)
            return error
        except errors.InvalidArgument:
            error = errors.ProviderUnavailable(f"{provider.name}/{profile.name} returned an undecodable image")
            self._record(position, pair, number, started, Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE, error)
            return error
        except errors.ProviderError as error:
            self._record(position, pair, number, started, _outcome_of(error), error)
            return error
        except Exception as exc:  # an adapter bug must not take the chain down
            log.exception("provider %s/%s raised an unexpected error", *pair)
            error = errors.ProviderUnavailable(
                f"{provider.name}/{profile.name} failed unexpectedly ({type(exc).__name__})"
            )
            self._record(position, pair, number, started, Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE, error)
            return error
        finally:
            self.reporter.stop_attempt()
        elapsed = time.monotonic() - started
        self.engine.health.record_success(pair, elapsed, profile.typical_latency_s)
        self._record(position, pair, number, started, Outcome.ATTEMPT_OUTCOME_SUCCEEDED, None)
        if isinstance(kept, BaseException):  # storing failed: the generation's error, not the provider's
            raise kept
        return Served(
            result=result,
            profile=profile,
            chain_position=position,
            attempts=tuple(self.attempts),
            degradations=tuple(result.degradations),
            mime_type=info.mime_type,
            width=info.width,
            height=info.height,
            sha256=kept or "",
        )

    def _timeout_error(self, pair: tuple[str, str], budget: float, remaining: float) -> errors.AigenError:
        if budget >= remaining:
            return errors.DeadlineExceeded(f"the generation deadline expired while {pair[0]}/{pair[1]} was working")
        return errors.ProviderTimeout(f"{pair[0]}/{pair[1]} did not answer within {budget:.0f} s")

    def _record(
        self,
        position: int,
        pair: tuple[str, str],
        number: int,
        started: float,
        outcome: int,
        error: errors.AigenError | None,
    ) -> None:
        self.attempts.append(
            AttemptRecord(
                provider=pair[0],
                model=pair[1],
                attempt_number=number,
                chain_position=position,
                outcome=outcome,
                reason=error.reason if error else 0,
                error=error.message if error else "",
                duration_s=time.monotonic() - started,
            )
        )
        self.engine.observer.attempt_ended(self.attempts[-1])
        if error is not None:
            self.failures.append(error)

    def _skip(self, position: int, provider: str, model: str, outcome: int, error: errors.AigenError) -> None:
        self.attempts.append(
            AttemptRecord(
                provider=provider,
                model=model,
                attempt_number=0,
                chain_position=position,
                outcome=outcome,
                reason=error.reason,
                error=error.message,
            )
        )
        self.engine.observer.attempt_ended(self.attempts[-1])
        self.failures.append(error)

    def _stop_error(self, error: errors.ProviderError) -> errors.AigenError:
        return type(error)(error.message, attempts=self.attempts, retry_after=error.retry_after)

    def _deadline_error(self, error: errors.AigenError) -> errors.AigenError:
        return errors.DeadlineExceeded(error.message, attempts=self.attempts)

    def _final_error(self) -> errors.AigenError:
        """The most specific error: the shared reason when every pair failed alike."""
        attempts = tuple(self.attempts)
        reasons = {failure.reason for failure in self.failures}
        summary = "; ".join(f"{a.provider}/{a.model}: {a.error}" for a in self.attempts)
        if len(reasons) == 1 and self.failures:
            first = self.failures[-1]
            retry_after = max((f.retry_after or 0 for f in self.failures), default=0) or None
            return errors.AigenError(
                f"no provider could serve the request: {summary}",
                reason=first.reason,
                code=first.code,
                attempts=attempts,
                retry_after=retry_after,
            )
        return errors.AllProvidersFailed(f"every provider in the chain failed: {summary}", attempts=attempts)


def _accept(
    data: bytes, max_bytes: int, max_pixels: int, keep: Callable[[bytes], str] | None
) -> tuple[ImageInfo, str | Exception | None]:
    """Inspect an output (InvalidArgument when it is no usable image), then store it with `keep`.

    One worker call for both. A failure to store is returned, not raised, so the attempt still
    counts as served and the error reaches the caller as the generation's own.
    """
    info = inspect_image(data, "output", max_bytes, max_pixels)
    if keep is None:
        return info, None
    try:
        return info, keep(data)
    except Exception as exc:
        return info, exc


def _outcome_of(error: errors.ProviderError) -> int:
    if isinstance(error, errors.ContentRefused):
        return Outcome.ATTEMPT_OUTCOME_REFUSED
    if isinstance(error, errors.CapabilityUnsupported):
        return Outcome.ATTEMPT_OUTCOME_SKIPPED_CAPABILITY
    return Outcome.ATTEMPT_OUTCOME_FAILED_RETRYABLE if error.retryable else Outcome.ATTEMPT_OUTCOME_FAILED


def _backoff(retry: int, settings: Settings, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never shorter than the provider's Retry-After."""
    ceiling = min(settings.retry_max_delay_s, settings.retry_base_delay_s * (2**retry))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


def adapt_request(plan: Plan, provider_name: str, profile: ModelProfile) -> tuple[ImageRequest, tuple[str, ...]]:
    """Fit the request to a model's profile; raise CapabilityUnsupported when it cannot."""
    request = plan.request
    label = f"{provider_name}/{profile.name}"
    if request.source_image is not None and not profile.can_edit:
        raise errors.CapabilityUnsupported(f"{label} cannot edit images")
    if len(request.reference_images) > profile.max_reference_images:
        raise errors.CapabilityUnsupported(
            f"{label} takes at most {profile.max_reference_images} reference images, "
            f"got {len(request.reference_images)}"
        )
    degradations: list[str] = []
    changes: dict = {"model": profile.name}
    if plan.state_provider != provider_name:
        changes["provider_state"] = None
    if request.mask is not None and not profile.supports_mask:
        changes["mask"] = None
    ratio, tier = request.aspect_ratio, request.image_size
    if ratio not in profile.aspect_ratios:
        ratio = nearest_ratio(ratio_value(ratio), profile.aspect_ratios)
        degradations.append(f"aspect_ratio {request.aspect_ratio} -> {ratio} on {profile.name}")
    if tier not in profile.image_sizes:
        tier = min(profile.image_sizes, key=lambda t: abs(TIER_EDGE[t] - TIER_EDGE[request.image_size]))
        degradations.append(f"image_size {request.image_size} -> {tier} on {profile.name}")
    if (ratio, tier) != (request.aspect_ratio, request.image_size):
        changes.update(aspect_ratio=ratio, image_size=tier)
        if not request.size:
            changes["width"], changes["height"] = target_dimensions(ratio, tier)
    return dataclasses.replace(request, **changes), tuple(degradations)


def build_chain(
    requested: tuple[str, str], fallback: Sequence[tuple[str, str]], extra: Sequence[tuple[str, str]] = ()
) -> tuple[tuple[str, str], ...]:
    """The requested pair first, then the fallback pairs and `extra`, without repeats."""
    chain: list[tuple[str, str]] = []
    for pair in (requested, *fallback, *extra):
        if pair not in chain:
            chain.append(pair)
    return tuple(chain)
