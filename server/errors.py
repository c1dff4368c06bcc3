"""Domain errors. Each carries its gRPC status and ErrorReason; one interceptor maps them.

Provider adapters translate vendor exceptions into ProviderError subclasses at the edge,
so nothing upstream ever sees a vendor exception.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from aigen.server.store.records import AttemptRecord
from aigen.v1 import types_pb2

Reason = types_pb2.ErrorReason


class AigenError(Exception):
    """Base of every error the gateway reports to callers."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: int = Reason.ERROR_REASON_INTERNAL

    def __init__(
        self,
        message: str,
        *,
        field_violations: Sequence[tuple[str, str]] = (),
        retry_after: float | None = None,
        attempts: Sequence[AttemptRecord] = (),
        reason: int | None = None,
        code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field_violations = tuple(field_violations)
        self.retry_after = retry_after
        self.attempts = tuple(attempts)
        if reason is not None:
            self.reason = reason
        if code is not None:
            self.code = code


class InvalidArgument(AigenError):
    """A request field is invalid; `field_violations` names it."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = Reason.ERROR_REASON_INVALID_INPUT

    def __init__(self, field: str, description: str, **kwargs) -> None:
        kwargs.setdefault("field_violations", [(field, description)])
        super().__init__(f"{field}: {description}", **kwargs)


class NotFound(AigenError):
    """A session, image or layer does not exist (or belongs to another project)."""

    code = grpc.StatusCode.NOT_FOUND
    reason = Reason.ERROR_REASON_SESSION_NOT_FOUND


def project_not_found(project_id: str) -> NotFound:
    """NotFound for a project that does not exist, or that the caller may not see."""
    return NotFound(f"project {project_id} not found", reason=Reason.ERROR_REASON_PROJECT_NOT_FOUND)


class FailedPrecondition(AigenError):
    """The resource is not in a state that allows the operation."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = Reason.ERROR_REASON_NO_CURRENT_IMAGE


class SessionBusy(AigenError):
    """The session already runs a generation (AIP-151: ABORTED)."""

    code = grpc.StatusCode.ABORTED
    reason = Reason.ERROR_REASON_SESSION_BUSY


class Unauthenticated(AigenError):
    """Credentials are missing, wrong or expired."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = Reason.ERROR_REASON_UNAUTHENTICATED


class PermissionDenied(AigenError):
    """The credentials do not allow this."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = Reason.ERROR_REASON_PERMISSION_DENIED


class RateLimited(AigenError):
    """The caller exceeded its rate limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = Reason.ERROR_REASON_RATE_LIMITED


class DeadlineExceeded(AigenError):
    """The generation deadline expired."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = Reason.ERROR_REASON_DEADLINE_EXCEEDED


class Cancelled(AigenError):
    """The caller cancelled."""

    code = grpc.StatusCode.CANCELLED
    reason = Reason.ERROR_REASON_CANCELLED


class ProviderError(AigenError):
    """A provider call failed. `retryable` decides whether the engine tries again."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = Reason.ERROR_REASON_PROVIDER_UNAVAILABLE
    retryable = True


class ProviderUnavailable(ProviderError):
    """Unreachable, connection refused, 5xx, or a malformed answer."""


class ProviderUnreachable(ProviderUnavailable):
    """The provider's host refused or could not take the connection.

    Retrying the same pair at once only adds latency, so the engine moves down the chain
    straight away (the failure still counts towards the pair's cooldown).
    """


class ProviderRateLimited(ProviderError):
    """The provider answered 429; `retry_after` carries its Retry-After."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = Reason.ERROR_REASON_PROVIDER_RATE_LIMITED


class ProviderTimeout(ProviderError):
    """The provider did not answer in time."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = Reason.ERROR_REASON_PROVIDER_TIMEOUT


class ProviderNotConfigured(ProviderError):
    """The provider has no credentials (or they were rejected)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = Reason.ERROR_REASON_PROVIDER_NOT_CONFIGURED


class ProviderRejected(ProviderError):
    """The provider rejected the request as invalid: retrying elsewhere will not help."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = Reason.ERROR_REASON_PROVIDER_REJECTED
    retryable = False


class ContentRefused(ProviderError):
    """The provider refused the content (safety filter, moderation, no image returned).

    Not retried on the same model; the chain moves on, since policies differ by provider.
    """

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = Reason.ERROR_REASON_CONTENT_REFUSED
    retryable = False


class CapabilityUnsupported(ProviderError):
    """The model cannot honour the request; the engine skips it."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = Reason.ERROR_REASON_CAPABILITY_UNSUPPORTED
    retryable = False


class AllProvidersFailed(AigenError):
    """Every pair of the chain failed or was skipped; `attempts` lists each."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = Reason.ERROR_REASON_ALL_PROVIDERS_FAILED
