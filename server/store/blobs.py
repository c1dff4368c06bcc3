"""Where image bytes live: content-addressed blobs behind one small interface.

The embedded store keeps blobs as files under its data directory; the shared mode keeps them
in S3-compatible object storage. Keys are the SHA-256 hex of the bytes, so writes are
idempotent and identical images are stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import pathlib
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable

import grpc

from aigen.server.errors import AigenError, InvalidArgument, NotFound, Reason

# A blob written but not yet referenced by an image row is kept through garbage
# collection for this long, so a commit that follows its write never loses it.
BLOB_PIN_S = 900.0
# How images are cached wherever they are served: ids are unguessable, content never changes.
IMAGE_CACHE_CONTROL = "public, max-age=31536000, immutable"
SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX2 = re.compile(r"[0-9a-f]{2}")


class BlobStore(ABC):
    """Content-addressed bytes."""

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect / create what is missing."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abstractmethod
    async def put(self, sha256: str, data: bytes) -> None:
        """Store `data` under its hash; atomic (readers never see a partial blob), idempotent."""

    @abstractmethod
    async def get(self, sha256: str) -> bytes:
        """The bytes; aigen.server.errors.NotFound (IMAGE_NOT_FOUND) when absent."""

    @abstractmethod
    async def delete(self, shas: Iterable[str]) -> None:
        """Remove blobs; absent ones are ignored."""

    @abstractmethod
    async def exists(self, sha256: str) -> bool:
        """True when the blob is stored."""

    async def presigned_url(self, sha256: str, expires_s: int, content_type: str = "") -> str | None:
        """A time-limited URL that serves the blob without the gateway; None when the backend has none."""
        return None


class BlobStoreUnavailable(AigenError):
    """The blob backend cannot be reached or failed transiently (connection, timeout, 5xx, throttling).

    UNAVAILABLE, so callers may retry; the message names the backend and the cause.
    """

    code = grpc.StatusCode.UNAVAILABLE
    reason = Reason.ERROR_REASON_INTERNAL


class BlobStoreMisconfigured(AigenError):
    """The blob backend refused the gateway itself: wrong credentials, no access, no such bucket.

    INTERNAL: the caller did nothing wrong and retrying will not help until the settings change.
    """

    code = grpc.StatusCode.INTERNAL
    reason = Reason.ERROR_REASON_INTERNAL


def is_sha256(value: object) -> bool:
    """True for exactly 64 lowercase hex digits (the only names that ever reach a path or key)."""
    return isinstance(value, str) and SHA256.fullmatch(value) is not None


def blob_not_found(sha256: str) -> NotFound:
    """The error of a blob that is absent (or could never exist: a malformed name)."""
    shown = sha256 if is_sha256(sha256) else repr(sha256)[:80]
    return NotFound(f"blob {shown} not found", reason=Reason.ERROR_REASON_IMAGE_NOT_FOUND)


def require_sha256(sha256: str, data: bytes | None = None) -> None:
    """InvalidArgument unless `sha256` is well formed and, when given, the hash of `data`."""
    if not is_sha256(sha256):
        raise InvalidArgument("sha256", "must be 64 lowercase hex digits")
    if data is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidArgument("sha256", "is not the SHA-256 of the data")


# Files ------------------------------------------------------------------------------------
def blob_path(root: pathlib.Path, sha256: str) -> pathlib.Path:
    """`root/ab/cd/<sha256>`; callers check the name with is_sha256 first."""
    return root / sha256[:2] / sha256[2:4] / sha256


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Write `path` via a synced temp file and rename; keep an existing complete copy."""
    try:
        if path.stat().st_size == len(data):
            return
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def stale_files(root: pathlib.Path, written_before: float) -> tuple[list[str], list[pathlib.Path]]:
    """Blobs (by sha256) and unfinished temp files under `root` last written before `written_before`.

    Only the `root/ab/cd/` layout is walked; anything else there is left alone.
    """
    shas: list[str] = []
    temps: list[pathlib.Path] = []
    for first in _subdirs(root):
        for second in _subdirs(first):
            with os.scandir(second) as entries:
                for entry in entries:
                    if not entry.is_file(follow_symlinks=False) or _written_at(entry) >= written_before:
                        continue
                    if entry.name.startswith(".tmp-"):
                        temps.append(pathlib.Path(entry.path))
                    elif SHA256.fullmatch(entry.name) and entry.name.startswith(first.name + second.name):
                        shas.append(entry.name)
    return shas, temps


def _written_at(entry: os.DirEntry) -> float:
    """The file's modification time; infinitely recent once it is gone (deleted meanwhile)."""
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return math.inf


def _subdirs(path: pathlib.Path) -> list[pathlib.Path]:
    """The two-hex-digit directories of one level of the blob layout."""
    try:
        with os.scandir(path) as entries:
            return [
                pathlib.Path(entry.path)
                for entry in entries
                if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False) and _HEX2.fullmatch(entry.name)
            ]
    except FileNotFoundError:
        return []


def unlink_all(paths: Iterable[pathlib.Path]) -> None:
    """Remove files; absent ones are ignored."""
    for path in paths:
        path.unlink(missing_ok=True)


class LocalBlobs(BlobStore):
    """Blobs as files under `root` (`root/ab/cd/<sha256>`), the layout of the embedded store.

    Writes go to a temp file in the target directory, are fsynced, renamed over the final name
    and the directory is fsynced: a reader sees no file or the whole blob, never a prefix.
    All file I/O runs in worker threads.
    """

    def __init__(self, root: pathlib.Path) -> None:
        self._root = pathlib.Path(root)

    @property
    def root(self) -> pathlib.Path:
        """The directory holding the blobs."""
        return self._root

    def path(self, sha256: str) -> pathlib.Path:
        """The file of a blob (InvalidArgument for a malformed name)."""
        require_sha256(sha256)
        return blob_path(self._root, sha256)

    async def open(self) -> None:
        """Create the root directory."""
        await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)

    async def put(self, sha256: str, data: bytes) -> None:
        """Store `data` (which must hash to `sha256`) atomically; a complete copy is kept."""
        await asyncio.to_thread(require_sha256, sha256, data)
        await asyncio.to_thread(write_atomic, blob_path(self._root, sha256), data)

    async def get(self, sha256: str) -> bytes:
        """The bytes; NotFound (IMAGE_NOT_FOUND) when absent or the name is malformed."""
        if not is_sha256(sha256):
            raise blob_not_found(sha256)
        try:
            return await asyncio.to_thread(blob_path(self._root, sha256).read_bytes)
        except FileNotFoundError:
            raise blob_not_found(sha256) from None

    async def delete(self, shas: Iterable[str]) -> None:
        """Remove blobs; absent and malformed names are ignored."""
        paths = [blob_path(self._root, sha) for sha in shas if is_sha256(sha)]
        if paths:
            await asyncio.to_thread(unlink_all, paths)

    async def exists(self, sha256: str) -> bool:
        """True when the blob's file exists."""
        if not is_sha256(sha256):
            return False
        return await asyncio.to_thread(blob_path(self._root, sha256).is_file)
