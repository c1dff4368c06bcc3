"""One contract for every BlobStore: local files and S3 (SeaweedFS on loopback)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from botocore.exceptions import ClientError
from s3_harness import S3Server, free_port_pairs, seaweedfs

from aigen.server.errors import InvalidArgument, NotFound, Reason
from aigen.server.store.blobs import (
    BlobStore,
    BlobStoreMisconfigured,
    BlobStoreUnavailable,
    LocalBlobs,
    _written_at,
    blob_path,
    stale_files,
)
from aigen.server.store.s3_blobs import S3Blobs

BIG = 8 * 1024 * 1024 + 123


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*") if p.is_file()]


def unique(label: str) -> bytes:
    """Bytes no other test stores (the S3 bucket is shared by the whole session)."""
    return f"{label}:{time.time_ns()}:{os.urandom(8).hex()}".encode()


def s3_store(server: S3Server, **kwargs) -> S3Blobs:
    options = {
        "bucket": server.bucket,
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "access_key_id": server.access_key_id,
        "secret_access_key": server.secret_access_key,
        **kwargs,
    }
    return S3Blobs(**options)


@pytest.fixture(params=["local", "s3"])
async def store(request, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        blobs: BlobStore = LocalBlobs(tmp_path / "blobs")
    else:
        blobs = s3_store(request.getfixturevalue("s3"), prefix=f"t-{os.urandom(4).hex()}/")
    await blobs.open()
    try:
        yield blobs
    finally:
        await blobs.close()


# The contract ------------------------------------------------------------------------------
async def test_round_trip_small_and_large(store: BlobStore) -> None:
    small, large = unique("small"), unique("large") + os.urandom(BIG)
    for data in (small, large):
        assert not await store.exists(sha(data))
        await store.put(sha(data), data)
        assert await store.exists(sha(data))
        assert await store.get(sha(data)) == data


async def test_empty_blob(store: BlobStore) -> None:
    await store.put(sha(b""), b"")
    assert await store.exists(sha(b""))
    assert await store.get(sha(b"")) == b""


async def test_put_is_idempotent(store: BlobStore) -> None:
    data = unique("again")
    await store.put(sha(data), data)
    await store.put(sha(data), data)
    await asyncio.gather(*(store.put(sha(data), data) for _ in range(5)))
    assert await store.get(sha(data)) == data


async def test_get_missing_is_image_not_found(store: BlobStore) -> None:
    missing = sha(unique("never stored"))
    with pytest.raises(NotFound) as caught:
        await store.get(missing)
    assert caught.value.reason == Reason.ERROR_REASON_IMAGE_NOT_FOUND
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert not await store.exists(missing)


@pytest.mark.parametrize(
    "name",
    [
        "../../../etc/passwd",
        "ab/../../" + "a" * 55,
        "A" * 64,
        "a" * 63,
        "a" * 65,
        "g" * 64,
        "",
        "/" + "a" * 63,
        "a" * 64 + "\n",
    ],
)
async def test_malformed_names_are_refused(store: BlobStore, name: str) -> None:
    with pytest.raises(NotFound) as caught:
        await store.get(name)
    assert caught.value.reason == Reason.ERROR_REASON_IMAGE_NOT_FOUND
    assert not await store.exists(name)
    with pytest.raises(InvalidArgument):
        await store.put(name, b"data")
    await store.delete([name])  # ignored, never touches anything


async def test_put_refuses_data_of_another_hash(store: BlobStore) -> None:
    data = unique("claimed")
    other = sha(unique("actual"))
    with pytest.raises(InvalidArgument):
        await store.put(other, data)
    assert not await store.exists(other)


async def test_delete_removes_and_ignores_absent(store: BlobStore) -> None:
    kept, gone = unique("kept"), unique("gone")
    for data in (kept, gone):
        await store.put(sha(data), data)
    await store.delete([sha(gone), sha(unique("absent")), sha(gone)])
    assert not await store.exists(sha(gone))
    with pytest.raises(NotFound):
        await store.get(sha(gone))
    assert await store.get(sha(kept)) == kept
    await store.delete([])
    await store.delete(iter([sha(gone)]))  # already gone: no error


# Local files -------------------------------------------------------------------------------
async def test_local_layout_matches_the_embedded_store(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path)
    data = unique("layout")
    digest = sha(data)
    await blobs.put(digest, data)
    path = tmp_path / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == data
    assert blob_path(tmp_path, digest) == path == blobs.path(digest)
    assert [p.name for p in path.parent.iterdir()] == [digest]  # no temp file left behind


async def test_local_malformed_name_never_builds_a_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        LocalBlobs(tmp_path).path("../" + "a" * 61)


async def test_local_replaces_a_truncated_copy(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path)
    data = unique("whole") * 100
    path = blob_path(tmp_path, sha(data))
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:10])  # e.g. left by a crash of a writer without atomic rename
    await blobs.put(sha(data), data)
    assert await blobs.get(sha(data)) == data


async def test_local_concurrent_reader_never_sees_a_partial_blob(tmp_path: Path) -> None:
    """Readers polling while big blobs are written see NotFound or the whole blob, nothing else."""
    blobs = LocalBlobs(tmp_path)
    payloads = [os.urandom(BIG) for _ in range(3)]
    seen: list[int] = []
    writing = True

    async def reader(digest: str, size: int) -> None:
        while True:
            written = not writing  # sampled before the read: a read begun earlier may miss the file
            try:
                got = await blobs.get(digest)
            except NotFound:
                if written:
                    raise
                await asyncio.sleep(0)
                continue
            assert len(got) == size
            seen.append(len(got))
            return

    readers = [asyncio.create_task(reader(sha(data), len(data))) for data in payloads]
    await asyncio.sleep(0)
    await asyncio.gather(*(blobs.put(sha(data), data) for data in payloads))
    writing = False
    await asyncio.wait_for(asyncio.gather(*readers), 30)
    assert seen == [BIG] * 3
    assert await asyncio.to_thread(temp_files, tmp_path) == []


async def test_local_reader_of_a_rewritten_truncated_blob_sees_old_or_new(tmp_path: Path) -> None:
    """Replacing an existing (short) file goes through rename: a reader gets one of the two."""
    blobs = LocalBlobs(tmp_path)
    data = os.urandom(BIG)
    digest = sha(data)
    path = blob_path(tmp_path, digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:1000])
    sizes: set[int] = set()
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            sizes.add(len(await blobs.get(digest)))
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(reader()) for _ in range(3)]
    await asyncio.sleep(0.05)  # readers are polling the old copy before the write starts
    await blobs.put(digest, data)
    done.set()
    await asyncio.gather(*tasks)
    sizes.add(len(await blobs.get(digest)))
    assert sizes <= {1000, BIG}
    assert BIG in sizes


# S3 ----------------------------------------------------------------------------------------
async def test_s3_path_style_keys_and_content_type(s3: S3Server) -> None:
    blobs = s3_store(s3, prefix="images/")
    await blobs.open()
    try:
        data = unique("keyed")
        await blobs.put(sha(data), data)
        png = unique("png")
        await blobs.put(sha(png), png, content_type="image/png")
        url = await blobs.presigned_url(sha(data), 60)
        assert url.startswith(f"{s3.endpoint_url}/{s3.bucket}/images/{sha(data)}?")
    finally:
        await blobs.close()
    client = s3.client()
    try:
        head = client.head_object(Bucket=s3.bucket, Key=f"images/{sha(data)}")
        assert head["ContentLength"] == len(data)
        assert head["ContentType"] == "application/octet-stream"
        assert client.head_object(Bucket=s3.bucket, Key=f"images/{sha(png)}")["ContentType"] == "image/png"
        body = client.get_object(Bucket=s3.bucket, Key=f"images/{sha(data)}")["Body"].read()
        assert body == data
    finally:
        client.close()


async def test_s3_presigned_url_serves_the_bytes(s3: S3Server) -> None:
    blobs = s3_store(s3)
    await blobs.open()
    try:
        data = unique("shared link")
        await blobs.put(sha(data), data)
        url = await blobs.presigned_url(sha(data), 60)
        async with httpx.AsyncClient() as http:
            ok = await http.get(url)
            tampered = await http.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
        assert ok.status_code == 200 and ok.content == data
        assert tampered.status_code == 403
    finally:
        await blobs.close()


async def test_s3_delete_batches(s3: S3Server) -> None:
    blobs = s3_store(s3, prefix=f"batch-{os.urandom(4).hex()}/", delete_batch_size=4)
    await blobs.open()
    try:
        datas = [unique(f"batch {i}") for i in range(11)]
        await asyncio.gather(*(blobs.put(sha(d), d) for d in datas))
        keep = datas.pop()
        await blobs.delete([sha(d) for d in datas] + [sha(unique("absent"))])
        client = s3.client()
        try:
            listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=blobs.prefix)
        finally:
            client.close()
        assert [item["Key"] for item in listed.get("Contents", [])] == [blobs.key(sha(keep))]
    finally:
        await blobs.close()


async def test_s3_delete_more_than_one_request_allows(s3: S3Server) -> None:
    """1,001 keys need two DeleteObjects calls (the API takes at most 1,000)."""
    blobs = s3_store(s3, prefix=f"many-{os.urandom(4).hex()}/")
    await blobs.open()
    try:
        datas = [unique(f"many {i}") for i in range(1001)]
        semaphore = asyncio.Semaphore(32)

        async def put(data: bytes) -> None:
            async with semaphore:
                await blobs.put(sha(data), data)

        await asyncio.gather(*(put(d) for d in datas))
        assert await blobs.exists(sha(datas[-1]))
        await blobs.delete(sha(d) for d in datas)
        client = s3.client()
        try:
            listed = client.list_objects_v2(Bucket=s3.bucket, Prefix=blobs.prefix)
        finally:
            client.close()
        assert listed.get("KeyCount", 0) == 0
    finally:
        await blobs.close()


async def test_s3_rejects_a_body_that_does_not_match_its_checksum(s3: S3Server) -> None:
    """Uploads carry their SHA-256 as checksum and the server verifies it: a body damaged on the
    way is refused (sent here with the raw client, past put's own hash check)."""
    blobs = s3_store(s3)
    await blobs.open()
    digest = sha(unique("claimed"))
    try:
        with pytest.raises(ClientError) as caught:
            await blobs._s3().put_object(
                Bucket=blobs.bucket,
                Key=blobs.key(digest),
                Body=b"something else",
                ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode(),
            )
        assert caught.value.response["Error"]["Code"] == "BadDigest"
        assert not await blobs.exists(digest)
    finally:
        await blobs.close()


async def test_s3_wrong_secret_is_a_clear_configuration_error(s3: S3Server) -> None:
    blobs = s3_store(s3, secret_access_key="not-the-secret")
    with pytest.raises(BlobStoreMisconfigured) as caught:
        await blobs.open()
    assert caught.value.code == grpc.StatusCode.INTERNAL
    assert s3.bucket in caught.value.message and "403" in caught.value.message
    await blobs.close()


async def test_s3_unknown_access_key_is_a_configuration_error(s3: S3Server) -> None:
    blobs = s3_store(s3, access_key_id="nobody", secret_access_key="nothing")
    with pytest.raises(BlobStoreMisconfigured):
        await blobs.open()


async def test_s3_missing_bucket_is_a_configuration_error(s3: S3Server) -> None:
    blobs = s3_store(s3)
    blobs.bucket = "no-such-bucket"
    with pytest.raises(BlobStoreMisconfigured) as caught:
        await blobs.open()
    assert "no-such-bucket" in caught.value.message


async def test_s3_unreachable_endpoint_is_unavailable_after_bounded_retries(s3: S3Server) -> None:
    (port,) = free_port_pairs(1)
    blobs = S3Blobs(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key_id="k",
        secret_access_key="s",
        max_attempts=2,
        connect_timeout_s=1,
    )
    started = time.monotonic()
    with pytest.raises(BlobStoreUnavailable) as caught:
        await blobs.open()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert f"127.0.0.1:{port}" in caught.value.message
    assert time.monotonic() - started < 15


async def test_s3_going_away_is_unavailable() -> None:
    """A store opened against a server that then stops reports UNAVAILABLE, not a vendor error."""
    with seaweedfs(bucket="short-lived") as server:
        blobs = s3_store(server, max_attempts=2, connect_timeout_s=1, read_timeout_s=5)
        await blobs.open()
        data = unique("before")
        await blobs.put(sha(data), data)
        assert await blobs.get(sha(data)) == data
    try:
        with pytest.raises(BlobStoreUnavailable):
            await blobs.get(sha(data))
        with pytest.raises(BlobStoreUnavailable):
            await blobs.put(sha(data), data)
    finally:
        await blobs.close()


async def test_s3_reuses_one_client_between_open_and_close(s3: S3Server) -> None:
    blobs = s3_store(s3)
    with pytest.raises(RuntimeError):
        await blobs.get(sha(b"x"))  # not open yet
    await blobs.open()
    client = blobs._s3()
    data = unique("reuse")
    await blobs.put(sha(data), data)
    await blobs.get(sha(data))
    await blobs.open()  # idempotent
    assert blobs._s3() is client
    await blobs.close()
    with pytest.raises(RuntimeError):
        await blobs.get(sha(data))
    await blobs.close()  # idempotent


def test_s3_settings_validation() -> None:
    with pytest.raises(ValueError):
        S3Blobs(bucket="")
    with pytest.raises(ValueError):
        S3Blobs(bucket="b", delete_batch_size=1001)
    with pytest.raises(ValueError):
        S3Blobs(bucket="b", max_attempts=0)


def test_stale_files_finds_old_blobs_and_temps_and_survives_a_file_deleted_meanwhile(tmp_path: Path) -> None:
    sha = hashlib.sha256(b"old").hexdigest()
    path = blob_path(tmp_path, sha)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"old")
    temp = path.parent / ".tmp-x"
    temp.write_bytes(b"half")
    young = blob_path(tmp_path, sha[:4] + "0" * 60)
    young.write_bytes(b"young")
    old = time.time() - 3600
    for each in (path, temp):
        os.utime(each, (old, old))
    assert stale_files(tmp_path, time.time() - 60) == ([sha], [temp])
    with os.scandir(path.parent) as entries:
        listed = list(entries)
    path.unlink()  # deleted between the listing and the stat (a collection running meanwhile)
    assert [_written_at(entry) for entry in listed if entry.name == sha] == [math.inf]
