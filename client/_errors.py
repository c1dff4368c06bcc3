"""Errors raised by the client, one class per family of the server's ErrorInfo reasons.

The reason is read from the `google.rpc.ErrorInfo` detail of the call's rich status (or of a
streaming FAILED event); calls that carry none are classified by their gRPC status code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from aigen.client._types import Attempt, ProgressEvent
from aigen.v1 import types_pb2

_CREDENTIAL_ENV = re.compile(r"\bset ([A-Z][A-Z0-9_]*)")


class AigenError(Exception):
    """Base of every error the client raises.

    `reason` is the ErrorInfo reason ("SESSION_BUSY"), "" when the server sent none;
    `code` the gRPC status code; `status` the decoded google.rpc.Status when present;
    `event` the FAILED ProgressEvent when a streaming generation failed.
    """

    event: ProgressEvent | None = None

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        field_violations: Sequence[tuple[str, str]] = (),
        retry_after: float | None = None,
        attempts: Sequence[Attempt] = (),
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.code = code
        self.field_violations = tuple(field_violations)
        self.retry_after = retry_after
        self.attempts = tuple(attempts)
        self.status = status


class InvalidArgumentError(AigenError):
    """A request field is invalid; `field_violations` lists (field, description) pairs."""

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the invalid fields."""
        return tuple(name for name, _ in self.field_violations)


class PayloadTooLargeError(InvalidArgumentError):
    """The request or an image in it is larger than allowed."""


class NotFoundError(AigenError):
    """The session, image or layer does not exist."""


class FailedPreconditionError(AigenError):
    """The session is not in a state that allows the operation (no image yet, not layered)."""


class SessionBusyError(AigenError):
    """The session already runs a generation."""


class ProviderError(AigenError):
    """No provider could serve the generation; `attempts` lists what was tried."""


class ProviderNotConfiguredError(ProviderError):
    """The provider has no credentials; `credential_envs` names the variables to set."""

    @property
    def credential_envs(self) -> tuple[str, ...]:
        """Environment variables named by the attempts (or the message), in order."""
        texts = [attempt.error for attempt in self.attempts] or [self.message]
        found = [name for text in texts for name in _CREDENTIAL_ENV.findall(text)]
        return tuple(dict.fromkeys(found))


class AllProvidersFailedError(ProviderError):
    """Every pair of the fallback chain failed or was skipped."""


class ContentRefusedError(ProviderError):
    """The providers refused the content (safety filter, moderation)."""


class RateLimitedError(AigenError):
    """The caller or the provider was rate limited; `retry_after` is in seconds when known."""


class UnauthenticatedError(AigenError):
    """Credentials are missing, wrong or expired."""


class PermissionDeniedError(AigenError):
    """The credentials do not allow this operation or provider."""


class DeadlineExceededError(AigenError):
    """The deadline expired before the server answered."""


class CancelledError(AigenError):
    """The call was cancelled."""


class UnavailableError(AigenError):
    """The server could not be reached."""


class InternalError(AigenError):
    """The server failed unexpectedly; the message carries a log id."""


_BY_REASON: dict[str, type[AigenError]] = {
    "INVALID_INPUT": InvalidArgumentError,
    "PAYLOAD_TOO_LARGE": PayloadTooLargeError,
    "CAPABILITY_UNSUPPORTED": ProviderError,
    "PROVIDER_REJECTED": ProviderError,
    "PROVIDER_UNAVAILABLE": ProviderError,
    "PROVIDER_TIMEOUT": ProviderError,
    "PROVIDER_COOLDOWN": ProviderError,
    "PROVIDER_NOT_CONFIGURED": ProviderNotConfiguredError,
    "ALL_PROVIDERS_FAILED": AllProvidersFailedError,
    "CONTENT_REFUSED": ContentRefusedError,
    "PROVIDER_RATE_LIMITED": RateLimitedError,
    "RATE_LIMITED": RateLimitedError,
    "SESSION_BUSY": SessionBusyError,
    "SESSION_NOT_FOUND": NotFoundError,
    "IMAGE_NOT_FOUND": NotFoundError,
    "LAYER_NOT_FOUND": NotFoundError,
    "PROJECT_NOT_FOUND": NotFoundError,
    "NO_CURRENT_IMAGE": FailedPreconditionError,
    "NOT_LAYERED": FailedPreconditionError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "CANCELLED": CancelledError,
    "UNAUTHENTICATED": UnauthenticatedError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "INTERNAL": InternalError,
}

_BY_CODE: dict[grpc.StatusCode, type[AigenError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: SessionBusyError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimitedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.INTERNAL: InternalError,
}

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def error_class(reason: str, code: grpc.StatusCode) -> type[AigenError]:
    """The class for a reason, else for the status code."""
    return _BY_REASON.get(reason) or _BY_CODE.get(code, AigenError)


def from_status(status: status_pb2.Status) -> AigenError:
    """The error described by a google.rpc.Status (a call's trailers or a FAILED event)."""
    code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
    reason, violations, retry_after, attempts = "", [], None, []
    for packed in status.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            reason = info.reason
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            packed.Unpack(bad)
            violations += [(v.field, v.description) for v in bad.field_violations]
        elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            packed.Unpack(retry)
            retry_after = retry.retry_delay.ToNanoseconds() / 1e9
        elif packed.Is(types_pb2.Attempt.DESCRIPTOR):
            attempt = types_pb2.Attempt()
            packed.Unpack(attempt)
            attempts.append(Attempt.from_proto(attempt))
    return error_class(reason, code)(
        status.message,
        reason=reason,
        code=code,
        field_violations=violations,
        retry_after=retry_after,
        attempts=attempts,
        status=status,
    )


def from_call(error: grpc.aio.AioRpcError | grpc.RpcError) -> AigenError:
    """The error for a failed call: its rich status when sent, else its code and details."""
    status = rpc_status.from_call(error)
    if status is not None:
        return from_status(status)
    code = error.code()
    return error_class("", code)(error.details() or code.name.lower(), code=code)
