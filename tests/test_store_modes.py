"""Server tests run on their storage mode's backends: SQLite and blob files under data_dir
("embedded"), or a database and a bucket prefix of their own ("shared").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
import pytest
import store_modes
from providers import ScriptedProvider
from s3_harness import S3Server
from server_harness import running_server

from aigen.server.store.blobs import blob_path
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import image_service_pb2 as image_pb2

pytestmark = pytest.mark.both_stores


def image_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM images").fetchone()[0]


async def test_a_server_keeps_records_and_bytes_on_its_modes_backends(
    tmp_path: Path, store_mode: str, request: pytest.FixtureRequest
) -> None:
    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        image = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x"))
        data = (await h.images.GetImage(image_pb2.GetImageRequest(image_id=image.image_id))).data
        settings = h.settings
    sha = hashlib.sha256(data).hexdigest()
    if store_mode == store_modes.EMBEDDED:
        assert (settings.store, settings.blobs) == ("sqlite", "local")
        assert (tmp_path / "aigen.db").is_file()
        assert blob_path(tmp_path / "blobs", sha).read_bytes() == data
        return
    assert (settings.store, settings.blobs) == ("postgres", "s3")
    assert not (tmp_path / "aigen.db").exists() and not (tmp_path / "blobs").exists()
    assert image_rows(settings.database_url) == 1
    s3: S3Server = request.getfixturevalue("s3")
    client = s3.client()
    try:
        assert client.get_object(Bucket=settings.s3_bucket, Key=settings.s3_prefix + sha)["Body"].read() == data
    finally:
        client.close()


@pytest.mark.no_server
def test_shared_data_dirs_keep_their_database_and_a_reused_one_starts_empty(
    tmp_path: Path, shared_backends: store_modes.SharedBackends
) -> None:
    with shared_backends.scope():
        first = shared_backends.overrides(tmp_path / "a")
        assert shared_backends.overrides(tmp_path / "a") == first
        other = shared_backends.overrides(tmp_path / "b")
        assert (other["database_url"], other["s3_prefix"]) != (first["database_url"], first["s3_prefix"])
        with psycopg.connect(first["database_url"]) as conn:
            conn.execute("INSERT INTO cooldowns (provider, model, until_epoch) VALUES ('a', 'b', 1)")
    with shared_backends.scope():
        again = shared_backends.overrides(tmp_path / "a")
        assert again["s3_prefix"] not in (first["s3_prefix"], other["s3_prefix"])
        with psycopg.connect(again["database_url"]) as conn:
            assert conn.execute("SELECT count(*) FROM cooldowns").fetchone()[0] == 0
