"""Alembic migrations of the PostgreSQL store (applied by PostgresStore.open)."""
