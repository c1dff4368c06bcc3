"""What every `aigen` command shares: the connection, the consoles, running a call, options."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from aigen.client._async_client import AsyncClient, GenerationOptions
from aigen.client._cli_errors import EXIT_INTERRUPTED, exit_code, explain
from aigen.client._cli_render import dumps, jsonable
from aigen.client._errors import AigenError
from aigen.client._types import ModelRef

T = TypeVar("T")
STDOUT = Console(soft_wrap=True)
STDERR = Console(stderr=True)


@dataclass(frozen=True)
class Connection:
    """Where the server is and how to authenticate."""

    address: str
    api_key: str | None = None
    app_token: str | None = None
    deadline: float | None = None

    def client(self) -> AsyncClient:
        """A new AsyncClient for this connection."""
        return AsyncClient(self.address, api_key=self.api_key, app_token=self.app_token, deadline=self.deadline)


def run(ctx: typer.Context, work: Callable[[AsyncClient], Awaitable[T]]) -> T:
    """Run `work` with a client; errors exit with their code, Ctrl-C with 130."""
    connection: Connection = ctx.obj

    async def main() -> T:
        async with connection.client() as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except AigenError as error:
        explain(error, STDERR, connection.address)
        raise typer.Exit(exit_code(error)) from None
    except KeyboardInterrupt:
        STDERR.print("interrupted: the generation was cancelled")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def print_json(value: Any) -> None:
    """Print a typed result as one line of JSON on stdout."""
    sys.stdout.write(dumps(jsonable(value)) + "\n")
    sys.stdout.flush()


def parse_fallback(values: list[str] | None) -> list[str] | None:
    """Check every --fallback is "provider/model"."""
    for value in values or ():
        try:
            ModelRef.parse(value)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--fallback") from None
    return values


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line) instead of text.")]
ProviderOpt = Annotated[str | None, typer.Option("--provider", "-p", help="Provider, e.g. gemini.")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model, e.g. nano-banana.")]
FallbackOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fallback", "-f", metavar="PROVIDER/MODEL", callback=parse_fallback, help="Fallback pair; repeat for a chain."
    ),
]
AspectOpt = Annotated[
    str | None, typer.Option("--aspect", "-a", help="Aspect ratio: 1:1 4:5 9:16 16:9 3:2 2:3 3:4 4:3 5:4 21:9.")
]
ImageSizeOpt = Annotated[str | None, typer.Option("--image-size", help="Size tier: 512, 1K, 2K or 4K.")]
SizeOpt = Annotated[str | None, typer.Option("--size", help='Output size "WxH".')]
QualityOpt = Annotated[str | None, typer.Option("--quality", help="low, medium, high or auto.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed, for providers that take one.")]
RefOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--ref", "-r", metavar="FILE", exists=True, dir_okay=False, help="Reference image file; repeat (up to 14)."
    ),
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", dir_okay=False, help="Image file to write (default: <image id>.png).")
]


def generation_options(
    provider: str | None,
    model: str | None,
    fallback: list[str] | None,
    aspect: str | None,
    image_size: str | None,
    size: str | None,
    quality: str | None,
    seed: int | None,
    refs: list[Path] | None,
) -> GenerationOptions:
    """The options given on the command line."""
    given: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "aspect_ratio": aspect,
        "image_size": image_size,
        "size": size,
        "quality": quality,
        "seed": seed,
    }
    options: GenerationOptions = {name: value for name, value in given.items() if value is not None}  # type: ignore[assignment]
    if fallback:
        options["fallback"] = fallback
    if refs:
        options["reference_images"] = refs
    return options
