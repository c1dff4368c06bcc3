"""The storage modes server tests run in: "embedded" (SQLite and blob files under data_dir, the
default) and "shared" (PostgreSQL and an S3 bucket, as replicas run).

The conftest activates a mode for a module; `overrides(data_dir)` then gives the settings
that put a server on that mode's backends. In the shared mode every data_dir gets its own
database (copied from a template migrated once, or emptied after an earlier test) and its own
prefix in the session's bucket; the same data_dir maps to the same database for the whole test
(or module, for a module's server), so a restarted server finds its data.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from postgres_harness import PostgresServer
    from s3_harness import S3Server

EMBEDDED = "embedded"
SHARED = "shared"
MODES = (EMBEDDED, SHARED)
# Settings that choose a backend: a test giving any of them chose its storage itself.
STORAGE_KEYS = frozenset({"store", "database_url", "blobs", "s3_bucket", "s3_endpoint_url", "s3_prefix"})
TEMPLATE = "aigen_template"


class SharedBackends:
    """One PostgreSQL cluster and one bucket; a database and a key prefix per data_dir.

    Databases are copies of a template migrated once. A database whose data_dirs are done
    (`scope` ended) is emptied and handed out again, under a new bucket prefix.
    """

    def __init__(self, postgres: PostgresServer, s3: S3Server) -> None:
        import psycopg

        from aigen.server.store.postgres import upgrade_schema

        self.postgres = postgres
        self.s3 = s3
        self._connect = psycopg.connect
        self._admin = psycopg.connect(postgres.dsn(), autocommit=True)
        self._admin.execute(f"CREATE DATABASE {TEMPLATE}")
        upgrade_schema(postgres.dsn(TEMPLATE))
        with psycopg.connect(postgres.dsn(TEMPLATE)) as template:
            rows = template.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        self._tables = [name for (name,) in rows if name != "alembic_version"]
        self._created: dict[str, Any] = {}  # database -> connection used to empty it
        self._free: list[str] = []
        self._leases: dict[Path, tuple[str, str]] = {}  # data_dir -> (database, prefix)
        self._scopes: list[list[Path]] = []
        self._handed_out = 0

    def lease(self, data_dir: Path) -> tuple[str, str]:
        """The database and bucket prefix of `data_dir`, the same for as long as its scope lasts."""
        key = data_dir.resolve()
        if key not in self._leases:
            database = self._free.pop() if self._free else self._create()
            self._handed_out += 1
            self._leases[key] = (database, f"{database}-{self._handed_out}/")
            if self._scopes:
                self._scopes[-1].append(key)
        return self._leases[key]

    def _create(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        self._created[name] = self._connect(self.postgres.dsn(name), autocommit=True)
        return name

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Data_dirs first seen in the block give their databases back when it ends."""
        self._scopes.append([])
        try:
            yield
        finally:
            for key in self._scopes.pop():
                self._recycle(self._leases.pop(key)[0])

    def _recycle(self, database: str) -> None:
        """Empty the database for its next data_dir; drop it when something still holds it."""
        conn = self._created[database]
        try:
            with conn.transaction():
                conn.execute("SET LOCAL lock_timeout = '2s'")
                conn.execute("SET LOCAL session_replication_role = replica")  # no FK order to follow
                for table in self._tables:
                    conn.execute(f"DELETE FROM {table}")
        except Exception:
            self._drop(database)
            return
        self._free.append(database)

    def _drop(self, database: str) -> None:
        self._created.pop(database).close()
        self._admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")

    def overrides(self, data_dir: Path) -> dict[str, Any]:
        """Settings putting a server for `data_dir` on its database and bucket prefix."""
        database, prefix = self.lease(data_dir)
        return shared_storage(self.postgres.dsn(database), self.s3, prefix)

    def close(self) -> None:
        """Drop every database and disconnect."""
        for database in list(self._created):
            self._drop(database)
        self._admin.close()


def shared_storage(dsn: str, s3: S3Server, prefix: str) -> dict[str, Any]:
    """Settings keeping state in the database `dsn` and images in `s3`'s bucket under `prefix`."""
    return {
        "store": "postgres",
        "database_url": dsn,
        "blobs": "s3",
        "s3_endpoint_url": s3.endpoint_url,
        "s3_region": s3.region,
        "s3_bucket": s3.bucket,
        "s3_prefix": prefix,
        "s3_access_key_id": s3.access_key_id,
        "s3_secret_access_key": s3.secret_access_key,
    }


_active: SharedBackends | None = None


@contextlib.contextmanager
def activated(backends: SharedBackends | None) -> Iterator[None]:
    """Servers started in the block use `backends` (the shared mode), or the embedded mode for None."""
    global _active
    previous, _active = _active, backends
    try:
        with backends.scope() if backends is not None else contextlib.nullcontext():
            yield
    finally:
        _active = previous


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Data_dirs first used in the block (in the shared mode) give their databases back after it."""
    with _active.scope() if _active is not None else contextlib.nullcontext():
        yield


def overrides(data_dir: Path, explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Settings for the active mode; none when embedded or when `explicit` chooses the storage."""
    if _active is None or STORAGE_KEYS & (explicit or {}).keys():
        return {}
    return _active.overrides(Path(data_dir))


def environment(data_dir: Path) -> dict[str, str]:
    """`overrides` as AIGEN_* environment variables, for servers run as child processes."""
    return {f"AIGEN_{name.upper()}": str(value) for name, value in overrides(data_dir).items()}


def stored_blobs(settings: Any) -> list[str]:
    """What a server with `settings` keeps as blobs: files under data_dir, or keys under its S3 prefix."""
    if settings.blobs == "local":
        return [str(path) for path in (Path(settings.data_dir) / "blobs").rglob("*") if path.is_file()]
    if _active is None:
        raise RuntimeError("no shared backends are active")
    client = _active.s3.client()
    try:
        listing = client.list_objects_v2(Bucket=settings.s3_bucket, Prefix=settings.s3_prefix)
    finally:
        client.close()
    return [item["Key"] for item in listing.get("Contents", ())]
