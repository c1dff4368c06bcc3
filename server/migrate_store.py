"""Copy an embedded store (SQLite + blob files) into the shared backends (PostgreSQL + a BlobStore).

    python -m aigen.server.migrate_store --from-data-dir DIR --to-database-url URL \
        (--to-s3 | --to-blobs-dir DIR)

`--to-s3` takes the bucket, endpoint, region, prefix and credentials from the AIGEN_S3_*
settings. Stop the server that uses DIR first: the embedded store belongs to one process.

What is copied: projects, credentials, usage rows, sessions with their images, turns and
layers, sessionless images, and every image's bytes. Records keep their ids, times, turn
indexes and counters exactly. Re-running skips what the target already holds: a session is
copied in one transaction with everything it owns, so it is either wholly there or absent.

How it reads the source: the SqliteStore API where one exists (sessions, turns, layers,
projects, usage, blobs); the store has no bulk listing of images, credentials or the projects
that have usage, so those come from read-only SQL on the same file (`mode=ro`).

How it writes the target: projects and credentials through PostgresStore's API, blobs through
the BlobStore (written before any row refers to them). The store's write API cannot
reproduce history (commit_turn assigns indexes, stamps times and bumps counters, and usage
can only be added with an image), so sessions, images, turns, layers and usage are inserted
with the PostgreSQL store's own row encoding and `ON CONFLICT DO NOTHING`.

At the end it verifies: per table, the number of source rows present in the target; every
record read back through PostgresStore equals the source's; and the SHA-256 of every blob read
back from the target. It prints a summary and exits 1 on any mismatch (2 on bad arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import pathlib
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from aigen.server.errors import NotFound
from aigen.server.store import columns
from aigen.server.store import postgres as pg
from aigen.server.store.blobs import BlobStore, LocalBlobs
from aigen.server.store.postgres import PostgresStore
from aigen.server.store.records import CredentialRecord, ImageRecord, SessionRecord, UsageRecord
from aigen.server.store.sqlite import SqliteStore

TABLES = ("projects", "credentials", "usage", "sessions", "images", "turns", "layers", "blobs")


@dataclass
class Report:
    """What a run copied, skipped and found wrong."""

    copied: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    source: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    target: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every source row and blob is in the target, identical."""
        return not self.problems

    def summary(self) -> str:
        """A table of counts per kind, then each problem."""
        lines = [f"{'':12}{'source':>10}{'in target':>11}{'copied':>9}{'skipped':>9}"]
        for name in TABLES:
            lines.append(
                f"{name:12}{self.source[name]:>10}{self.target[name]:>11}{self.copied[name]:>9}{self.skipped[name]:>9}"
            )
        lines += [f"MISMATCH: {problem}" for problem in self.problems]
        lines.append("verified: every record and blob matches" if self.ok else f"{len(self.problems)} mismatch(es)")
        return "\n".join(lines)


class _Source:
    """The embedded store, plus read-only SQL for the listings its API does not offer."""

    def __init__(self, data_dir: pathlib.Path) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.store = SqliteStore(self.data_dir)
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        if not (self.data_dir / "aigen.db").is_file():
            raise FileNotFoundError(f"no embedded store in {self.data_dir} (aigen.db is missing)")
        await self.store.open()
        uri = (self.data_dir / "aigen.db").resolve().as_uri() + "?mode=ro"
        self._db = sqlite3.connect(uri, uri=True)
        self._db.row_factory = sqlite3.Row

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        await self.store.close()

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        assert self._db is not None
        return self._db.execute(sql, tuple(params)).fetchall()

    async def sessions(self) -> list[SessionRecord]:
        """Every session, oldest first (pages of the store's listing)."""
        found: list[SessionRecord] = []
        token = ""
        while True:
            page = await self.store.list_sessions(None, 100, token)
            found += page.sessions
            token = page.next_page_token
            if not token:
                return found[::-1]

    def images(self) -> list[ImageRecord]:
        cols = columns.IMAGE_COLS
        return [ImageRecord(**dict(row)) for row in self._rows(f"SELECT {cols} FROM images ORDER BY image_id")]

    def credentials(self) -> list[CredentialRecord]:
        cols = columns.CREDENTIAL_COLS
        rows = self._rows(f"SELECT {cols} FROM credentials ORDER BY credential_id")
        return [CredentialRecord(**dict(row)) for row in rows]

    async def usage(self) -> list[UsageRecord]:
        projects = [row[0] for row in self._rows("SELECT DISTINCT project_id FROM usage ORDER BY project_id")]
        return [row for project in projects for row in await self.store.list_usage(project)]


async def _connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    return conn


async def migrate(data_dir: pathlib.Path, dsn: str, blobs: BlobStore) -> Report:
    """Copy the embedded store under `data_dir` into PostgreSQL at `dsn` and `blobs`, then verify."""
    report = Report()
    source = _Source(data_dir)
    await source.open()
    try:
        target = PostgresStore(dsn, blobs, pool_size=2)
        await target.open()  # migrates the schema and opens `blobs`
        try:
            conn = await _connect(dsn)
            try:
                await _copy(source, target, conn, blobs, report)
                await _verify(source, target, conn, report)
            finally:
                await conn.close()
        finally:
            await target.close()
    finally:
        await source.close()
    return report


# Copying --------------------------------------------------------------------------------------
async def _copy(
    source: _Source, target: PostgresStore, conn: asyncpg.Connection, blobs: BlobStore, report: Report
) -> None:
    for project in await source.store.list_projects():
        try:
            await target.get_project(project.project_id)
            report.skipped["projects"] += 1
        except NotFound:
            await target.put_project(project)
            report.copied["projects"] += 1
    for credential in source.credentials():
        if await target.find_credential(credential.secret_hash) is not None:
            report.skipped["credentials"] += 1
        else:
            await target.add_credential(credential)
            report.copied["credentials"] += 1
    usage_sql = f"{pg._insert_sql('usage', columns.USAGE_COLS)} ON CONFLICT DO NOTHING"
    for row in await source.usage():
        inserted = pg._rowcount(await conn.execute(usage_sql, *dataclasses.astuple(row)))
        report.copied["usage"] += inserted
        report.skipped["usage"] += 1 - inserted

    images_by_session: dict[str | None, list[ImageRecord]] = {}
    for image in source.images():
        images_by_session.setdefault(image.session_id, []).append(image)
    copied_blobs: set[str] = set()
    for session in await source.sessions():
        images = images_by_session.pop(session.session_id, [])
        await _copy_blobs(source, blobs, images, copied_blobs, report)  # also restores lost blobs
        if await conn.fetchval("SELECT 1 FROM sessions WHERE session_id = $1", session.session_id):
            report.skipped["sessions"] += 1
            report.skipped["images"] += len(images)
            continue
        turns = await source.store.list_turns(session.session_id)
        layers = await source.store.list_layers(session.session_id)
        async with conn.transaction():
            await conn.execute(
                pg._insert_sql("sessions", columns.SESSION_COLS),
                *pg._values(columns.SESSION_COLS, pg._session_params(session)),
            )
            await _insert_images(conn, images)
            await conn.executemany(
                pg._insert_sql("turns", columns.TURN_COLS),
                [pg._values(columns.TURN_COLS, pg._turn_params(t)) for t in turns],
            )
            await conn.executemany(
                pg._insert_sql("layers", columns.LAYER_COLS),
                [pg._values(columns.LAYER_COLS, pg._layer_params(layer)) for layer in layers],
            )
        report.copied["sessions"] += 1
        report.copied["turns"] += len(turns)
        report.copied["layers"] += len(layers)
        report.copied["images"] += len(images)
    # Sessionless images (and, defensively, rows of sessions the source no longer has).
    for owner, images in images_by_session.items():
        if owner is not None:
            report.problems.append(f"{len(images)} image(s) of missing session {owner} not copied")
            continue
        await _copy_blobs(source, blobs, images, copied_blobs, report)
        inserted = await _insert_images(conn, images)
        report.copied["images"] += inserted
        report.skipped["images"] += len(images) - inserted


async def _copy_blobs(
    source: _Source, blobs: BlobStore, images: Sequence[ImageRecord], done: set[str], report: Report
) -> None:
    """Put each image's bytes into the target unless it holds them already (checked against the hash)."""
    for sha in dict.fromkeys(image.sha256 for image in images):
        if sha in done:
            continue
        done.add(sha)
        if await blobs.exists(sha):
            report.skipped["blobs"] += 1
            continue
        try:
            data = await source.store.read_blob(sha)
        except NotFound:
            report.problems.append(f"blob {sha} is missing from the source")
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            report.problems.append(f"blob {sha} is corrupt in the source")
            continue
        await blobs.put(sha, data)
        report.copied["blobs"] += 1


async def _insert_images(conn: asyncpg.Connection, images: Sequence[ImageRecord]) -> int:
    sql = f"{pg._insert_sql('images', columns.IMAGE_COLS)} ON CONFLICT (image_id) DO NOTHING"
    inserted = 0
    for image in images:
        inserted += pg._rowcount(await conn.execute(sql, *pg._values(columns.IMAGE_COLS, dataclasses.asdict(image))))
    return inserted


# Verifying ------------------------------------------------------------------------------------
async def _verify(source: _Source, target: PostgresStore, conn: asyncpg.Connection, report: Report) -> None:
    def check(what: str, want: object, got: object) -> None:
        if want != got:
            report.problems.append(f"{what}: source {want!r} != target {got!r}")

    async def present(table: str, where: str, keys: list[list[str]]) -> int:
        return await conn.fetchval(f"SELECT count(*) FROM {table} WHERE {where}", *keys)

    projects = await source.store.list_projects()
    for project in projects:
        try:
            check(f"project {project.project_id}", project, await target.get_project(project.project_id))
        except NotFound:
            report.problems.append(f"project {project.project_id} is missing from the target")
    credentials = source.credentials()
    for credential in credentials:
        check(
            f"credential {credential.credential_id}", credential, await target.find_credential(credential.secret_hash)
        )
    usage = await source.usage()
    by_project: dict[str, list[UsageRecord]] = {}
    for row in usage:
        by_project.setdefault(row.project_id, []).append(row)
    for project_id, rows in by_project.items():
        keys = {_usage_key(row) for row in rows}
        got = [row for row in await target.list_usage(project_id) if _usage_key(row) in keys]
        check(f"usage of project {project_id}", rows, got)

    sessions = await source.sessions()
    turn_ids: list[str] = []
    layer_keys: list[tuple[str, str]] = []
    for session in sessions:
        sid = session.session_id
        try:
            check(f"session {sid}", session, await target.get_session(sid))
            turns = await source.store.list_turns(sid)
            layers = await source.store.list_layers(sid)
            check(f"turns of session {sid}", turns, await target.list_turns(sid))
            check(f"layers of session {sid}", layers, await target.list_layers(sid))
        except NotFound:
            report.problems.append(f"session {sid} is missing from the target")
            continue
        turn_ids += [turn.turn_id for turn in turns]
        layer_keys += [(sid, layer.layer_id) for layer in layers]
    images = source.images()
    shas = sorted({image.sha256 for image in images})
    for image in images:
        try:
            check(f"image {image.image_id}", image, await target.get_image(image.image_id))
        except NotFound:
            report.problems.append(f"image {image.image_id} is missing from the target")
    verified_blobs = 0
    for sha in shas:
        try:
            data = await target.read_blob(sha)
        except NotFound:
            report.problems.append(f"blob {sha} is missing from the target")
            continue
        if hashlib.sha256(data).hexdigest() == sha:
            verified_blobs += 1
        else:
            report.problems.append(f"blob {sha} read back from the target does not hash to its name")

    report.source.update(
        projects=len(projects),
        credentials=len(credentials),
        usage=len(usage),
        sessions=len(sessions),
        images=len(images),
        turns=len(turn_ids),
        layers=len(layer_keys),
        blobs=len(shas),
    )
    report.target.update(
        projects=await present("projects", "project_id = ANY($1::text[])", [[p.project_id for p in projects]]),
        credentials=await present(
            "credentials", "credential_id = ANY($1::text[])", [[c.credential_id for c in credentials]]
        ),
        usage=await present(
            "usage",
            "(project_id, day, provider, model, billing_mode) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]))",
            _columns([_usage_key(row) for row in usage], 5),
        ),
        sessions=await present("sessions", "session_id = ANY($1::text[])", [[s.session_id for s in sessions]]),
        images=await present("images", "image_id = ANY($1::text[])", [[i.image_id for i in images]]),
        turns=await present("turns", "turn_id = ANY($1::text[])", [turn_ids]),
        layers=await present(
            "layers",
            "(session_id, layer_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            _columns(layer_keys, 2),
        ),
        blobs=verified_blobs,
    )
    for name in TABLES:
        check(f"{name} rows in the target", report.source[name], report.target[name])


def _usage_key(row: UsageRecord) -> tuple[str, str, str, str, str]:
    return (row.project_id, row.day, row.provider, row.model, row.billing_mode)


def _columns(rows: Sequence[tuple[str, ...]], width: int) -> list[list[str]]:
    """Tuples as `width` parallel lists (the arguments of unnest)."""
    return [[row[n] for row in rows] for n in range(width)]


# Command line ---------------------------------------------------------------------------------
def _blob_store(args: argparse.Namespace) -> BlobStore:
    if args.to_blobs_dir:
        return LocalBlobs(pathlib.Path(args.to_blobs_dir))
    from aigen.server.config import Settings
    from aigen.server.store.factory import s3_blobs

    settings = Settings()
    if not settings.s3_bucket:
        raise SystemExit("--to-s3 needs AIGEN_S3_BUCKET (and AIGEN_S3_ENDPOINT_URL etc. for a non-AWS server)")
    return s3_blobs(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the copy; 0 when everything verified, 1 on any mismatch."""
    parser = argparse.ArgumentParser(
        prog="python -m aigen.server.migrate_store",
        description="Copy an embedded store into PostgreSQL and S3 (or a blob directory), then verify.",
    )
    parser.add_argument("--from-data-dir", required=True, type=pathlib.Path, help="the embedded store's data dir")
    parser.add_argument("--to-database-url", required=True, help="postgresql://user@host:port/database")
    blobs = parser.add_mutually_exclusive_group(required=True)
    blobs.add_argument("--to-s3", action="store_true", help="blobs into S3, configured by AIGEN_S3_* settings")
    blobs.add_argument("--to-blobs-dir", type=pathlib.Path, help="blobs into files under this directory")
    args = parser.parse_args(argv)
    report = asyncio.run(migrate(args.from_data_dir, args.to_database_url, _blob_store(args)))
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
