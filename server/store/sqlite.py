"""The embedded store: SQLite (WAL) for records, content-addressed files for image bytes.

Single process, single connection. aiosqlite runs every statement on one worker thread in
order; an asyncio lock gives each coroutine exclusive use of the connection for a whole
read or transaction, so nobody ever observes another coroutine's uncommitted writes. The
transactions of every generation (an image and its usage, a turn, the lease release) run as
functions on that thread (`_run_transaction`), and those queued while one group runs are
committed together: one hand-off and one COMMIT for the group, each function in a SAVEPOINT
of its own so a failing one leaves the others' writes whole (group commit).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import pathlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiosqlite

from aigen.server.errors import NotFound, Reason
from aigen.server.store import sqlite_access as access_tables
from aigen.server.store.base import Store, interrupted_turn, pending_record
from aigen.server.store.blobs import BLOB_PIN_S, blob_path
from aigen.server.store.blobs import SHA256 as _SHA256
from aigen.server.store.blobs import stale_files as _stale_files
from aigen.server.store.blobs import unlink_all as _unlink_all
from aigen.server.store.blobs import write_atomic as _write_atomic
from aigen.server.store.columns import IMAGE_COLS, LAYER_COLS, SESSION_COLS, TURN_COLS
from aigen.server.store.pages import decode_page_token, encode_page_token, page_limit
from aigen.server.store.records import (
    AttemptRecord,
    ImageRecord,
    LayerRecord,
    Page,
    SessionConfigRecord,
    SessionRecord,
    TurnRecord,
    UsageRecord,
)

# Migration N (1-based) brings the schema from user_version N-1 to N. Append, never edit.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE sessions (
            session_id TEXT PRIMARY KEY, project TEXT NOT NULL, mode TEXT NOT NULL,
            config TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
            status TEXT NOT NULL, busy_until REAL NOT NULL, current_image_id TEXT,
            turn_count INTEGER NOT NULL, layer_count INTEGER NOT NULL)""",
        "CREATE INDEX sessions_newest ON sessions (created_at DESC, session_id DESC)",
        "CREATE INDEX sessions_project_newest ON sessions (project, created_at DESC, session_id DESC)",
        "CREATE INDEX sessions_status ON sessions (status)",
        """CREATE TABLE images (
            image_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, content_type TEXT NOT NULL,
            width INTEGER NOT NULL, height INTEGER NOT NULL, size_bytes INTEGER NOT NULL,
            created_at REAL NOT NULL, kind TEXT NOT NULL,
            session_id TEXT REFERENCES sessions (session_id) ON DELETE CASCADE)""",
        "CREATE INDEX images_sha256 ON images (sha256)",
        "CREATE INDEX images_session ON images (session_id)",
        """CREATE TABLE turns (
            turn_id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
            turn_index INTEGER NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
            created_at REAL NOT NULL, prompt TEXT NOT NULL, instructions TEXT NOT NULL,
            requested_provider TEXT NOT NULL, requested_model TEXT NOT NULL,
            served_provider TEXT NOT NULL, served_model TEXT NOT NULL, attempts TEXT NOT NULL,
            duration_s REAL NOT NULL, image_id TEXT, credits_used INTEGER NOT NULL,
            error TEXT NOT NULL, layer_id TEXT NOT NULL, degradations TEXT NOT NULL,
            aspect_ratio TEXT NOT NULL, image_size TEXT NOT NULL, provider_state BLOB,
            UNIQUE (session_id, turn_index))""",
        """CREATE TABLE layers (
            session_id TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
            layer_id TEXT NOT NULL, name TEXT NOT NULL, z_order INTEGER NOT NULL,
            image_id TEXT NOT NULL, bbox_x INTEGER NOT NULL, bbox_y INTEGER NOT NULL,
            bbox_width INTEGER NOT NULL, bbox_height INTEGER NOT NULL, coverage REAL NOT NULL,
            locked INTEGER NOT NULL, PRIMARY KEY (session_id, layer_id))""",
    ),
    access_tables.MIGRATION,
    # The generation a session's lease is for (JSON, see Store.try_begin_generation).
    ("ALTER TABLE sessions ADD COLUMN pending TEXT",),
)
SCHEMA_VERSION = len(_MIGRATIONS)


T = TypeVar("T")
log = logging.getLogger(__name__)
ORPHAN_BATCH = 500  # blobs checked against the images table per statement


def _insert_sql(table: str, cols: str) -> str:
    names = [name.strip() for name in cols.split(",")]
    return f"INSERT INTO {table} ({cols}) VALUES ({', '.join(':' + name for name in names)})"


def _session_not_found(session_id: str) -> NotFound:
    return NotFound(f"session {session_id} not found")


class SqliteStore(access_tables.AccessTables, Store):
    """Store on SQLite plus content-addressed blob files under `data_dir`."""

    def __init__(self, data_dir: pathlib.Path, *, clock: Callable[[], float] = time.time) -> None:
        self._data_dir = pathlib.Path(data_dir)
        self._blob_dir = self._data_dir / "blobs"
        self._clock = clock
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # exclusive use of the connection
        self._pin_lock = threading.Lock()  # pinning a blob vs. deleting it (both in worker threads)
        self._pins: dict[str, tuple[int, float]] = {}  # sha256 -> (pending writes, last write)
        self._gc_deferred: set[str] = set()
        self._queued: list[_Queued] = []  # transactions waiting for the next group commit
        self._flushes: set[asyncio.Task[None]] = set()
        self._orphan_sweep: asyncio.Task[None] | None = None

    # Lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create or migrate the schema, then mark sessions left generating as ready."""
        await asyncio.to_thread(self._blob_dir.mkdir, parents=True, exist_ok=True)
        db = await aiosqlite.connect(self._data_dir / "aigen.db", isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            mode = (await db.execute_fetchall("PRAGMA journal_mode=WAL"))[0][0]
            if mode.lower() != "wal":
                raise RuntimeError(f"SQLite refused WAL mode (got {mode})")
            # NORMAL in WAL never corrupts the database; a power cut can only lose the last
            # transactions. Turn commits switch to FULL (see _transaction): each records a
            # generation the caller was told about and may have paid for.
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=5000")
            self._db = db
            await self._migrate()
            async with self._transaction(durable=True) as tx:
                rows = await tx.execute_fetchall(
                    "SELECT session_id, pending FROM sessions WHERE status = 'generating' AND pending IS NOT NULL"
                )
                for row in rows:
                    await self._record_interrupted(tx, row["session_id"], row["pending"])
                await tx.execute(
                    "UPDATE sessions SET status = 'ready', busy_until = 0, pending = NULL WHERE status = 'generating'"
                )
        except BaseException:
            self._db = None
            await db.close()
            raise
        self._orphan_sweep = asyncio.create_task(self._collect_orphans())

    async def close(self) -> None:
        """Stop the orphan sweep, collect blobs whose deletion was deferred, close the database."""
        if self._db is None:
            return
        if self._orphan_sweep is not None:
            self._orphan_sweep.cancel()
            await asyncio.gather(self._orphan_sweep, return_exceptions=True)
        await self._collect_blobs(set(), honour_pins=False)
        async with self._lock:
            db, self._db = self._db, None
            await db.close()

    async def _migrate(self) -> None:
        async with self._transaction() as tx:
            version = (await tx.execute_fetchall("PRAGMA user_version"))[0][0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"database schema {version} is newer than this server ({SCHEMA_VERSION})")
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[number - 1]:
                    await tx.execute(statement)
                await tx.execute(f"PRAGMA user_version = {number}")

    # Connection access ----------------------------------------------------------------------
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self._conn()

    @asynccontextmanager
    async def _transaction(self, *, durable: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the connection inside BEGIN IMMEDIATE; rolled back on any error.

        Statements queued on aiosqlite's worker thread run in order even when the awaiting
        coroutine is cancelled, so the ROLLBACK queued here always follows them.
        """
        async with self._lock:
            db = self._conn()
            try:
                if durable:
                    await db.execute("PRAGMA synchronous=FULL")
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                await db.rollback()
                raise
            finally:
                if durable:
                    await db.execute("PRAGMA synchronous=NORMAL")

    async def _run_transaction(self, work: Callable[[sqlite3.Connection], T], *, durable: bool = False) -> T:
        """`work` on the connection's thread, committed with whatever else is queued meanwhile.

        All or nothing for `work` (rolled back on any error it raises); FULL-synchronous when
        `durable`. Once queued it runs to its end even if the caller is cancelled.
        """
        queued = _Queued(work, durable, asyncio.get_running_loop().create_future())
        self._queued.append(queued)
        if len(self._queued) == 1:  # the first of a new group schedules its commit
            flush = asyncio.create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await queued.outcome

    async def _flush(self) -> None:
        """Commit the queued group as one call on the connection's thread."""
        group: list[_Queued] = []
        try:
            async with self._lock:
                group, self._queued = self._queued, []
                db = self._conn()
                outcomes = await db._execute(_transact_group, db._conn, [(item.work, item.durable) for item in group])
        except BaseException as exc:  # the callers get it: nobody awaits this task
            for item in group or self._take_queued():
                _settle(item.outcome, exc)
            return
        for item, outcome in zip(group, outcomes, strict=True):
            _settle(item.outcome, outcome)

    def _take_queued(self) -> list[_Queued]:
        group, self._queued = self._queued, []
        return group

    @staticmethod
    async def _require_session(db: aiosqlite.Connection, session_id: str) -> None:
        rows = await db.execute_fetchall("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,))
        if not rows:
            raise _session_not_found(session_id)

    # Sessions -------------------------------------------------------------------------------
    async def create_session(self, session: SessionRecord) -> None:
        """Insert a new session."""
        async with self._transaction() as tx:
            await tx.execute(_insert_sql("sessions", SESSION_COLS), _session_params(session))

    async def get_session(self, session_id: str, project: str | None = None) -> SessionRecord:
        """The session; NotFound when absent or (with a non-empty `project`) in another project."""
        async with self._reading() as db:
            rows = await db.execute_fetchall(f"SELECT {SESSION_COLS} FROM sessions WHERE session_id = ?", (session_id,))
        if not rows or (project and rows[0]["project"] != project):
            raise _session_not_found(session_id)
        return _session_from_row(rows[0])

    async def list_sessions(self, project: str | None, page_size: int, page_token: str) -> Page:
        """Sessions newest first, keyset-paginated; an empty `project` means every project."""
        limit = page_limit(page_size)
        where, params = [], []
        if project:
            where.append("project = ?")
            params.append(project)
        if page_token:
            created_at, session_id = decode_page_token(page_token)
            where.append("(created_at < ? OR (created_at = ? AND session_id < ?))")
            params += [created_at, created_at, session_id]
        sql = f"SELECT {SESSION_COLS} FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, session_id DESC LIMIT ?"
        async with self._reading() as db:
            rows = await db.execute_fetchall(sql, (*params, limit + 1))
        sessions = [_session_from_row(row) for row in rows[:limit]]
        token = encode_page_token(sessions[-1]) if len(rows) > limit else ""
        return Page(sessions=sessions, next_page_token=token)

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and everything it owns, then the blobs nothing uses any more."""
        async with self._transaction() as tx:
            await self._require_session(tx, session_id)
            rows = await tx.execute_fetchall("SELECT DISTINCT sha256 FROM images WHERE session_id = ?", (session_id,))
            for table in ("turns", "layers", "images", "sessions"):
                await tx.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
        await self._collect_blobs({row["sha256"] for row in rows})

    async def try_begin_generation(
        self, session_id: str, lease_s: float, pending: Mapping[str, Any] | None = None
    ) -> bool:
        """Take the generation lease unless another unexpired one holds the session; an
        expired lease's pending generation is recorded as interrupted first.
        """
        async with self._transaction() as tx:
            now = self._clock()
            rows = await tx.execute_fetchall(
                "SELECT status, busy_until, pending FROM sessions WHERE session_id = ?", (session_id,)
            )
            if not rows:
                raise _session_not_found(session_id)
            status, busy_until, previous = rows[0]["status"], rows[0]["busy_until"], rows[0]["pending"]
            if status != "ready" and busy_until >= now:
                return False
            if status != "ready":
                await self._record_interrupted(tx, session_id, previous)
            record = pending_record(pending, now)
            await tx.execute(
                "UPDATE sessions SET status = 'generating', busy_until = ?, pending = ? WHERE session_id = ?",
                (now + lease_s, json.dumps(record) if record is not None else None, session_id),
            )
            return True

    async def end_generation(self, session_id: str) -> None:
        """Release the lease (no-op when the session was deleted meanwhile)."""

        def release(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE sessions SET status = 'ready', busy_until = 0, pending = NULL WHERE session_id = ?",
                (session_id,),
            )

        await self._run_transaction(release)

    async def _record_interrupted(self, tx: aiosqlite.Connection, session_id: str, pending: str | None) -> None:
        """Record a cut-off generation (its lease's pending JSON) as an "interrupted" turn."""
        if pending is not None:
            await self._insert_turn(tx, interrupted_turn(session_id, json.loads(pending), self._clock()))

    # Blobs ----------------------------------------------------------------------------------
    def _blob_path(self, sha256: str) -> pathlib.Path:
        return blob_path(self._blob_dir, sha256)

    async def write_blob(self, data: bytes) -> str:
        """Store bytes content-addressed (atomic, idempotent); return their sha256 hex."""
        return await asyncio.to_thread(self._write_blob, data)

    def blob_writer(self) -> Callable[[bytes], str]:
        """write_blob for a worker thread: the engine stores an output where it inspects it."""
        return self._write_blob

    def _write_blob(self, data: bytes) -> str:
        """Hash, pin and write in one worker call; the pin comes first, so a collection running
        meanwhile either defers this blob or has deleted it before the write recreates it.
        """
        sha256 = hashlib.sha256(data).hexdigest()
        with self._pin_lock:
            pending, _ = self._pins.get(sha256, (0, 0.0))
            self._pins[sha256] = (pending + 1, time.monotonic())
        try:
            _write_atomic(self._blob_path(sha256), data)
        except BaseException:
            self._unpin((sha256,))
            raise
        return sha256

    async def read_blob(self, sha256: str) -> bytes:
        """The bytes of a blob; NotFound (IMAGE_NOT_FOUND) when absent."""
        if not _SHA256.fullmatch(sha256):
            raise NotFound(f"blob {sha256} not found", reason=Reason.ERROR_REASON_IMAGE_NOT_FOUND)
        try:
            return await asyncio.to_thread(self._blob_path(sha256).read_bytes)
        except FileNotFoundError:
            raise NotFound(f"blob {sha256} not found", reason=Reason.ERROR_REASON_IMAGE_NOT_FOUND) from None

    def _unpin(self, shas: Iterable[str]) -> None:
        """Release one pending write of each blob (now referenced by a row, or failed)."""
        with self._pin_lock:
            for sha256 in shas:
                pending, written = self._pins.get(sha256, (0, 0.0))
                if pending <= 1:
                    self._pins.pop(sha256, None)
                else:
                    self._pins[sha256] = (pending - 1, written)

    def _pinned(self, sha256: str, now: float) -> bool:
        pending, written = self._pins.get(sha256, (0, 0.0))
        return pending > 0 and now - written < BLOB_PIN_S

    async def _collect_blobs(self, candidates: set[str], *, honour_pins: bool = True) -> None:
        """Delete the files of candidate blobs no image row references.

        Blobs pinned by a recent write_blob are deferred to a later collection (at the
        latest on close). The connection lock is held throughout, so no row can start
        referencing a blob between the check and the unlink; the pin lock is held from the
        pin check to the unlink, so no write can pin a blob in between.
        """
        async with self._lock:
            candidates = candidates | self._gc_deferred
            if not candidates:
                return
            marks = ", ".join("?" * len(candidates))
            rows = await self._conn().execute_fetchall(
                f"SELECT DISTINCT sha256 FROM images WHERE sha256 IN ({marks})", tuple(candidates)
            )
            unused = candidates - {row["sha256"] for row in rows}
            self._gc_deferred = await asyncio.to_thread(self._unlink_unpinned, unused, honour_pins)

    async def _collect_orphans(self) -> None:
        """Delete what a crash left in the blob directory: blobs written but never referenced
        (pins live in memory, so a crash forgets them) and unfinished temp files.

        Runs in the background after open. Only files older than BLOB_PIN_S are touched, like
        an expired pin in the shared store, so a write in flight is never at risk.
        """
        try:
            shas, temps = await asyncio.to_thread(_stale_files, self._blob_dir, time.time() - BLOB_PIN_S)
            await asyncio.to_thread(_unlink_all, temps)
            for start in range(0, len(shas), ORPHAN_BATCH):
                await self._collect_blobs(set(shas[start : start + ORPHAN_BATCH]))
        except asyncio.CancelledError:
            raise
        except Exception:  # a sweep that fails leaves files behind, never breaks the store
            log.exception("collecting orphan blobs failed")

    def _unlink_unpinned(self, unused: set[str], honour_pins: bool) -> set[str]:
        """Delete the blobs of `unused` that are not pinned; returns the pinned ones (deferred)."""
        with self._pin_lock:
            now = time.monotonic()
            deferred = {sha for sha in unused if honour_pins and self._pinned(sha, now)}
            for sha in unused - deferred:
                self._pins.pop(sha, None)
            _unlink_all(self._blob_path(sha) for sha in unused - deferred)
        return deferred

    # Images ---------------------------------------------------------------------------------
    async def insert_image(self, image: ImageRecord, usage: UsageRecord | None = None) -> None:
        """Record an image whose blob was already written (and its usage); NotFound for an unknown session."""

        def insert(conn: sqlite3.Connection) -> None:
            if image.session_id is not None:
                _require_session_now(conn, image.session_id)
            if usage is not None:
                access_tables.upsert_usage_now(conn, usage)
            conn.execute(_INSERT_IMAGE, dataclasses.asdict(image))

        await self._run_transaction(insert)
        self._unpin((image.sha256,))

    async def get_image(self, image_id: str) -> ImageRecord:
        """An image's metadata; NotFound (IMAGE_NOT_FOUND) when absent."""
        async with self._reading() as db:
            rows = await db.execute_fetchall(f"SELECT {IMAGE_COLS} FROM images WHERE image_id = ?", (image_id,))
        if not rows:
            raise NotFound(f"image {image_id} not found", reason=Reason.ERROR_REASON_IMAGE_NOT_FOUND)
        return ImageRecord(**dict(rows[0]))

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
        session_id = turn.session_id
        now = self._clock()

        def commit(conn: sqlite3.Connection) -> TurnRecord:
            _require_session_now(conn, session_id)
            if usage is not None:
                access_tables.upsert_usage_now(conn, usage)
            conn.executemany(_INSERT_IMAGE, map(dataclasses.asdict, images))
            committed = _insert_turn_now(conn, turn, now)
            if current_image_id is not None:
                conn.execute(
                    "UPDATE sessions SET current_image_id = ? WHERE session_id = ?", (current_image_id, session_id)
                )
            if layers is not None:
                _replace_layers_now(conn, session_id, layers)
            return committed

        committed = await self._run_transaction(commit, durable=True)
        self._unpin(image.sha256 for image in images)
        return committed

    async def _insert_turn(self, tx: aiosqlite.Connection, turn: TurnRecord) -> TurnRecord:
        """Insert the turn with the next index and bump the session's counters."""
        rows = await tx.execute_fetchall(_NEXT_TURN_INDEX, (turn.session_id,))
        committed = dataclasses.replace(turn, index=rows[0][0])
        await tx.execute(_INSERT_TURN, _turn_params(committed))
        await tx.execute(_COUNT_TURN, (self._clock(), turn.session_id))
        return committed

    async def list_turns(self, session_id: str) -> list[TurnRecord]:
        """Every turn, oldest first."""
        async with self._reading() as db:
            await self._require_session(db, session_id)
            rows = await db.execute_fetchall(
                f"SELECT {TURN_COLS} FROM turns WHERE session_id = ? ORDER BY turn_index", (session_id,)
            )
        return [_turn_from_row(row) for row in rows]

    async def last_completed_turn(self, session_id: str) -> TurnRecord | None:
        """The newest completed generate/iterate turn, if any."""
        async with self._reading() as db:
            await self._require_session(db, session_id)
            rows = await db.execute_fetchall(
                f"SELECT {TURN_COLS} FROM turns WHERE session_id = ? AND status = 'completed' "
                "AND kind IN ('generate', 'iterate') ORDER BY turn_index DESC LIMIT 1",
                (session_id,),
            )
        return _turn_from_row(rows[0]) if rows else None

    async def list_layers(self, session_id: str) -> list[LayerRecord]:
        """The layer stack, background (z_order 0) first."""
        async with self._reading() as db:
            await self._require_session(db, session_id)
            rows = await db.execute_fetchall(
                f"SELECT {LAYER_COLS} FROM layers WHERE session_id = ? ORDER BY z_order, layer_id", (session_id,)
            )
        return [_layer_from_row(row) for row in rows]

    async def set_layer_locked(self, session_id: str, layer_id: str, locked: bool, turn: TurnRecord) -> LayerRecord:
        """Set a layer's locked flag and record the lock/unlock turn in one transaction."""
        async with self._transaction(durable=True) as tx:
            await self._require_session(tx, session_id)
            cursor = await tx.execute(
                "UPDATE layers SET locked = ? WHERE session_id = ? AND layer_id = ?",
                (int(locked), session_id, layer_id),
            )
            if not cursor.rowcount:
                raise NotFound(
                    f"layer {layer_id} not found in session {session_id}", reason=Reason.ERROR_REASON_LAYER_NOT_FOUND
                )
            await self._insert_turn(tx, dataclasses.replace(turn, session_id=session_id))
            rows = await tx.execute_fetchall(
                f"SELECT {LAYER_COLS} FROM layers WHERE session_id = ? AND layer_id = ?", (session_id, layer_id)
            )
        return _layer_from_row(rows[0])


# Transactions on the connection's thread --------------------------------------------------
_INSERT_IMAGE = _insert_sql("images", IMAGE_COLS)


Work = Callable[[sqlite3.Connection], Any]


@dataclasses.dataclass(frozen=True)
class _Queued:
    """A transaction waiting for its group commit, and the future its caller awaits."""

    work: Work
    durable: bool
    outcome: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    """Give `future` its result, or its exception when `outcome` is one."""
    if future.done():
        return
    if isinstance(outcome, asyncio.CancelledError):
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _transact_group(conn: sqlite3.Connection, group: list[tuple[Work, bool]]) -> list[Any]:
    """Each work's result or exception, all committed in one transaction when possible.

    When the group's transaction itself fails (BEGIN, a SAVEPOINT or COMMIT), it is rolled back
    and every work runs again in a transaction of its own.
    """
    if len(group) == 1:
        return [_outcome(_transact, conn, *group[0])]
    durable = any(durable for _, durable in group)
    try:
        return _transact(conn, _in_savepoints([work for work, _ in group]), durable)
    except Exception:
        return [_outcome(_transact, conn, work, durable) for work, durable in group]


def _outcome(function: Callable[..., T], *args: Any) -> T | Exception:
    try:
        return function(*args)
    except Exception as exc:
        return exc


def _in_savepoints(works: list[Work]) -> Callable[[sqlite3.Connection], list[Any]]:
    """One work: every work in `works` in a SAVEPOINT of its own, rolled back alone when it fails."""

    def run(conn: sqlite3.Connection) -> list[Any]:
        return [_in_savepoint(conn, work) for work in works]

    return run


def _in_savepoint(conn: sqlite3.Connection, work: Work) -> Any:
    conn.execute("SAVEPOINT work")
    try:
        result = work(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO work")
        conn.execute("RELEASE work")
        return exc
    conn.execute("RELEASE work")
    return result


def _transact(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], durable: bool) -> T:
    """Run `work` in an immediate transaction, FULL-synchronous when `durable` (see open)."""
    if durable:
        conn.execute("PRAGMA synchronous=FULL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise
        return result
    finally:
        if durable:
            conn.execute("PRAGMA synchronous=NORMAL")


_INSERT_TURN = _insert_sql("turns", TURN_COLS)
_INSERT_LAYER = _insert_sql("layers", LAYER_COLS)
_NEXT_TURN_INDEX = "SELECT COALESCE(MAX(turn_index), 0) + 1 FROM turns WHERE session_id = ?"
_COUNT_TURN = "UPDATE sessions SET turn_count = turn_count + 1, updated_at = ? WHERE session_id = ?"


def _require_session_now(conn: sqlite3.Connection, session_id: str) -> None:
    if conn.execute("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)).fetchone() is None:
        raise _session_not_found(session_id)


def _insert_turn_now(conn: sqlite3.Connection, turn: TurnRecord, now: float) -> TurnRecord:
    """SqliteStore._insert_turn on the connection's own thread, with the session touched at `now`."""
    committed = dataclasses.replace(turn, index=conn.execute(_NEXT_TURN_INDEX, (turn.session_id,)).fetchone()[0])
    conn.execute(_INSERT_TURN, _turn_params(committed))
    conn.execute(_COUNT_TURN, (now, turn.session_id))
    return committed


def _replace_layers_now(conn: sqlite3.Connection, session_id: str, layers: Sequence[LayerRecord]) -> None:
    """The session's layer stack becomes `layers`."""
    conn.execute("DELETE FROM layers WHERE session_id = ?", (session_id,))
    conn.executemany(
        _INSERT_LAYER, [_layer_params(dataclasses.replace(layer, session_id=session_id)) for layer in layers]
    )
    conn.execute("UPDATE sessions SET layer_count = ? WHERE session_id = ?", (len(layers), session_id))


# Row mapping ------------------------------------------------------------------------------
def _session_params(session: SessionRecord) -> dict[str, Any]:
    params = dataclasses.asdict(session)
    params["config"] = json.dumps(params["config"])
    return params


def _session_from_row(row: sqlite3.Row) -> SessionRecord:
    fields = dict(row)
    config = json.loads(fields["config"])
    config["fallback_chain"] = tuple(tuple(pair) for pair in config.get("fallback_chain", ()))
    fields["config"] = SessionConfigRecord(**config)
    return SessionRecord(**fields)


def _turn_params(turn: TurnRecord) -> dict[str, Any]:
    params = dataclasses.asdict(turn)
    params["turn_index"] = params.pop("index")
    params["attempts"] = json.dumps(params["attempts"])
    params["degradations"] = json.dumps(params["degradations"])
    return params


def _turn_from_row(row: sqlite3.Row) -> TurnRecord:
    fields = dict(row)
    fields["index"] = fields.pop("turn_index")
    fields["attempts"] = tuple(AttemptRecord(**a) for a in json.loads(fields["attempts"]))
    fields["degradations"] = tuple(json.loads(fields["degradations"]))
    return TurnRecord(**fields)


def _layer_params(layer: LayerRecord) -> dict[str, Any]:
    params = dataclasses.asdict(layer)
    params["bbox_x"], params["bbox_y"], params["bbox_width"], params["bbox_height"] = layer.bbox
    params["locked"] = int(layer.locked)
    return params


def _layer_from_row(row: sqlite3.Row) -> LayerRecord:
    fields = dict(row)
    fields["bbox"] = tuple(fields.pop(key) for key in ("bbox_x", "bbox_y", "bbox_width", "bbox_height"))
    fields["locked"] = bool(fields["locked"])
    return LayerRecord(**fields)
