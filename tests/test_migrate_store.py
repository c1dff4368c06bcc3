"""migrate_store: an embedded store copied into real PostgreSQL and SeaweedFS (or blob files)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from s3_harness import S3Server

from aigen.server import migrate_store
from aigen.server.store.blobs import LocalBlobs, blob_path
from aigen.server.store.postgres import PostgresStore
from aigen.server.store.records import (
    AttemptRecord,
    CredentialRecord,
    ImageRecord,
    LayerRecord,
    ProjectRecord,
    SessionConfigRecord,
    SessionRecord,
    TurnRecord,
    UsageRecord,
)
from aigen.server.store.s3_blobs import S3Blobs
from aigen.server.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[1]


def _image(iid: str, sha: str, data: bytes, sid: str | None, kind: str = "image") -> ImageRecord:
    return ImageRecord(
        image_id=iid, sha256=sha, content_type="image/png", width=64, height=32, size_bytes=len(data),
        created_at=1_700_000_100.5, session_id=sid, kind=kind,
    )  # fmt: skip


def _usage(project: str, day: str, credits: int) -> UsageRecord:
    return UsageRecord(project, day, "gemini", "nano-banana", "owner_pays", images=1, credits=credits)


class Source:
    """What the embedded store holds, as written through its API."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.blobs: dict[str, bytes] = {}
        self.session_ids = ["sess_single", "sess_layered", "sess_empty"]
        self.image_ids: list[str] = []

    async def build(self) -> None:
        now = iter(float(1_700_000_000 + n) for n in range(1000))
        store = SqliteStore(self.data_dir, clock=lambda: next(now))
        await store.open()
        try:
            await store.put_project(
                ProjectRecord(
                    "acme", allowed_providers=("gemini", "local"), default_provider="gemini", rate_limit=7,
                    allow_public_clients=True, created_at=1_600_000_000.0,
                )
            )  # fmt: skip
            await store.put_project(ProjectRecord("default", created_at=1_600_000_001.0))
            await store.add_credential(CredentialRecord("key_1", "acme", "api_key", "a" * 64, 1_600_000_002.0))
            await store.add_credential(CredentialRecord("tok_1", "acme", "app_token", "b" * 64, 1.0, 9e9))
            config = SessionConfigRecord("16:9", "2K", "gemini", "nano-banana", (("openai", "gpt-image"),))
            for n, (sid, mode, project) in enumerate(
                zip(self.session_ids, ("single", "layered", "single"), ("default", "acme", "acme"), strict=True)
            ):
                await store.create_session(SessionRecord(sid, project, mode, config, 1_700_000_000.0 + n, 0.0))

            shared = b"\x89PNG shared bytes"  # one blob used by two images
            for turn_no in range(3):
                data = shared if turn_no == 2 else f"\x89PNG single {turn_no}".encode()
                iid = f"img_s{turn_no}"
                sha = await store.write_blob(data)
                self.blobs[sha] = data
                self.image_ids.append(iid)
                attempt = AttemptRecord("gemini", "nano-banana", 1, 0, 1, duration_s=1.25)
                await store.commit_turn(
                    TurnRecord(
                        f"turn_s{turn_no}", "sess_single", "iterate" if turn_no else "generate", "completed",
                        1_700_000_200.0 + turn_no, prompt="a planet", instructions="bluer" if turn_no else "",
                        requested_provider="gemini", served_provider="gemini", served_model="nano-banana",
                        attempts=(attempt,), duration_s=1.5, image_id=iid, credits_used=4,
                        degradations=("size",), aspect_ratio="16:9", image_size="2K",
                        provider_state=b"\x00state" if turn_no == 1 else None,
                    ),
                    [_image(iid, sha, data, "sess_single")],
                    iid,
                    usage=_usage("default", f"2026-01-0{1 + turn_no % 2}", 4),
                )  # fmt: skip
            await store.commit_turn(
                TurnRecord("turn_s3", "sess_single", "iterate", "failed", 1_700_000_300.0, error="no provider")
            )

            layer_images = []
            for z in range(3):
                data = shared if z == 0 else f"layer {z}".encode()
                sha = await store.write_blob(data)
                self.blobs[sha] = data
                layer_images.append(_image(f"img_l{z}", sha, data, "sess_layered", kind="layer"))
                self.image_ids.append(f"img_l{z}")
            layers = [
                LayerRecord(f"lyr_{z}", "sess_layered", f"layer {z}", z, f"img_l{z}", (z, z + 1, 10, 20), 0.25 * z)
                for z in range(3)
            ]
            await store.commit_turn(
                TurnRecord("turn_l0", "sess_layered", "separate", "completed", 1_700_000_400.0),
                layer_images,
                "img_l0",
                layers,
                usage=_usage("acme", "2026-01-03", 2),
            )
            await store.set_layer_locked(
                "sess_layered", "lyr_1", True, TurnRecord("turn_l1", "", "lock", "completed", 1_700_000_500.0)
            )

            data = b"sessionless"
            sha = await store.write_blob(data)
            self.blobs[sha] = data
            await store.insert_image(_image("img_free", sha, data, None), _usage("acme", "2026-01-03", 1))
            self.image_ids.append("img_free")
            # Usage of a project that has no project row (the embedded default before any project existed).
            data = b"orphan usage"
            sha = await store.write_blob(data)
            self.blobs[sha] = data
            await store.insert_image(_image("img_orphan", sha, data, None), _usage("legacy", "2025-12-31", 9))
            self.image_ids.append("img_orphan")

            self.sessions = [await store.get_session(sid) for sid in self.session_ids]
            self.turns = {sid: await store.list_turns(sid) for sid in self.session_ids}
            self.layers = {sid: await store.list_layers(sid) for sid in self.session_ids}
            self.images = [await store.get_image(iid) for iid in self.image_ids]
            self.projects = await store.list_projects()
            self.credentials = [await store.find_credential(h) for h in ("a" * 64, "b" * 64)]
            self.usage = {p: await store.list_usage(p) for p in ("default", "acme", "legacy")}
        finally:
            await store.close()

    async def assert_target_matches(self, store: PostgresStore) -> None:
        """A PostgresStore on the target reads back everything the embedded store held, identically."""
        for session in self.sessions:
            assert await store.get_session(session.session_id) == session
            assert await store.list_turns(session.session_id) == self.turns[session.session_id]
            assert await store.list_layers(session.session_id) == self.layers[session.session_id]
        assert await store.last_completed_turn("sess_single") == self.turns["sess_single"][2]
        for image in self.images:
            assert await store.get_image(image.image_id) == image
            assert await store.read_blob(image.sha256) == self.blobs[image.sha256]
        assert await store.list_projects() == self.projects
        for credential in self.credentials:
            assert await store.find_credential(credential.secret_hash) == credential
        for project, rows in self.usage.items():
            assert await store.list_usage(project) == rows
        page = await store.list_sessions(None, 10, "")
        assert [s.session_id for s in page.sessions] == self.session_ids[::-1]


@pytest.fixture
async def source(tmp_path: Path) -> Source:
    built = Source(tmp_path / "embedded")
    await built.build()
    return built


EXPECTED = {
    "projects": 2, "credentials": 2, "usage": 4, "sessions": 3, "images": 8, "turns": 6, "layers": 3, "blobs": 7,
}  # fmt: skip


async def test_copies_into_postgres_and_file_blobs_then_rerun_skips(source: Source, dsn: str, tmp_path: Path) -> None:
    blob_dir = tmp_path / "target-blobs"
    report = await migrate_store.migrate(source.data_dir, dsn, LocalBlobs(blob_dir))
    assert report.ok, report.summary()
    assert report.source == report.target == EXPECTED
    assert report.copied == EXPECTED
    assert set(report.skipped.values()) == {0}
    for sha, data in source.blobs.items():
        assert hashlib.sha256(blob_path(blob_dir, sha).read_bytes()).hexdigest() == sha
        assert blob_path(blob_dir, sha).read_bytes() == data

    store = PostgresStore(dsn, LocalBlobs(blob_dir))
    await store.open()
    try:
        await source.assert_target_matches(store)
    finally:
        await store.close()

    again = await migrate_store.migrate(source.data_dir, dsn, LocalBlobs(blob_dir))
    assert again.ok, again.summary()
    assert again.source == again.target == EXPECTED
    assert set(again.copied.values()) == {0}
    assert again.skipped == {**EXPECTED, "turns": 0, "layers": 0}  # skipped with their session
    conn = await asyncpg.connect(dsn)
    try:
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in EXPECTED if t != "blobs"}
    finally:
        await conn.close()
    assert counts == {t: n for t, n in EXPECTED.items() if t != "blobs"}


def _run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aigen.server.migrate_store", *args],
        capture_output=True, text=True, timeout=90, cwd=REPO, env=env, check=False,
    )  # fmt: skip


async def test_command_copies_into_postgres_and_seaweedfs(source: Source, dsn: str, s3: S3Server) -> None:
    prefix = f"migrate-{os.getpid()}-{id(source)}/"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIGEN_")},
        "AIGEN_S3_ENDPOINT_URL": s3.endpoint_url,
        "AIGEN_S3_BUCKET": s3.bucket,
        "AIGEN_S3_PREFIX": prefix,
        "AIGEN_S3_REGION": s3.region,
        "AIGEN_S3_ACCESS_KEY_ID": s3.access_key_id,
        "AIGEN_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
    }
    args = ("--from-data-dir", str(source.data_dir), "--to-database-url", dsn, "--to-s3")
    first = _run_cli(*args, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "verified: every record and blob matches" in first.stdout
    assert "blobs                7          7        7        0" in first.stdout

    client = s3.client()
    try:
        for sha, data in source.blobs.items():
            body = client.get_object(Bucket=s3.bucket, Key=prefix + sha)["Body"].read()
            assert body == data
    finally:
        client.close()
    blobs = S3Blobs(
        bucket=s3.bucket, endpoint_url=s3.endpoint_url, prefix=prefix,
        access_key_id=s3.access_key_id, secret_access_key=s3.secret_access_key,
    )  # fmt: skip
    store = PostgresStore(dsn, blobs)
    await store.open()
    try:
        await source.assert_target_matches(store)
    finally:
        await store.close()

    second = _run_cli(*args, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "sessions             3          3        0        3" in second.stdout

    # A blob lost from the target is restored; one corrupted there and a record changed there
    # are reported: exit 1.
    lost, corrupted = list(source.blobs)[:2]
    client = s3.client()
    try:
        client.delete_object(Bucket=s3.bucket, Key=prefix + lost)
        client.put_object(Bucket=s3.bucket, Key=prefix + corrupted, Body=b"not the original")
    finally:
        client.close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE turns SET prompt = 'changed' WHERE turn_id = 'turn_s1'")
    finally:
        await conn.close()
    third = _run_cli(*args, env=env)
    assert third.returncode == 1, third.stdout + third.stderr
    assert f"MISMATCH: blob {corrupted} read back from the target does not hash to its name" in third.stdout
    assert lost not in third.stdout
    assert "blobs                7          6        1        6" in third.stdout
    assert "MISMATCH: turns of session sess_single" in third.stdout


def test_command_refuses_bad_arguments(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGEN_")}
    both = _run_cli(
        "--from-data-dir", str(tmp_path), "--to-database-url", "postgresql://127.0.0.1:1/x",
        "--to-s3", "--to-blobs-dir", str(tmp_path), env=env,
    )  # fmt: skip
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr
    no_bucket = _run_cli("--from-data-dir", str(tmp_path), "--to-database-url", "postgresql://x", "--to-s3", env=env)
    assert no_bucket.returncode == 1
    assert "AIGEN_S3_BUCKET" in no_bucket.stderr
