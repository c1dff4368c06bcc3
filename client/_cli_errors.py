"""Exit codes of the `aigen` CLI, one per error class, and how errors are explained."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from aigen.client._errors import (
    AigenError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    ProviderNotConfiguredError,
    RateLimitedError,
    SessionBusyError,
    UnauthenticatedError,
    UnavailableError,
)

EXIT_INTERRUPTED = 130
EXIT_CODES: tuple[tuple[type[AigenError], int], ...] = (
    (InvalidArgumentError, 2),
    (NotFoundError, 3),
    (SessionBusyError, 4),
    (ProviderNotConfiguredError, 5),
    (ProviderError, 6),
    (UnauthenticatedError, 7),
    (PermissionDeniedError, 7),
    (RateLimitedError, 8),
    (DeadlineExceededError, 9),
)

EPILOG = (
    "Exit codes: 0 success, 1 other error (server unreachable, no current image, internal), "
    "2 invalid argument, 3 not found, 4 session busy, 5 provider not configured, "
    "6 all providers failed, 7 not authenticated or not allowed, 8 rate limited, "
    "9 deadline exceeded, 130 interrupted (Ctrl-C cancels the generation on the server)."
)


def exit_code(error: AigenError) -> int:
    """The exit code for an error: the first matching class, else 1."""
    for error_class, code in EXIT_CODES:
        if isinstance(error, error_class):
            return code
    return 1


def explain(error: AigenError, console: Console, address: str) -> None:
    """Print what went wrong and what to do about it."""
    console.print(f"[bold red]error[/] ({error.reason or error.code.name}): {escape(error.message)}")
    if isinstance(error, InvalidArgumentError):
        for field, description in error.field_violations:
            console.print(f"  field [bold]{escape(field)}[/]: {escape(description)}")
    if isinstance(error, ProviderNotConfiguredError):
        for name in error.credential_envs:
            console.print(f"  set [bold]{name}[/] in the server's environment and restart it")
        console.print("  or choose a configured provider: aigen providers")
    elif isinstance(error, ProviderError):
        for attempt in error.attempts:
            line = f"{attempt.provider}/{attempt.model}: {attempt.outcome} {attempt.error}"
            console.print(f"  attempt {attempt.attempt_number} {escape(line)}")
    if isinstance(error, RateLimitedError) and error.retry_after:
        console.print(f"  retry after {error.retry_after:.0f} s")
    if isinstance(error, UnauthenticatedError):
        console.print("  pass --api-key (or set AIGEN_API_KEY) or --app-token (AIGEN_APP_TOKEN)")
    if isinstance(error, UnavailableError):
        console.print(f"  is the server running at {address}? start it with: aigen serve")
