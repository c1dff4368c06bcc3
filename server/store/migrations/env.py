"""Alembic environment: runs on the connection PostgresStore.open passes in `config.attributes`.

The caller already holds a transaction and an advisory lock on that connection, so replicas that
start together apply each revision once; PostgreSQL's DDL is transactional, so a failed upgrade
leaves the previous schema intact.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the PostgreSQL migrations run through PostgresStore.open(), which supplies the connection")
context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
