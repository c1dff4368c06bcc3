"""`python -m aigen.server.admin`: manage projects, API keys and usage in the data directory.

Works on the store directly (the server may be running: SQLite in WAL mode takes both), so it
needs no admin key. Creating the first project turns authentication on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aigen.server.app import build_registry
from aigen.server.config import Settings
from aigen.server.errors import AigenError
from aigen.server.health import ModelHealth
from aigen.server.models import ModelResolver
from aigen.server.projects import Projects
from aigen.server.store.records import ProjectRecord
from aigen.server.store.sqlite import SqliteStore


def parser() -> argparse.ArgumentParser:
    """The command line."""
    root = argparse.ArgumentParser(prog="python -m aigen.server.admin", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    put = commands.add_parser("put", help="create or replace a project")
    put.add_argument("project")
    put.add_argument("--allow", default="", help="comma-separated providers the project may use (default: all)")
    put.add_argument("--default", default="", help="default provider/model, e.g. gemini/nano-banana")
    put.add_argument("--billing", default="owner_pays", choices=("owner_pays", "user_pays"))
    put.add_argument("--rate-limit", type=int, default=0, help="requests per 5 minutes (default: server's, 600)")
    put.add_argument("--public", action="store_true", help="allow app tokens from POST /api/token")
    commands.add_parser("list", help="list projects")
    for name, text in (("show", "show a project"), ("delete", "delete a project and its keys")):
        commands.add_parser(name, help=text).add_argument("project")
    key = commands.add_parser("key", help="create or revoke API keys")
    key.add_argument("action", choices=("create", "revoke"))
    key.add_argument("project")
    key.add_argument("key_id", nargs="?", default="")
    usage = commands.add_parser("usage", help="usage of a project by day and model")
    usage.add_argument("project")
    usage.add_argument("--from", dest="start", default="", help="first day, YYYY-MM-DD")
    usage.add_argument("--to", dest="end", default="", help="last day, YYYY-MM-DD")
    return root


async def run(args: argparse.Namespace, settings: Settings) -> object:
    """Execute one command; returns what to print as JSON."""
    store = SqliteStore(settings.data_dir)
    await store.open()
    try:
        projects = Projects(store, ModelResolver(build_registry(settings), settings, ModelHealth()))
        return await _dispatch(args, projects)
    finally:
        await store.close()


async def _dispatch(args: argparse.Namespace, projects: Projects) -> object:
    store = projects.store
    if args.command == "put":
        provider, _, model = args.default.partition("/")
        record = ProjectRecord(
            project_id=args.project,
            allowed_providers=tuple(p for p in args.allow.split(",") if p),
            default_provider=provider,
            default_model=model,
            billing_mode=args.billing,
            rate_limit=args.rate_limit,
            allow_public_clients=args.public,
        )
        return _project_json(await projects.put(record))
    if args.command == "list":
        return [_project_json(p) for p in await store.list_projects()]
    if args.command == "show":
        return _project_json(await store.get_project(args.project))
    if args.command == "delete":
        await store.delete_project(args.project)
        return {"deleted": args.project}
    if args.command == "key" and args.action == "create":
        key_id, secret = await projects.create_key(args.project)
        return {"keyId": key_id, "apiKey": secret, "note": "send as 'authorization: Bearer <apiKey>'; shown once"}
    if args.command == "key":
        await store.revoke_credential(args.project, args.key_id)
        return {"revoked": args.key_id}
    rows = await store.list_usage(args.project, args.start, args.end)
    return [
        {
            "day": r.day,
            "provider": r.provider,
            "model": r.model,
            "billingMode": r.billing_mode,
            "images": r.images,
            "credits": r.credits,
        }
        for r in rows
    ]


def _project_json(project: ProjectRecord) -> dict:
    return {
        "projectId": project.project_id,
        "allowedProviders": list(project.allowed_providers),
        "defaultProvider": project.default_provider,
        "defaultModel": project.default_model,
        "billingMode": project.billing_mode,
        "rateLimit": project.rate_limit,
        "allowPublicClients": project.allow_public_clients,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 2 with the message on a refused command."""
    args = parser().parse_args(argv)
    try:
        result = asyncio.run(run(args, Settings()))
    except AigenError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
