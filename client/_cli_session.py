"""`aigen session create|show|list|delete`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from aigen.client._cli_common import (
    STDOUT,
    AspectOpt,
    FallbackOpt,
    ImageSizeOpt,
    JsonOpt,
    ModelOpt,
    ProviderOpt,
    print_json,
    run,
)
from aigen.client._cli_errors import EPILOG
from aigen.client._types import ModelRef, Session, SessionConfig

app = typer.Typer(help="Create, show, list and delete sessions.", epilog=EPILOG, no_args_is_help=True)
SessionArg = Annotated[str, typer.Argument(help="Session id (sess_...).")]


def show_session(session: Session) -> None:
    """A session as a two-column table."""
    table = Table(show_header=False, box=None)
    config = session.config
    chain = ", ".join(str(ref) for ref in config.fallback_chain) or "server default"
    image = session.current_image
    rows = {
        "session": session.session_id,
        "status": session.status,
        "project": session.project,
        "mode": session.mode,
        "config": f"{config.provider}/{config.model} {config.aspect_ratio} {config.image_size}".strip(),
        "fallback": chain,
        "image": f"{image.url} ({image.width}x{image.height})" if image else "none yet",
        "turns": str(session.turn_count),
        "layers": str(session.layer_count),
        "updated": session.update_time.isoformat() if session.update_time else "",
    }
    for key, value in rows.items():
        table.add_row(f"[bold]{key}[/]", escape(value))
    STDOUT.print(table)


@app.command(epilog=EPILOG)
def create(
    ctx: typer.Context,
    project: Annotated[str, typer.Option(help="Project name.")] = "",
    mode: Annotated[str, typer.Option(help="single or layered.")] = "single",
    aspect: AspectOpt = None,
    image_size: ImageSizeOpt = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    fallback: FallbackOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a session and print its id."""
    config = SessionConfig(
        aspect_ratio=aspect or "",
        image_size=image_size or "",
        provider=provider or "",
        model=model or "",
        fallback_chain=tuple(ModelRef.parse(entry) for entry in fallback or ()),
    )
    session = run(ctx, lambda client: client.create_session(project, mode, config))
    if json_out:
        print_json(session)
    else:
        STDOUT.print(session.session_id, highlight=False)


@app.command(epilog=EPILOG)
def show(ctx: typer.Context, session_id: SessionArg, json_out: JsonOpt = False) -> None:
    """Show a session's status, config and current image."""
    session = run(ctx, lambda client: client.get_session(session_id))
    print_json(session) if json_out else show_session(session)


@app.command("list", epilog=EPILOG)
def list_sessions(
    ctx: typer.Context,
    project: Annotated[str, typer.Option(help="Only this project.")] = "",
    page_size: Annotated[int, typer.Option(help="Sessions per page (server default 50).")] = 0,
    page_token: Annotated[str, typer.Option(help="Token printed after the previous page.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """List sessions, newest first."""
    page = run(ctx, lambda client: client.list_sessions(project, page_size=page_size, page_token=page_token))
    if json_out:
        print_json(page)
        return
    table = Table("session", "status", "mode", "project", "turns", "updated")
    for session in page.sessions:
        updated = session.update_time.strftime("%Y-%m-%d %H:%M:%S") if session.update_time else ""
        table.add_row(
            session.session_id, session.status, session.mode, session.project, str(session.turn_count), updated
        )
    STDOUT.print(table)
    if page.next_page_token:
        STDOUT.print(f"more: --page-token {page.next_page_token}", highlight=False)


@app.command(epilog=EPILOG)
def delete(ctx: typer.Context, session_id: SessionArg) -> None:
    """Delete a session with its history and images."""
    run(ctx, lambda client: client.delete_session(session_id))
    STDOUT.print(f"deleted {session_id}", highlight=False)
