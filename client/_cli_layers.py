"""`aigen layers separate|lock|unlock|list|export` (layered sessions)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aigen.client._cli_common import STDOUT, JsonOpt, print_json, run
from aigen.client._cli_errors import EPILOG
from aigen.client._types import Layer

app = typer.Typer(
    help="Layered sessions: split the image into layers, lock the ones iterations must keep.",
    epilog=EPILOG,
    no_args_is_help=True,
)
SessionArg = Annotated[str, typer.Argument(help="Session id (a layered session).")]
LayerArg = Annotated[str, typer.Argument(help="Layer id (lyr_...).")]


def show_layers(layers: tuple[Layer, ...]) -> None:
    """The stack as a table, background first."""
    table = Table("z", "layer", "name", "locked", "coverage", "box", "url")
    for layer in layers:
        box = layer.bounding_box
        table.add_row(
            str(layer.z_order),
            layer.layer_id,
            layer.name,
            "yes" if layer.locked else "",
            f"{layer.coverage:.1%}",
            f"{box.x},{box.y} {box.width}x{box.height}",
            layer.url,
        )
    STDOUT.print(table)


@app.command(epilog=EPILOG)
def separate(
    ctx: typer.Context,
    session_id: SessionArg,
    count: Annotated[
        int, typer.Option(help="Layers wanted, background included (2..8); 0 lets the server choose.")
    ] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Split the session's current image into RGBA layers."""
    stack = run(ctx, lambda client: client.separate_layers(session_id, count))
    print_json(stack) if json_out else show_layers(stack.layers)


@app.command(epilog=EPILOG)
def lock(ctx: typer.Context, session_id: SessionArg, layer_id: LayerArg, json_out: JsonOpt = False) -> None:
    """Lock a layer: iterations keep its pixels."""
    layer = run(ctx, lambda client: client.lock_layer(session_id, layer_id))
    print_json(layer) if json_out else STDOUT.print(f"locked {layer.layer_id} ({layer.name})", highlight=False)


@app.command(epilog=EPILOG)
def unlock(ctx: typer.Context, session_id: SessionArg, layer_id: LayerArg, json_out: JsonOpt = False) -> None:
    """Unlock a layer."""
    layer = run(ctx, lambda client: client.unlock_layer(session_id, layer_id))
    print_json(layer) if json_out else STDOUT.print(f"unlocked {layer.layer_id} ({layer.name})", highlight=False)


@app.command("list", epilog=EPILOG)
def list_layers(ctx: typer.Context, session_id: SessionArg, json_out: JsonOpt = False) -> None:
    """List the layer stack, background first."""
    stack = run(ctx, lambda client: client.list_layers(session_id))
    print_json(stack) if json_out else show_layers(stack.layers)


@app.command(epilog=EPILOG)
def export(
    ctx: typer.Context,
    session_id: SessionArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", dir_okay=False, help="Zip file (default: <session>-layers.zip).")
    ] = None,
) -> None:
    """Download the layer stack as a zip of PNGs with a manifest."""
    path = output or Path(f"{session_id}-layers.zip")
    data = run(ctx, lambda client: client.export_layers(session_id, path))
    STDOUT.print(f"saved {path} ({len(data)} bytes)", highlight=False)
