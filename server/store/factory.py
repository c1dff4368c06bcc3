"""The store that settings choose: embedded SQLite, or PostgreSQL with local or S3 blobs.

The shared-mode backends are imported only when chosen, so the embedded mode starts without
loading the PostgreSQL and S3 clients.
"""

from __future__ import annotations

from aigen.server.config import Settings
from aigen.server.ratelimit import AsyncRateLimiter, LocalRateLimiter, RateLimiter
from aigen.server.store.base import Store
from aigen.server.store.blobs import BlobStore, LocalBlobs


def build_blobs(settings: Settings) -> BlobStore:
    """Where the shared store keeps image bytes: files under data_dir/blobs, or the S3 bucket."""
    if settings.blobs == "s3":
        return s3_blobs(settings)
    return LocalBlobs(settings.data_dir / "blobs")


def s3_blobs(settings: Settings) -> BlobStore:
    """The S3-compatible bucket the AIGEN_S3_* settings describe."""
    from aigen.server.store.s3_blobs import S3Blobs

    return S3Blobs(
        bucket=settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region,
        prefix=settings.s3_prefix,
        access_key_id=settings.s3_access_key_id or None,
        secret_access_key=settings.s3_secret_access_key or None,
        public_endpoint_url=settings.s3_public_endpoint_url or None,
    )


def build_store(settings: Settings) -> Store:
    """The store `settings.store` names (not opened yet)."""
    if settings.store == "postgres":
        from aigen.server.store.postgres import PostgresStore

        return PostgresStore(settings.database_url, build_blobs(settings))
    from aigen.server.store.sqlite import SqliteStore

    return SqliteStore(settings.data_dir)


def build_rate_limiter(settings: Settings) -> AsyncRateLimiter:
    """Request counters: in this process (one replica), or in PostgreSQL shared by every replica."""
    if settings.store == "postgres":
        from aigen.server.ratelimit_postgres import PostgresRateLimiter

        return PostgresRateLimiter(settings.database_url, settings.rate_limit_window_s)
    return LocalRateLimiter(RateLimiter(settings.rate_limit_window_s))
