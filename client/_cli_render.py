"""What the `aigen` CLI shows: generation progress (live bar, plain lines or JSON) and JSON values."""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from aigen.client._errors import AigenError
from aigen.client._types import ProgressEvent


def jsonable(value: Any) -> Any:
    """Typed results as JSON values: no `proto`, no image bytes, datetimes in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name != "proto" and not isinstance(getattr(value, f.name), bytes)
        }
    if isinstance(value, tuple | list):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


def error_json(error: AigenError) -> dict[str, Any]:
    """An error as a JSON value."""
    return {
        "code": error.code.name,
        "reason": error.reason,
        "message": error.message,
        "field_violations": [{"field": f, "description": d} for f, d in error.field_violations],
        "retry_after": error.retry_after,
        "attempts": jsonable(error.attempts),
    }


def dumps(value: Any) -> str:
    """One line of JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def percent_text(event: ProgressEvent) -> str:
    """The percent, marked "~... est." when it is an estimate."""
    if event.percent_estimated:
        return f"~{event.percent:.0f}% est."
    return f"{event.percent:.0f}%"


def eta_text(event: ProgressEvent) -> str:
    """The ETA ("ETA 3s"), empty when unknown."""
    return f"ETA {event.eta:.0f}s" if event.eta is not None else ""


def attempt_text(event: ProgressEvent) -> str:
    """The provider/model being tried, with the attempt number."""
    if event.attempt is None:
        return ""
    return f"{event.attempt.provider}/{event.attempt.model} (attempt {event.attempt.attempt_number})"


class ProgressView(Protocol):
    """Shows the events of one generation."""

    def __enter__(self) -> ProgressView: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def show(self, event: ProgressEvent) -> None:
        """Show one event."""

    def failed(self, error: AigenError) -> None:
        """Show the failure that ended the stream."""


class LiveBar:
    """A live rich progress bar (terminals): phase, percent, ETA, provider/model, fallbacks."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.fields[phase]:<10}"),
            BarColumn(),
            TextColumn("{task.fields[percent]:>10}"),
            TextColumn("{task.fields[eta]:>8}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[attempt]}"),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("generate", total=100, phase="queued", percent="", eta="", attempt="")

    def __enter__(self) -> LiveBar:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()

    def show(self, event: ProgressEvent) -> None:
        """Update the bar; fallbacks are printed above it."""
        if event.phase == "fallback":
            self.progress.console.print(f"[yellow]↪ {escape(event.message)}[/]", highlight=False)
        self.progress.update(
            self.task,
            completed=event.percent,
            phase=event.phase,
            percent=percent_text(event),
            eta=eta_text(event),
            attempt=escape(attempt_text(event)),
        )

    def failed(self, error: AigenError) -> None:
        """Nothing to add: the error is explained after the bar is gone."""


class StatusLines:
    """One plain line per change of phase, attempt or whole percent (pipes and logs)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._last: tuple = ()

    def __enter__(self) -> StatusLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def show(self, event: ProgressEvent) -> None:
        """Print a line unless nothing visible changed."""
        key = (event.phase, attempt_text(event), round(event.percent))
        if key == self._last:
            return
        self._last = key
        parts = [event.phase, percent_text(event), eta_text(event), attempt_text(event)]
        if event.phase == "fallback":
            parts.append(event.message)
        self.console.print(escape("  ".join(p for p in parts if p)), highlight=False, soft_wrap=True)

    def failed(self, error: AigenError) -> None:
        """Nothing to add: the error is explained afterwards."""


class JsonEvents:
    """One JSON object per event on stdout; the failure as a final `failed` event."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def __enter__(self) -> JsonEvents:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def show(self, event: ProgressEvent) -> None:
        """Print the event as JSON."""
        self.console.out(dumps(jsonable(event)), highlight=False)

    def failed(self, error: AigenError) -> None:
        """Print the failure as JSON (the FAILED event with its error, or an error alone)."""
        value = jsonable(error.event) if error.event is not None else {"phase": "failed"}
        value["error"] = error_json(error)
        self.console.out(dumps(value), highlight=False)


def progress_view(json_mode: bool, stdout: Console, stderr: Console) -> ProgressView:
    """JSON events, a live bar on a terminal, else plain status lines on stderr."""
    if json_mode:
        return JsonEvents(stdout)
    if stderr.is_terminal:
        return LiveBar(stderr)
    return StatusLines(stderr)
