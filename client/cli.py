"""The `aigen` command line: serve, generate, iterate, sessions, history, layers, catalogue."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from aigen.client import _cli_layers, _cli_session
from aigen.client._async_client import ADDRESS_ENV, default_address
from aigen.client._cli_common import (
    STDOUT,
    AspectOpt,
    Connection,
    FallbackOpt,
    ImageSizeOpt,
    JsonOpt,
    ModelOpt,
    OutputOpt,
    ProviderOpt,
    QualityOpt,
    RefOpt,
    SeedOpt,
    SizeOpt,
    generation_options,
    print_json,
    run,
)
from aigen.client._cli_errors import EPILOG
from aigen.client._cli_generate import generate_to_file

app = typer.Typer(
    name="aigen",
    help="aigen: generate and edit images through the aigen gateway (gRPC, default localhost:19002).",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(_cli_session.app, name="session")
app.add_typer(_cli_layers.app, name="layers")


@app.callback()
def root(
    ctx: typer.Context,
    address: Annotated[
        str, typer.Option(envvar=ADDRESS_ENV, help="Server gRPC address host:port.", show_default="localhost:19002")
    ] = "",
    api_key: Annotated[
        str | None, typer.Option(envvar="AIGEN_API_KEY", help="API key, sent as 'authorization: Bearer'.")
    ] = None,
    app_token: Annotated[
        str | None, typer.Option(envvar="AIGEN_APP_TOKEN", help="App token, sent as x-app-token.")
    ] = None,
    deadline: Annotated[
        float | None, typer.Option(help="Deadline in seconds for each call (generations: the server's own, 120 s).")
    ] = None,
) -> None:
    """Connection options shared by every command."""
    ctx.obj = Connection(address or default_address(), api_key, app_token, deadline)


@app.command(epilog=EPILOG)
def serve() -> None:
    """Run the service (gRPC server and Envoy), as `make serve` does; Ctrl-C stops it."""
    from aigen.server.serve import main as serve_main

    serve_main()


@app.command(epilog=EPILOG)
def generate(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="What to generate.")],
    output: OutputOpt = None,
    session: Annotated[str | None, typer.Option("--session", "-s", help="Generate in this session.")] = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    fallback: FallbackOpt = None,
    aspect: AspectOpt = None,
    size: SizeOpt = None,
    image_size: ImageSizeOpt = None,
    quality: QualityOpt = None,
    seed: SeedOpt = None,
    ref: RefOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate an image (in a session with --session) and save it to a file, showing progress."""
    options = generation_options(provider, model, fallback, aspect, image_size, size, quality, seed, ref)

    async def work(client):
        if session:
            stream = client.stream_generate(session, prompt, deadline=ctx.obj.deadline, **options)
        else:
            stream = client.stream_generate_image(prompt, deadline=ctx.obj.deadline, **options)
        return await generate_to_file(stream, output, json_out)

    run(ctx, work)


@app.command(epilog=EPILOG)
def iterate(
    ctx: typer.Context,
    session: Annotated[str, typer.Argument(help="Session id.")],
    instructions: Annotated[str, typer.Argument(help="How to change the current image.")],
    output: OutputOpt = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    fallback: FallbackOpt = None,
    aspect: AspectOpt = None,
    size: SizeOpt = None,
    image_size: ImageSizeOpt = None,
    quality: QualityOpt = None,
    seed: SeedOpt = None,
    ref: RefOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Edit a session's current image and save the result, showing progress."""
    options = generation_options(provider, model, fallback, aspect, image_size, size, quality, seed, ref)

    async def work(client):
        stream = client.stream_iterate(session, instructions, deadline=ctx.obj.deadline, **options)
        return await generate_to_file(stream, output, json_out)

    run(ctx, work)


@app.command(epilog=EPILOG)
def history(
    ctx: typer.Context, session: Annotated[str, typer.Argument(help="Session id.")], json_out: JsonOpt = False
) -> None:
    """Show every turn of a session: what was asked, who served, how it ended."""
    turns = run(ctx, lambda client: client.history(session))
    if json_out:
        print_json(turns)
        return
    table = Table("#", "kind", "status", "text", "served", "attempts", "time", "image")
    for turn in turns:
        text = turn.prompt or turn.instructions or turn.layer_id
        served = str(turn.served) if turn.served else escape(turn.error)
        image = turn.image.url if turn.image else ""
        table.add_row(
            str(turn.index),
            turn.kind,
            turn.status,
            escape(text),
            served,
            str(len(turn.attempts)),
            f"{turn.duration:.1f}s",
            image,
        )
    STDOUT.print(table)


@app.command(epilog=EPILOG)
def models(
    ctx: typer.Context,
    provider: Annotated[str, typer.Option("--provider", "-p", help="Only this provider's models.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """List models with capabilities, typical latency and credits per image."""
    found = run(ctx, lambda client: client.list_models(provider))
    if json_out:
        print_json(found)
        return
    table = Table("provider", "model", "ready", "edit", "max refs", "sizes", "latency", "credits", "notes")
    for info in found:
        caps = info.capabilities
        ready = "cooldown" if info.in_cooldown else ("yes" if info.configured else "no key")
        table.add_row(
            info.provider,
            info.model,
            ready,
            "yes" if caps.can_edit else "",
            str(caps.max_reference_images),
            " ".join(caps.image_sizes),
            f"{info.typical_latency:.0f}s",
            str(info.credits_per_image),
            escape(info.notes),
        )
    STDOUT.print(table)


@app.command(epilog=EPILOG)
def providers(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List providers, whether each is configured, and the variable that configures it."""
    found = run(ctx, lambda client: client.list_providers())
    if json_out:
        print_json(found)
        return
    table = Table("provider", "configured", "key", "models", "description")
    for info in found:
        table.add_row(
            info.name,
            "yes" if info.configured else "no",
            info.credential_env,
            " ".join(info.models),
            escape(info.description),
        )
    STDOUT.print(table)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
