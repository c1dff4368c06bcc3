"""Blobs in S3-compatible object storage (AWS S3, SeaweedFS, MinIO, R2, ...) through aiobotocore.

Object key = prefix + sha256 hex. One client (one aiohttp connection pool) lives from open()
to close(). Requests are signed with SigV4; path-style addressing (`endpoint/bucket/key`) is
the default because most self-hosted servers need it.

Errors are translated here, at the edge, so nothing upstream sees a botocore exception:

* a missing object (NoSuchKey, 404) -> NotFound with ERROR_REASON_IMAGE_NOT_FOUND;
* unreachable endpoint, timeouts, 5xx, throttling -> BlobStoreUnavailable (UNAVAILABLE), after
  the client's bounded retries;
* wrong credentials, access denied, missing bucket -> BlobStoreMisconfigured (INTERNAL): the
  gateway's own settings are wrong, not the caller's request;
* any other refusal -> AigenError (INTERNAL) naming the S3 error code.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.loaders import Loader, create_loader

from aigen.server.errors import AigenError, InvalidArgument, NotFound
from aigen.server.store.blobs import (
    IMAGE_CACHE_CONTROL,
    BlobStore,
    BlobStoreMisconfigured,
    BlobStoreUnavailable,
    blob_not_found,
    is_sha256,
    require_sha256,
)

# DeleteObjects takes at most this many keys per request.
MAX_DELETE_BATCH = 1000
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_CONFIG_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "InvalidBucketName",
        "InvalidToken",
        "ExpiredToken",
        "NoSuchBucket",
        "SignatureDoesNotMatch",
        "AuthorizationHeaderMalformed",
        "AccountProblem",
        "401",
        "403",
    }
)
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable", "InternalError"}
)


@functools.cache
def _loader() -> Loader:
    """One botocore data loader per process: it keeps the S3 service model and endpoint rules
    it has read, so every client after the first is created without reading them again.
    """
    return create_loader()


def _session() -> AioSession:
    """A fresh botocore session (its own credential chain) on the shared data loader."""
    session = get_session()
    session.register_component("data_loader", _loader())
    return session


class S3Blobs(BlobStore):
    """Content-addressed blobs in one bucket of an S3-compatible service."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        path_style: bool = True,
        max_attempts: int = 3,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_pool_connections: int = 32,
        delete_batch_size: int = MAX_DELETE_BATCH,
        public_endpoint_url: str | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("bucket is required")
        if not 1 <= delete_batch_size <= MAX_DELETE_BATCH:
            raise ValueError(f"delete_batch_size must be within 1..{MAX_DELETE_BATCH}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.bucket = bucket
        self.prefix = prefix
        self._endpoint_url = endpoint_url or None
        self._public_endpoint_url = public_endpoint_url or None
        self._region = region
        self._access_key_id = access_key_id or None
        self._secret_access_key = secret_access_key or None
        self._delete_batch_size = delete_batch_size
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path" if path_style else "auto"},
            # "standard" retries transient errors (5xx, throttling, connection) with backoff;
            # max_attempts counts the first try, so the total is bounded.
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            max_pool_connections=max_pool_connections,
            # Only the checksums an operation requires; uploads carry their SHA-256 instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._signer: Any = None  # signs presigned URLs for the public endpoint; never connects

    @property
    def where(self) -> str:
        """The bucket and endpoint, for messages."""
        return f"s3://{self.bucket}/{self.prefix} at {self._endpoint_url or 'AWS'}"

    def key(self, sha256: str) -> str:
        """The object key of a blob."""
        return self.prefix + sha256

    # Lifecycle ------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the client and check that the bucket answers with these credentials."""
        if self._client is not None:
            return
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(self._create_client(self._endpoint_url))
            self._signer = self._client
            if self._public_endpoint_url:
                self._signer = await stack.enter_async_context(self._create_client(self._public_endpoint_url))
            self._stack = stack
            try:
                await self._client.head_bucket(Bucket=self.bucket)
            except (BotoCoreError, ClientError) as exc:
                raise self._translate(exc, "open") from exc
        except BaseException:
            self._client = self._signer = self._stack = None
            await stack.aclose()
            raise

    def _create_client(self, endpoint_url: str | None) -> Any:
        """An S3 client context for `endpoint_url` with this store's credentials and config."""
        return _session().create_client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=self._region,
            aws_access_key_id=self._access_key_id,
            aws_secret_access_key=self._secret_access_key,
            config=self._config,
        )

    async def close(self) -> None:
        """Close the client and its connection pool."""
        stack, self._stack, self._client, self._signer = self._stack, None, None, None
        if stack is not None:
            await stack.aclose()

    def _s3(self) -> Any:
        if self._client is None:
            raise RuntimeError("blob store is not open")
        return self._client

    # Blobs ----------------------------------------------------------------------------------
    async def put(self, sha256: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Upload `data` (which must hash to `sha256`); S3 makes a single PUT atomic.

        The request carries the SHA-256 as its checksum (free: it is the key), so the server
        checks the body against it: a body damaged on the way, or one that is not the content
        of `sha256`, is refused (InvalidArgument) without hashing it here a second time.
        """
        require_sha256(sha256)
        try:
            await self._s3().put_object(
                Bucket=self.bucket,
                Key=self.key(sha256),
                Body=data,
                ContentType=content_type,
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "put", sha256) from exc

    async def get(self, sha256: str) -> bytes:
        """The bytes; NotFound (IMAGE_NOT_FOUND) when absent or the name is malformed."""
        if not is_sha256(sha256):
            raise blob_not_found(sha256)
        try:
            response = await self._s3().get_object(Bucket=self.bucket, Key=self.key(sha256))
            async with response["Body"] as body:
                return await body.read()
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc, "get", sha256) from exc

    async def exists(self, sha256: str) -> bool:
        """HEAD the object."""
        if not is_sha256(sha256):
            return False
        try:
            await self._s3().head_object(Bucket=self.bucket, Key=self.key(sha256))
        except (BotoCoreError, ClientError) as exc:
            error = self._translate(exc, "exists", sha256)
            if isinstance(error, NotFound):
                return False
            raise error from exc
        return True

    async def delete(self, shas: Iterable[str]) -> None:
        """Remove blobs with DeleteObjects, at most `delete_batch_size` keys per request."""
        keys = sorted({self.key(sha) for sha in shas if is_sha256(sha)})
        for start in range(0, len(keys), self._delete_batch_size):
            batch = keys[start : start + self._delete_batch_size]
            try:
                response = await self._s3().delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as exc:
                raise self._translate(exc, "delete") from exc
            failed = [error for error in response.get("Errors", ()) if error.get("Code") not in _NOT_FOUND_CODES]
            if failed:
                first = failed[0]
                raise AigenError(
                    f"blob store {self.where}: {len(failed)} of {len(batch)} deletions failed "
                    f"(first: {first.get('Key')}: {first.get('Code')} {first.get('Message', '')})".rstrip()
                )

    async def presigned_url(self, sha256: str, expires_s: int = 3600, content_type: str = "") -> str:
        """A time-limited GET URL for the blob on the public endpoint (no check that it exists).

        With `content_type`, the storage answers with that Content-Type and the gateway's
        cache headers, as GET /images/{id} does.
        """
        require_sha256(sha256)
        params = {"Bucket": self.bucket, "Key": self.key(sha256)}
        if content_type:
            params |= {"ResponseContentType": content_type, "ResponseCacheControl": IMAGE_CACHE_CONTROL}
        if self._signer is None:
            raise RuntimeError("blob store is not open")
        return await self._signer.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires_s))

    # Errors ---------------------------------------------------------------------------------
    def _translate(self, exc: Exception, action: str, sha256: str = "") -> AigenError:
        """The project error for a botocore exception."""
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            detail = f"{code or status} {error.get('Message', '')}".strip()
            missing = code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket")
            if sha256 and action in ("get", "exists") and missing:
                return blob_not_found(sha256)
            if code == "BadDigest":
                return InvalidArgument("sha256", "is not the SHA-256 of the data")
            if code in _CONFIG_CODES or status in (401, 403) or (status == 404 and action in ("open", "delete")):
                return BlobStoreMisconfigured(f"blob store {self.where} refused {action}: {detail}")
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                return BlobStoreUnavailable(f"blob store {self.where} failed {action}: {detail}")
            return AigenError(f"blob store {self.where} refused {action}: {detail}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return BlobStoreMisconfigured(f"blob store {self.where}: {exc}")
        if isinstance(exc, EndpointConnectionError | ConnectionError | HTTPClientError):
            return BlobStoreUnavailable(f"blob store {self.where} unreachable during {action}: {exc}")
        return BlobStoreUnavailable(f"blob store {self.where} failed {action}: {exc}")
