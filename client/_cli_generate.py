"""Running one streaming generation in the CLI: progress, the saved file, the summary."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from rich.markup import escape

from aigen.client._cli_common import STDERR, STDOUT
from aigen.client._cli_render import progress_view
from aigen.client._errors import AigenError
from aigen.client._stream import GenerationStream
from aigen.client._types import GenerationResult


def output_path(result: GenerationResult, output: Path | None) -> Path:
    """The file to write: `output`, else <image id> with the extension of its type."""
    if output is not None:
        return output
    extension = mimetypes.guess_extension(result.content_type) or ".png"
    return Path(f"{result.image_id}{extension}")


async def follow(stream: GenerationStream, json_mode: bool) -> GenerationResult:
    """Show the stream's events until its result (or raise its error)."""
    with progress_view(json_mode, STDOUT, STDERR) as view:
        try:
            async for event in stream:
                view.show(event)
        except AigenError as error:
            view.failed(error)
            raise
    assert stream.result is not None
    return stream.result


def summary(result: GenerationResult, path: Path) -> str:
    """One line: where the image went and who served it."""
    served = f"{result.provider}/{result.model}"
    size = f"{result.width}x{result.height} {result.content_type}"
    line = f"saved {path} ({size}) from {served} in {result.duration:.1f}s"
    if result.fallback_used is not None and result.original_request is not None:
        line += f", fallback from {result.original_request}"
    if result.session_id:
        line += f"; session {result.session_id} turn {result.turn_id}"
    return line


async def generate_to_file(stream: GenerationStream, output: Path | None, json_mode: bool) -> GenerationResult:
    """Follow the stream, write the image, report it (on stderr in JSON mode)."""
    result = await follow(stream, json_mode)
    path = result.save(output_path(result, output))
    console = STDERR if json_mode else STDOUT
    console.print(escape(summary(result, path)), highlight=False)
    for degradation in result.degradations:
        console.print(f"  note: {escape(degradation)}", highlight=False)
    return result
