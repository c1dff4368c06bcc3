"""SQLite tables and queries for projects, credentials and usage (mixed into SqliteStore)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import aiosqlite

from aigen.server.errors import NotFound, project_not_found
from aigen.server.store.columns import CREDENTIAL_COLS, PROJECT_COLS, USAGE_COLS
from aigen.server.store.records import CredentialRecord, ProjectRecord, UsageRecord

MIGRATION = (
    """CREATE TABLE projects (
        project_id TEXT PRIMARY KEY, allowed_providers TEXT NOT NULL, default_provider TEXT NOT NULL,
        default_model TEXT NOT NULL, billing_mode TEXT NOT NULL, rate_limit INTEGER NOT NULL,
        allow_public_clients INTEGER NOT NULL, created_at REAL NOT NULL)""",
    """CREATE TABLE credentials (
        credential_id TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects (project_id) ON DELETE CASCADE,
        kind TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
        expires_at REAL NOT NULL)""",
    "CREATE INDEX credentials_project ON credentials (project_id)",
    """CREATE TABLE usage (
        project_id TEXT NOT NULL, day TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
        billing_mode TEXT NOT NULL, images INTEGER NOT NULL, credits INTEGER NOT NULL,
        PRIMARY KEY (project_id, day, provider, model, billing_mode))""",
)


_UPSERT_USAGE = (
    f"INSERT INTO usage ({USAGE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (project_id, day, provider, model, billing_mode) "
    "DO UPDATE SET images = images + excluded.images, credits = credits + excluded.credits"
)


async def upsert_usage(tx: aiosqlite.Connection, usage: UsageRecord) -> None:
    """Add one usage record to its aggregate row (inside the caller's transaction)."""
    await tx.execute(_UPSERT_USAGE, dataclasses.astuple(usage))


def upsert_usage_now(conn: sqlite3.Connection, usage: UsageRecord) -> None:
    """upsert_usage on the connection's own thread (inside the caller's transaction)."""
    conn.execute(_UPSERT_USAGE, dataclasses.astuple(usage))


class AccessTables:
    """Projects, credentials and usage on the store's connection (`_reading`, `_transaction`)."""

    async def put_project(self, project: ProjectRecord) -> ProjectRecord:
        """Create or replace a project's settings (its creation time is kept)."""
        async with self._transaction() as tx:
            rows = await tx.execute_fetchall(
                "SELECT created_at FROM projects WHERE project_id = ?", (project.project_id,)
            )
            if rows:
                project = dataclasses.replace(project, created_at=rows[0][0])
            await tx.execute(
                f"INSERT OR REPLACE INTO projects ({PROJECT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                _project_params(project),
            )
        return project

    async def get_project(self, project_id: str) -> ProjectRecord:
        """A project; NotFound when absent."""
        async with self._reading() as db:
            rows = await db.execute_fetchall(f"SELECT {PROJECT_COLS} FROM projects WHERE project_id = ?", (project_id,))
        if not rows:
            raise project_not_found(project_id)
        return _project_from_row(rows[0])

    async def list_projects(self) -> list[ProjectRecord]:
        """Every project, by id."""
        async with self._reading() as db:
            rows = await db.execute_fetchall(f"SELECT {PROJECT_COLS} FROM projects ORDER BY project_id")
        return [_project_from_row(row) for row in rows]

    async def delete_project(self, project_id: str) -> None:
        """Delete a project and its credentials; NotFound when absent."""
        async with self._transaction() as tx:
            cursor = await tx.execute("DELETE FROM projects WHERE project_id = ?", (project_id,))
            if cursor.rowcount == 0:
                raise project_not_found(project_id)

    async def add_credential(self, credential: CredentialRecord) -> None:
        """Store a credential; NotFound when its project is absent."""
        async with self._transaction() as tx:
            rows = await tx.execute_fetchall("SELECT 1 FROM projects WHERE project_id = ?", (credential.project_id,))
            if not rows:
                raise project_not_found(credential.project_id)
            await tx.execute(
                f"INSERT INTO credentials ({CREDENTIAL_COLS}) VALUES (?, ?, ?, ?, ?, ?)",
                dataclasses.astuple(credential),
            )

    async def find_credential(self, secret_hash: str) -> CredentialRecord | None:
        """The credential with this secret hash, if any (expiry is the caller's check)."""
        async with self._reading() as db:
            rows = await db.execute_fetchall(
                f"SELECT {CREDENTIAL_COLS} FROM credentials WHERE secret_hash = ?", (secret_hash,)
            )
        return CredentialRecord(**dict(rows[0])) if rows else None

    async def revoke_credential(self, project_id: str, credential_id: str) -> None:
        """Delete a credential of a project; NotFound when absent."""
        async with self._transaction() as tx:
            cursor = await tx.execute(
                "DELETE FROM credentials WHERE project_id = ? AND credential_id = ?", (project_id, credential_id)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"key {credential_id} not found in project {project_id}")

    async def delete_expired_credentials(self, now: float) -> int:
        """Forget app tokens past their expiry; returns how many."""
        async with self._transaction() as tx:
            cursor = await tx.execute("DELETE FROM credentials WHERE expires_at > 0 AND expires_at < ?", (now,))
            return cursor.rowcount

    async def list_usage(self, project_id: str, start_day: str = "", end_day: str = "") -> list[UsageRecord]:
        """Usage rows of a project, oldest day first, optionally within [start_day, end_day]."""
        async with self._reading() as db:
            rows = await db.execute_fetchall(
                f"SELECT {USAGE_COLS} FROM usage WHERE project_id = ? AND day >= ? AND day <= ? "
                "ORDER BY day, provider, model, billing_mode",
                (project_id, start_day or "0000-00-00", end_day or "9999-99-99"),
            )
        return [UsageRecord(**dict(row)) for row in rows]


def _project_params(project: ProjectRecord) -> tuple:
    values = dataclasses.astuple(project)
    return (
        values[0],
        json.dumps(list(project.allowed_providers)),
        *values[2:6],
        int(project.allow_public_clients),
        project.created_at,
    )


def _project_from_row(row: sqlite3.Row) -> ProjectRecord:
    data = dict(row)
    data["allowed_providers"] = tuple(json.loads(data["allowed_providers"]))
    data["allow_public_clients"] = bool(data["allow_public_clients"])
    return ProjectRecord(**data)
