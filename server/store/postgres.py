"""The shared-mode store: PostgreSQL for records (asyncpg pool), a BlobStore for image bytes.

Several replicas use one database. Every multi-statement write runs in one transaction; writes
to a session first lock its row (SELECT ... FOR UPDATE), so turn indexes never collide. The
generation lease is one conditional UPDATE, evaluated by PostgreSQL against the committed row,
so two replicas can never both take it. Times are epoch seconds: from the injected clock when
one is given, otherwise from the database's clock (one clock for every replica).

The generation a lease is for is kept in `sessions.pending` (JSONB) while the lease lasts, so
a lease found expired is recorded as an interrupted turn.

The schema is migrated with Alembic (`migrations/`) on a short-lived synchronous psycopg
connection in a worker thread; the store's own queries all go through asyncpg.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hashlib
import json
import pathlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from aigen.server.errors import NotFound, Reason, project_not_found
from aigen.server.store.base import Store, interrupted_turn, pending_record
from aigen.server.store.blobs import BLOB_PIN_S, BlobStore, blob_not_found, is_sha256
from aigen.server.store.columns import (
    CREDENTIAL_COLS,
    IMAGE_COLS,
    LAYER_COLS,
    PROJECT_COLS,
    SESSION_COLS,
    TURN_COLS,
    USAGE_COLS,
)
from aigen.server.store.pages import decode_page_token, encode_page_token, page_limit
from aigen.server.store.records import (
    AttemptRecord,
    CredentialRecord,
    ImageRecord,
    LayerRecord,
    Page,
    ProjectRecord,
    SessionConfigRecord,
    SessionRecord,
    TurnRecord,
    UsageRecord,
)

MIGRATIONS_DIR = pathlib.Path(__file__).with_name("migrations")
# Advisory lock keys: the single-key space serialises migrations, the two-key space (this
# class, hashtext(sha256)) serialises pinning a blob against collecting it.
_MIGRATION_LOCK = 0x61696765_6E000001
_BLOB_LOCK_CLASS = 0x61696762
# Hash big blobs in a worker thread so the event loop keeps serving.
_HASH_IN_THREAD_BYTES = 1 << 20
# `$n` is the injected clock's time, or NULL for the database's clock.
_NOW = "COALESCE({}::float8, extract(epoch FROM clock_timestamp())::float8)"


def _names(cols: str) -> list[str]:
    return [name.strip() for name in cols.split(",")]


def _insert_sql(table: str, cols: str) -> str:
    marks = ", ".join(f"${n}" for n in range(1, len(_names(cols)) + 1))
    return f"INSERT INTO {table} ({cols}) VALUES ({marks})"


def _values(cols: str, params: dict[str, Any]) -> tuple:
    return tuple(params[name] for name in _names(cols))


def _rowcount(status: str) -> int:
    """Rows affected, from asyncpg's command tag ("UPDATE 1", "DELETE 0")."""
    return int(status.rsplit(" ", 1)[-1])


def _session_not_found(session_id: str) -> NotFound:
    return NotFound(f"session {session_id} not found")


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def _revisions() -> tuple[frozenset[str], str]:
    """Every revision the migration scripts define, and the newest (read once per process)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config())
    return frozenset(script.revision for script in scripts.walk_revisions()), scripts.get_current_head()


def upgrade_schema(dsn: str) -> None:
    """Bring the database to the newest Alembic revision (blocking; run it in a thread).

    One transaction holding an advisory lock, so replicas starting together migrate once.
    RuntimeError when the database carries a revision this server does not know (newer).
    """
    import psycopg
    import sqlalchemy
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    config = _alembic_config()
    known, head = _revisions()
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=sqlalchemy.pool.NullPool
    )
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None and current not in known:
                raise RuntimeError(f"database schema {current} is newer than this server ({head})")
            if current == head:
                return
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
    finally:
        engine.dispose()


class PostgresStore(Store):
    """Store on PostgreSQL plus a BlobStore, shared by every replica.

    The store opens and closes `blobs` with itself.
    """

    def __init__(
        self,
        dsn: str,
        blobs: BlobStore,
        *,
        clock: Callable[[], float] | None = None,
        pool_size: int = 10,
    ) -> None:
        self._dsn = dsn
        self._blobs = blobs
        self._clock = clock
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        # Pins this process took and no commit has released yet (dropped on close).
        self._own_pins: collections.Counter[str] = collections.Counter()

    # Lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        """Migrate, connect, then release only leases that expired (live replicas keep theirs)."""
        await asyncio.to_thread(upgrade_schema, self._dsn)
        pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size, init=_init_connection)
        try:
            await self._blobs.open()
            self._pool = pool
            await self._release_expired_leases()
            await self._collect_blobs(set())  # blobs whose pins expired unreferenced
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def close(self) -> None:
        """Drop this process's uncommitted pins, collect those blobs, then disconnect."""
        if self._pool is None:
            return
        own = list(self._own_pins.elements())
        if own:
            async with self._transaction() as tx:
                await _unpin(tx, own)
            self._own_pins.clear()
            await self._collect_blobs(set(own))
        pool, self._pool = self._pool, None
        await pool.close()
        await self._blobs.close()

    def _now(self) -> float | None:
        return self._clock() if self._clock is not None else None

    async def _release_expired_leases(self) -> None:
        """Free sessions whose lease expired, recording each one's pending generation as an
        interrupted turn in the same transaction (rows another transaction holds are skipped:
        it is taking or ending that lease itself).
        """
        async with self._transaction() as tx:
            now = await tx.fetchval(f"SELECT {_NOW.format('$1')}", self._now())
            rows = await tx.fetch(
                "SELECT session_id, pending FROM sessions "
                "WHERE status = 'generating' AND busy_until < $1 ORDER BY session_id FOR UPDATE SKIP LOCKED",
                now,
            )
            for row in rows:
                await self._record_interrupted(tx, row["session_id"], row["pending"], now)
            await tx.execute(
                "UPDATE sessions SET status = 'ready', busy_until = 0, pending = NULL "
                "WHERE session_id = ANY($1::text[])",
                [row["session_id"] for row in rows],
            )

    async def _record_interrupted(self, tx: asyncpg.Connection, session_id: str, pending: Any, now: float) -> None:
        """Record a cut-off generation (its lease's pending JSON) as an "interrupted" turn."""
        if isinstance(pending, dict):
            await self._insert_turn(tx, interrupted_turn(session_id, pending, now))

    # Connection access ----------------------------------------------------------------------
    def _pool_(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool_().acquire() as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection inside a transaction, rolled back on any error or cancellation."""
        async with self._pool_().acquire() as conn, conn.transaction():
            yield conn

    @staticmethod
    async def _lock_session(tx: asyncpg.Connection, session_id: str, mode: str = "UPDATE") -> None:
        """Lock the session row for the rest of the transaction; NotFound when absent."""
        if await tx.fetchval(f"SELECT 1 FROM sessions WHERE session_id = $1 FOR {mode}", session_id) is None:
            raise _session_not_found(session_id)

    @staticmethod
    async def _require_session(conn: asyncpg.Connection, session_id: str) -> None:
        if await conn.fetchval("SELECT 1 FROM sessions WHERE session_id = $1", session_id) is None:
            raise _session_not_found(session_id)

    # Sessions -------------------------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> None:
        """Insert a new session."""
        async with self._reading() as db:
            await db.execute(_insert_sql("sessions", SESSION_COLS), *_values(SESSION_COLS, _session_params(session)))

    async def get_session(self, session_id: str, project: str | None = None) -> SessionRecord:
        """The session; NotFound when absent or (with a non-empty `project`) in another project."""
        async with self._reading() as db:
            row = await db.fetchrow(f"SELECT {SESSION_COLS} FROM sessions WHERE session_id = $1", session_id)
        if row is None or (project and row["project"] != project):
            raise _session_not_found(session_id)
        return _session_from_row(row)

    async def list_sessions(self, project: str | None, page_size: int, page_token: str) -> Page:
        """Sessions newest first, keyset-paginated; an empty `project` means every project."""
        limit = page_limit(page_size)
        where: list[str] = []
        params: list[Any] = []
        if project:
            params.append(project)
            where.append(f"project = ${len(params)}")
        if page_token:
            created_at, session_id = decode_page_token(page_token)
            params += [created_at, session_id]
            at, sid = len(params) - 1, len(params)
            where.append(f"(created_at < ${at} OR (created_at = ${at} AND session_id < ${sid}))")
        sql = f"SELECT {SESSION_COLS} FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        params.append(limit + 1)
        sql += f" ORDER BY created_at DESC, session_id DESC LIMIT ${len(params)}"
        async with self._reading() as db:
            rows = await db.fetch(sql, *params)
        sessions = [_session_from_row(row) for row in rows[:limit]]
        token = encode_page_token(sessions[-1]) if len(rows) > limit else ""
        return Page(sessions=sessions, next_page_token=token)

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and everything it owns, then the blobs nothing uses any more."""
        async with self._transaction() as tx:
            await self._lock_session(tx, session_id)
            rows = await tx.fetch("SELECT DISTINCT sha256 FROM images WHERE session_id = $1", session_id)
            for table in ("turns", "layers", "images", "sessions"):
                await tx.execute(f"DELETE FROM {table} WHERE session_id = $1", session_id)
        await self._collect_blobs({row["sha256"] for row in rows})

    async def try_begin_generation(
        self, session_id: str, lease_s: float, pending: Mapping[str, Any] | None = None
    ) -> bool:
        """Take the generation lease unless another unexpired one holds the session; an
        expired lease's pending generation is recorded as interrupted first.

        Concurrent callers queue on the session's row lock and each decides against the row
        the previous one committed, so exactly one wins.
        """
        async with self._transaction() as tx:
            row = await tx.fetchrow(
                "SELECT status, busy_until, pending FROM sessions WHERE session_id = $1 FOR UPDATE",
                session_id,
            )
            if row is None:
                raise _session_not_found(session_id)
            now = await tx.fetchval(f"SELECT {_NOW.format('$1')}", self._now())
            if row["status"] != "ready" and row["busy_until"] >= now:
                return False
            if row["status"] != "ready":
                await self._record_interrupted(tx, session_id, row["pending"], now)
            record = pending_record(pending, now)
            await tx.execute(
                "UPDATE sessions SET status = 'generating', busy_until = $2, pending = $3::jsonb WHERE session_id = $1",
                session_id,
                now + float(lease_s),
                record,
            )
            return True

    async def end_generation(self, session_id: str) -> None:
        """Release the lease (no-op when the session was deleted meanwhile)."""
        async with self._reading() as db:
            await db.execute(
                "UPDATE sessions SET status = 'ready', busy_until = 0, pending = NULL WHERE session_id = $1",
                session_id,
            )

    # Blobs ----------------------------------------------------------------------------------
    async def write_blob(self, data: bytes) -> str:
        """Pin the blob in the database, then store it through the BlobStore; return its sha256."""
        if len(data) >= _HASH_IN_THREAD_BYTES:
            sha256 = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        else:
            sha256 = hashlib.sha256(data).hexdigest()
        async with self._transaction() as tx:
            # Waits out a collection of this blob in progress (it holds the same lock).
            await tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _BLOB_LOCK_CLASS, sha256)
            await tx.execute(
                "INSERT INTO blob_pins (sha256, pending, pinned_until) "
                f"VALUES ($1, 1, {_NOW.format('$2')} + $3) ON CONFLICT (sha256) DO UPDATE "
                "SET pending = blob_pins.pending + 1, pinned_until = excluded.pinned_until",
                sha256,
                self._now(),
                BLOB_PIN_S,
            )
        self._own_pins[sha256] += 1
        try:
            await self._blobs.put(sha256, data)
        except BaseException:
            await asyncio.shield(self._release_pins([sha256]))
            raise
        return sha256

    async def _release_pins(self, shas: list[str]) -> None:
        async with self._transaction() as tx:
            await _unpin(tx, shas)
        self._forget_own_pins(shas)

    async def read_blob(self, sha256: str) -> bytes:
        """The bytes of a blob; NotFound (IMAGE_NOT_FOUND) when absent."""
        if not is_sha256(sha256):
            raise blob_not_found(sha256)
        return await self._blobs.get(sha256)

    async def blob_url(self, sha256: str, expires_s: int, content_type: str = "") -> str | None:
        """The blob backend's presigned URL (S3), or None (local files)."""
        if not is_sha256(sha256):
            raise blob_not_found(sha256)
        return await self._blobs.presigned_url(sha256, expires_s, content_type)

    async def _collect_blobs(self, candidates: set[str]) -> None:
        """Delete candidate blobs (and those whose pins expired) that nothing references.

        Race with a concurrent write_blob of identical bytes: write_blob pins the blob in the
        database (blob_pins, with an expiry) under a per-blob advisory lock before it stores
        the bytes, and the commit that references the blob releases the pin in the same
        transaction that inserts the image row. Collection takes the same advisory locks, then
        checks "no image row and no pin" in ONE statement (one snapshot, so a commit cannot
        slip between the two checks), and deletes the bytes before releasing the locks. A
        writer therefore either pinned first (the blob is kept) or waits and stores the bytes
        again after the deletion. A pin that outlives BLOB_PIN_S unreferenced (a writer that
        died) is collected here like any candidate.
        """
        now = self._now()
        async with self._reading() as db:
            expired = await db.fetch(f"SELECT sha256 FROM blob_pins WHERE pinned_until < {_NOW.format('$1')}", now)
        candidates = candidates | {row["sha256"] for row in expired}
        if not candidates:
            return
        ordered = sorted(candidates)
        async with self._transaction() as tx:
            await tx.executemany(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", [(_BLOB_LOCK_CLASS, sha) for sha in ordered]
            )
            await tx.execute(
                f"DELETE FROM blob_pins WHERE sha256 = ANY($1::text[]) AND pinned_until < {_NOW.format('$2')}",
                ordered,
                now,
            )
            rows = await tx.fetch(
                "SELECT c.sha256 FROM unnest($1::text[]) AS c (sha256) "
                "WHERE NOT EXISTS (SELECT 1 FROM images AS i WHERE i.sha256 = c.sha256) "
                "AND NOT EXISTS (SELECT 1 FROM blob_pins AS p WHERE p.sha256 = c.sha256)",
                ordered,
            )
            unused = [row["sha256"] for row in rows]
            if unused:
                await self._blobs.delete(unused)

    # Images ---------------------------------------------------------------------------------
    async def insert_image(self, image: ImageRecord, usage: UsageRecord | None = None) -> None:
        """Record an image whose blob was already written (and its usage); NotFound for an unknown session."""
        async with self._transaction() as tx:
            if image.session_id is not None:
                await self._lock_session(tx, image.session_id, "SHARE")
            if usage is not None:
                await _upsert_usage(tx, usage)
            await tx.execute(_insert_sql("images", IMAGE_COLS), *_values(IMAGE_COLS, dataclasses.asdict(image)))
            await _unpin(tx, [image.sha256])
        self._forget_own_pins([image.sha256])

    def _forget_own_pins(self, shas: Iterable[str]) -> None:
        for sha in shas:
            if self._own_pins[sha] > 1:
                self._own_pins[sha] -= 1
            else:
                self._own_pins.pop(sha, None)

    async def get_image(self, image_id: str) -> ImageRecord:
        """An image's metadata; NotFound (IMAGE_NOT_FOUND) when absent."""
        async with self._reading() as db:
            row = await db.fetchrow(f"SELECT {IMAGE_COLS} FROM images WHERE image_id = $1", image_id)
        if row is None:
            raise NotFound(f"image {image_id} not found", reason=Reason.ERROR_REASON_IMAGE_NOT_FOUND)
        return ImageRecord(**dict(row))

    # Turns and layers -----------------------------------------------------------------------
    async def commit_turn(
        self,
        turn: TurnRecord,
        images: Sequence[ImageRecord] = (),
        current_image_id: str | None = None,
        layers: Sequence[LayerRecord] | None = None,
        usage: UsageRecord | None = None,
    ) -> TurnRecord:
        """Insert images and the turn, update the session (and its layers) atomically."""
        async with self._transaction() as tx:
            await self._lock_session(tx, turn.session_id)
            if usage is not None:
                await _upsert_usage(tx, usage)
            if images:
                await tx.executemany(
                    _insert_sql("images", IMAGE_COLS),
                    [_values(IMAGE_COLS, dataclasses.asdict(image)) for image in images],
                )
            committed = await self._insert_turn(tx, turn)
            if current_image_id is not None:
                await tx.execute(
                    "UPDATE sessions SET current_image_id = $1 WHERE session_id = $2", current_image_id, turn.session_id
                )
            if layers is not None:
                await tx.execute("DELETE FROM layers WHERE session_id = $1", turn.session_id)
                await tx.executemany(
                    _insert_sql("layers", LAYER_COLS),
                    [
                        _values(LAYER_COLS, _layer_params(dataclasses.replace(layer, session_id=turn.session_id)))
                        for layer in layers
                    ],
                )
                await tx.execute(
                    "UPDATE sessions SET layer_count = $1 WHERE session_id = $2", len(layers), turn.session_id
                )
            if images:
                await _unpin(tx, [image.sha256 for image in images])
        self._forget_own_pins(image.sha256 for image in images)
        return committed

    async def _insert_turn(self, tx: asyncpg.Connection, turn: TurnRecord) -> TurnRecord:
        """Insert the turn with the next index and bump the session's counters (session row locked)."""
        index = await tx.fetchval(
            "SELECT COALESCE(MAX(turn_index), 0) + 1 FROM turns WHERE session_id = $1", turn.session_id
        )
        committed = dataclasses.replace(turn, index=index)
        await tx.execute(_insert_sql("turns", TURN_COLS), *_values(TURN_COLS, _turn_params(committed)))
        await tx.execute(
            f"UPDATE sessions SET turn_count = turn_count + 1, updated_at = {_NOW.format('$1')} WHERE session_id = $2",
            self._now(),
            turn.session_id,
        )
        return committed

    async def list_turns(self, session_id: str) -> list[TurnRecord]:
        """Every turn, oldest first."""
        async with self._transaction() as tx:
            await self._require_session(tx, session_id)
            rows = await tx.fetch(
                f"SELECT {TURN_COLS} FROM turns WHERE session_id = $1 ORDER BY turn_index", session_id
            )
        return [_turn_from_row(row) for row in rows]

    async def last_completed_turn(self, session_id: str) -> TurnRecord | None:
        """The newest completed generate/iterate turn, if any."""
        async with self._transaction() as tx:
            await self._require_session(tx, session_id)
            row = await tx.fetchrow(
                f"SELECT {TURN_COLS} FROM turns WHERE session_id = $1 AND status = 'completed' "
                "AND kind IN ('generate', 'iterate') ORDER BY turn_index DESC LIMIT 1",
                session_id,
            )
        return _turn_from_row(row) if row is not None else None

    async def list_layers(self, session_id: str) -> list[LayerRecord]:
        """The layer stack, background (z_order 0) first."""
        async with self._transaction() as tx:
            await self._require_session(tx, session_id)
            rows = await tx.fetch(
                f"SELECT {LAYER_COLS} FROM layers WHERE session_id = $1 ORDER BY z_order, layer_id", session_id
            )
        return [_layer_from_row(row) for row in rows]

    async def set_layer_locked(self, session_id: str, layer_id: str, locked: bool, turn: TurnRecord) -> LayerRecord:
        """Set a layer's locked flag and record the lock/unlock turn in one transaction."""
        async with self._transaction() as tx:
            await self._lock_session(tx, session_id)
            row = await tx.fetchrow(
                f"UPDATE layers SET locked = $1 WHERE session_id = $2 AND layer_id = $3 RETURNING {LAYER_COLS}",
                locked,
                session_id,
                layer_id,
            )
            if row is None:
                raise NotFound(
                    f"layer {layer_id} not found in session {session_id}", reason=Reason.ERROR_REASON_LAYER_NOT_FOUND
                )
            await self._insert_turn(tx, dataclasses.replace(turn, session_id=session_id))
        return _layer_from_row(row)

    # Projects, credentials, usage -----------------------------------------------------------
    async def put_project(self, project: ProjectRecord) -> ProjectRecord:
        """Create or replace a project's settings (its creation time and credentials are kept)."""
        updates = ", ".join(f"{name} = excluded.{name}" for name in _names(PROJECT_COLS)[1:-1])
        async with self._reading() as db:
            created_at = await db.fetchval(
                f"{_insert_sql('projects', PROJECT_COLS)} ON CONFLICT (project_id) DO UPDATE SET {updates} "
                "RETURNING created_at",
                *_project_values(project),
            )
        return dataclasses.replace(project, created_at=created_at)

    async def get_project(self, project_id: str) -> ProjectRecord:
        """A project; NotFound when absent."""
        async with self._reading() as db:
            row = await db.fetchrow(f"SELECT {PROJECT_COLS} FROM projects WHERE project_id = $1", project_id)
        if row is None:
            raise project_not_found(project_id)
        return _project_from_row(row)

    async def list_projects(self) -> list[ProjectRecord]:
        """Every project, by id."""
        async with self._reading() as db:
            rows = await db.fetch(f"SELECT {PROJECT_COLS} FROM projects ORDER BY project_id")
        return [_project_from_row(row) for row in rows]

    async def delete_project(self, project_id: str) -> None:
        """Delete a project and its credentials; NotFound when absent."""
        async with self._reading() as db:
            if not _rowcount(await db.execute("DELETE FROM projects WHERE project_id = $1", project_id)):
                raise project_not_found(project_id)

    async def add_credential(self, credential: CredentialRecord) -> None:
        """Store a credential; NotFound when its project is absent."""
        async with self._transaction() as tx:
            if (
                await tx.fetchval("SELECT 1 FROM projects WHERE project_id = $1 FOR SHARE", credential.project_id)
                is None
            ):
                raise project_not_found(credential.project_id)
            await tx.execute(
                _insert_sql("credentials", CREDENTIAL_COLS), *_values(CREDENTIAL_COLS, dataclasses.asdict(credential))
            )

    async def find_credential(self, secret_hash: str) -> CredentialRecord | None:
        """The credential with this secret hash, if any (expiry is the caller's check)."""
        async with self._reading() as db:
            row = await db.fetchrow(f"SELECT {CREDENTIAL_COLS} FROM credentials WHERE secret_hash = $1", secret_hash)
        return CredentialRecord(**dict(row)) if row is not None else None

    async def revoke_credential(self, project_id: str, credential_id: str) -> None:
        """Delete a credential of a project; NotFound when absent."""
        async with self._reading() as db:
            status = await db.execute(
                "DELETE FROM credentials WHERE project_id = $1 AND credential_id = $2", project_id, credential_id
            )
        if not _rowcount(status):
            raise NotFound(f"key {credential_id} not found in project {project_id}")

    async def delete_expired_credentials(self, now: float) -> int:
        """Forget app tokens past their expiry; returns how many."""
        async with self._reading() as db:
            status = await db.execute("DELETE FROM credentials WHERE expires_at > 0 AND expires_at < $1", now)
        return _rowcount(status)

    async def list_usage(self, project_id: str, start_day: str = "", end_day: str = "") -> list[UsageRecord]:
        """Usage rows of a project, oldest day first, optionally within [start_day, end_day]."""
        async with self._reading() as db:
            rows = await db.fetch(
                f"SELECT {USAGE_COLS} FROM usage WHERE project_id = $1 AND day >= $2 AND day <= $3 "
                "ORDER BY day, provider, model, billing_mode",
                project_id,
                start_day or "0000-00-00",
                end_day or "9999-99-99",
            )
        return [UsageRecord(**dict(row)) for row in rows]


# Statements inside a caller's transaction ---------------------------------------------------
async def _upsert_usage(tx: asyncpg.Connection, usage: UsageRecord) -> None:
    await tx.execute(
        f"{_insert_sql('usage', USAGE_COLS)} ON CONFLICT (project_id, day, provider, model, billing_mode) "
        "DO UPDATE SET images = usage.images + excluded.images, credits = usage.credits + excluded.credits",
        *dataclasses.astuple(usage),
    )


async def _unpin(tx: asyncpg.Connection, shas: Sequence[str]) -> None:
    """Release one pending write per entry of `shas` (rows locked in sha order: no deadlocks)."""
    await tx.execute("SELECT 1 FROM blob_pins WHERE sha256 = ANY($1::text[]) ORDER BY sha256 FOR UPDATE", list(shas))
    await tx.execute(
        "UPDATE blob_pins AS p SET pending = p.pending - c.n "
        "FROM (SELECT sha256, count(*) AS n FROM unnest($1::text[]) AS u (sha256) GROUP BY sha256) AS c "
        "WHERE p.sha256 = c.sha256",
        list(shas),
    )
    await tx.execute("DELETE FROM blob_pins WHERE sha256 = ANY($1::text[]) AND pending <= 0", list(shas))


# Row mapping --------------------------------------------------------------------------------
def _session_params(session: SessionRecord) -> dict[str, Any]:
    return dataclasses.asdict(session)


def _session_from_row(row: asyncpg.Record) -> SessionRecord:
    fields = dict(row)
    config = dict(fields["config"])
    config["fallback_chain"] = tuple(tuple(pair) for pair in config.get("fallback_chain", ()))
    fields["config"] = SessionConfigRecord(**config)
    return SessionRecord(**fields)


def _turn_params(turn: TurnRecord) -> dict[str, Any]:
    params = dataclasses.asdict(turn)
    params["turn_index"] = params.pop("index")
    return params


def _turn_from_row(row: asyncpg.Record) -> TurnRecord:
    fields = dict(row)
    fields["index"] = fields.pop("turn_index")
    fields["attempts"] = tuple(AttemptRecord(**a) for a in fields["attempts"])
    fields["degradations"] = tuple(fields["degradations"])
    return TurnRecord(**fields)


def _layer_params(layer: LayerRecord) -> dict[str, Any]:
    params = dataclasses.asdict(layer)
    params["bbox_x"], params["bbox_y"], params["bbox_width"], params["bbox_height"] = layer.bbox
    return params


def _layer_from_row(row: asyncpg.Record) -> LayerRecord:
    fields = dict(row)
    fields["bbox"] = tuple(fields.pop(key) for key in ("bbox_x", "bbox_y", "bbox_width", "bbox_height"))
    return LayerRecord(**fields)


def _project_values(project: ProjectRecord) -> tuple:
    params = dataclasses.asdict(project)
    params["allowed_providers"] = list(project.allowed_providers)
    return _values(PROJECT_COLS, params)


def _project_from_row(row: asyncpg.Record) -> ProjectRecord:
    data = dict(row)
    data["allowed_providers"] = tuple(data["allowed_providers"])
    return ProjectRecord(**data)
