"""Several replicas behind one Envoy, sharing a real PostgreSQL database and a real S3 bucket.

Three in-process servers (each with its own scripted provider, so every replica's calls are
counted apart) use one database and one SeaweedFS bucket; Envoy balances over their three
ports. A fourth replica runs as its own process, so that it can die abruptly (SIGKILL) in the
middle of a generation, as a crashed machine would.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from envoy_harness import Envoy, free_port, start_envoy
from postgres_harness import PostgresServer
from providers import ScriptedProvider, Succeed
from pydantic import ValidationError
from s3_harness import S3Server
from server_harness import make_settings
from store_modes import shared_storage

from aigen.server.app import RunningServer, start_server
from aigen.server.config import Settings
from aigen.server.envoy_config import options_from_settings, write_config
from aigen.server.providers.base import ProviderRegistry
from aigen.server.serve import StartupError, check_replicas, replica_ports
from aigen.server.store.blobs import LocalBlobs
from aigen.server.store.factory import build_blobs, build_store
from aigen.server.store.postgres import PostgresStore
from aigen.server.store.s3_blobs import S3Blobs
from aigen.server.store.sqlite import SqliteStore
from aigen.v1 import (
    generation_service_pb2,
    generation_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
)

pytestmark = pytest.mark.timeout(120)
TESTS_DIR = Path(__file__).resolve().parent
REPLICAS = 3


def shared_settings(dsn: str, s3: S3Server, **overrides) -> dict:
    """Overrides of the test settings that put a replica on the shared database and bucket."""
    return {**shared_storage(dsn, s3, "replicas/"), **overrides}


@dataclass
class Cluster:
    replicas: list[RunningServer]
    providers: list[ScriptedProvider]
    envoy: Envoy
    dsn: str
    s3: S3Server
    workdir: Path

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.envoy.base_url, timeout=30.0)

    def calls(self) -> list[int]:
        return [len(provider.calls) for provider in self.providers]


@pytest.fixture(scope="module")
async def cluster(postgres: PostgresServer, s3: S3Server, tmp_path_factory) -> AsyncIterator[Cluster]:
    dsn = await postgres.create_database()
    workdir = tmp_path_factory.mktemp("replicas")
    http_port = free_port()
    providers = [ScriptedProvider("alpha") for _ in range(REPLICAS)]
    replicas: list[RunningServer] = []
    try:
        for index, provider in enumerate(providers):
            registry = ProviderRegistry()
            registry.add(provider)
            overrides = shared_settings(dsn, s3, http_port=http_port, public_url=f"http://127.0.0.1:{http_port}")
            replicas.append(await start_server(make_settings(workdir / f"replica-{index}", **overrides), registry))
        settings = replicas[0].settings.model_copy(update={"admin_port": 0})
        options = options_from_settings(settings, grpc_ports=[replica.port for replica in replicas])
        envoy = await start_envoy(write_config(options, workdir / "envoy.yaml"), workdir, http_port)
        try:
            yield Cluster(replicas, providers, envoy, dsn, s3, workdir)
        finally:
            await envoy.stop()
    finally:
        for replica in replicas:
            await replica.stop(0)
        await postgres.drop_database(dsn)


def use_script(cluster: Cluster, *steps) -> None:
    for provider in cluster.providers:
        provider.script[:] = list(steps)


async def create_session(client: httpx.AsyncClient) -> str:
    reply = await client.post("/session", json={"project": "default", "mode": "single"})
    assert reply.status_code == 200, reply.text
    return reply.json()["sessionId"]


def channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target)


async def session_views(target: str, session_id: str) -> tuple[bytes, bytes]:
    """GetSession and GetHistory from `target`, serialized deterministically."""
    async with channel(target) as ch:
        session = await session_service_pb2_grpc.SessionServiceStub(ch).GetSession(
            session_service_pb2.GetSessionRequest(session_id=session_id), timeout=10
        )
        history = await generation_service_pb2_grpc.GenerationServiceStub(ch).GetHistory(
            generation_service_pb2.GetHistoryRequest(session_id=session_id), timeout=10
        )
    return session.SerializeToString(deterministic=True), history.SerializeToString(deterministic=True)


# Backends chosen by settings ------------------------------------------------------------------
def test_settings_default_to_the_embedded_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert (settings.store, settings.blobs, settings.replicas) == ("sqlite", "local", 1)
    store = build_store(settings)
    assert isinstance(store, SqliteStore)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIGEN_STORE", "postgres")
    monkeypatch.setenv("AIGEN_DATABASE_URL", "postgresql://aigen@127.0.0.1:5432/aigen")
    monkeypatch.setenv("AIGEN_BLOBS", "s3")
    monkeypatch.setenv("AIGEN_S3_BUCKET", "images")
    monkeypatch.setenv("AIGEN_REPLICAS", "3")
    settings = Settings(data_dir=tmp_path)
    assert (settings.store, settings.blobs, settings.replicas) == ("postgres", "s3", 3)
    assert settings.database_url == "postgresql://aigen@127.0.0.1:5432/aigen"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"store": "postgres"}, "AIGEN_STORE=postgres needs AIGEN_DATABASE_URL"),
        ({"store": "postgres", "database_url": "postgresql://a@127.0.0.1/b", "blobs": "s3"}, "needs AIGEN_S3_BUCKET"),
        ({"blobs": "s3", "s3_bucket": "images"}, "AIGEN_BLOBS=s3 needs AIGEN_STORE=postgres"),
        ({"store": "mysql"}, "store"),
        ({"blobs": "gcs"}, "blobs"),
        ({"replicas": 0}, "replicas"),
    ],
)
def test_settings_validation(tmp_path: Path, values: dict, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path, **values)
    assert message in str(caught.value)


def test_build_store_postgres_with_local_or_s3_blobs(tmp_path: Path) -> None:
    dsn = "postgresql://aigen@127.0.0.1:5432/aigen"
    local = Settings(data_dir=tmp_path, store="postgres", database_url=dsn)
    store = build_store(local)
    assert isinstance(store, PostgresStore)
    assert store._dsn == dsn
    assert isinstance(store._blobs, LocalBlobs) and store._blobs.root == tmp_path / "blobs"

    remote = local.model_copy(
        update={"blobs": "s3", "s3_bucket": "images", "s3_prefix": "p/", "s3_endpoint_url": "http://127.0.0.1:9"}
    )
    blobs = build_blobs(remote)
    assert isinstance(blobs, S3Blobs)
    assert (blobs.bucket, blobs.prefix) == ("images", "p/")
    assert blobs.where == "s3://images/p/ at http://127.0.0.1:9"
    assert isinstance(build_store(remote)._blobs, S3Blobs)


async def test_build_store_opens_on_the_real_backends(postgres: PostgresServer, s3: S3Server, tmp_path: Path) -> None:
    dsn = await postgres.create_database()
    try:
        store = build_store(make_settings(tmp_path, **shared_settings(dsn, s3, s3_prefix="factory/")))
        await store.open()
        try:
            sha = await store.write_blob(b"factory bytes")
            assert await store.read_blob(sha) == b"factory bytes"
            client = s3.client()
            try:
                assert client.get_object(Bucket=s3.bucket, Key=f"factory/{sha}")["Body"].read() == b"factory bytes"
            finally:
                client.close()
        finally:
            await store.close()
    finally:
        await postgres.drop_database(dsn)


def test_replicas_need_the_shared_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, replicas=3, grpc_port=20000)
    with pytest.raises(StartupError, match="AIGEN_REPLICAS=3 needs AIGEN_STORE=postgres"):
        check_replicas(settings)
    shared = settings.model_copy(update={"store": "postgres", "database_url": "postgresql://a@127.0.0.1/b"})
    check_replicas(shared)
    assert replica_ports(shared) == [20000, 20001, 20002]
    check_replicas(Settings(data_dir=tmp_path))


# Replicas behind Envoy -----------------------------------------------------------------------
async def test_one_session_spreads_over_replicas_with_one_view(cluster: Cluster) -> None:
    use_script(cluster, Succeed())
    before = cluster.calls()
    async with cluster.http() as client:
        session_id = await create_session(client)
        reply = await client.post(f"/session/{session_id}/generate", json={"prompt": "a red lighthouse"})
        assert reply.status_code == 200, reply.text
        for step in range(8):
            reply = await client.post(f"/session/{session_id}/iterate", json={"instructions": f"step {step}"})
            assert reply.status_code == 200, reply.text
            assert (await client.get(f"/session/{session_id}")).status_code == 200
    served = [after - earlier for after, earlier in zip(cluster.calls(), before, strict=True)]
    assert sum(served) == 9
    assert all(count > 0 for count in served), served

    views = {await session_views(f"127.0.0.1:{replica.port}", session_id) for replica in cluster.replicas}
    views |= {await session_views(cluster.envoy.grpc_target, session_id) for _ in range(REPLICAS)}
    assert len(views) == 1
    session_bytes, history_bytes = views.pop()
    history = generation_service_pb2.GetHistoryResponse.FromString(history_bytes)
    assert len(history.turns) == 9
    assert session_service_pb2.Session.FromString(session_bytes).turn_count == 9


async def test_concurrent_iterates_on_one_session_run_once(cluster: Cluster) -> None:
    use_script(cluster, Succeed(delay=1.0))
    async with cluster.http() as client:
        session_id = await create_session(client)
        use_script(cluster, Succeed())
        assert (await client.post(f"/session/{session_id}/generate", json={"prompt": "a boat"})).status_code == 200
        use_script(cluster, Succeed(delay=1.0))
        before = cluster.calls()
        replies = await asyncio.gather(
            *(client.post(f"/session/{session_id}/iterate", json={"instructions": f"try {n}"}) for n in range(2))
        )
        assert sorted(reply.status_code for reply in replies) == [200, 409], [r.text for r in replies]
        busy = next(reply for reply in replies if reply.status_code == 409).json()
        assert busy["code"] == grpc.StatusCode.ABORTED.value[0], busy
        assert sum(cluster.calls()) - sum(before) == 1
        history = (await client.get(f"/session/{session_id}/history")).json()
        assert len(history["turns"]) == 2
    use_script(cluster, Succeed())


async def test_images_are_served_from_s3_by_any_replica(cluster: Cluster) -> None:
    use_script(cluster, Succeed())
    async with cluster.http() as client:
        session_id = await create_session(client)
        reply = await client.post(
            f"/session/{session_id}/generate", json={"prompt": "a green field", "omitImageData": True}
        )
        assert reply.status_code == 200, reply.text
        result = reply.json()
        assert not result.get("data")
        assert result["url"].startswith(cluster.envoy.base_url + "/images/")
        fetched = {(await client.get(result["url"])).content for _ in range(REPLICAS + 1)}
    assert len(fetched) == 1
    data = fetched.pop()
    assert data.startswith(b"\x89PNG")
    sha = hashlib.sha256(data).hexdigest()
    s3_client = cluster.s3.client()
    try:
        assert s3_client.get_object(Bucket=cluster.s3.bucket, Key=f"replicas/{sha}")["Body"].read() == data
    finally:
        s3_client.close()
    for replica in cluster.replicas:
        async with channel(f"127.0.0.1:{replica.port}") as ch:
            body = await image_service_pb2_grpc.ImageServiceStub(ch).GetImage(
                image_service_pb2.GetImageRequest(image_id=result["imageId"]), timeout=10
            )
        assert body.data == data


# A replica that dies mid-generation -----------------------------------------------------------
REPLICA_PROCESS = """
import asyncio, json, sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
from providers import Hang, ScriptedProvider
from server_harness import make_settings
from aigen.server.app import start_server
from aigen.server.providers.base import ProviderRegistry


async def main():
    overrides = json.loads(sys.argv[2])
    registry = ProviderRegistry()
    registry.add(ScriptedProvider("alpha", script=[Hang()]))
    overrides["lease_margin_s"] = float(sys.argv[3])
    server = await start_server(make_settings(Path(overrides.pop("data_dir")), **overrides), registry)
    print(server.port, flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
"""


async def test_a_replica_killed_mid_generation_leaves_the_session_releasable(cluster: Cluster) -> None:
    use_script(cluster, Succeed())
    timeout_s, margin_s = 4.0, 1.0
    overrides = shared_settings(
        cluster.dsn, cluster.s3, data_dir=str(cluster.workdir / "doomed"), generation_timeout_s=timeout_s
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        REPLICA_PROCESS,
        str(TESTS_DIR),
        json.dumps(overrides),
        str(margin_s),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        port = int(line)
        async with cluster.http() as client:
            session_id = await create_session(client)
            assert (await client.post(f"/session/{session_id}/generate", json={"prompt": "a kite"})).status_code == 200
            async with channel(f"127.0.0.1:{port}") as ch:
                sent = time.monotonic()  # the lease starts after this
                doomed = asyncio.ensure_future(
                    generation_service_pb2_grpc.GenerationServiceStub(ch).Iterate(
                        generation_service_pb2.IterateRequest(session_id=session_id, instructions="never finishes")
                    )
                )
                async with asyncio.timeout(10):
                    while True:
                        if (await client.get(f"/session/{session_id}")).json()["status"] == "generating":
                            break
                        await asyncio.sleep(0.05)
                started = time.monotonic()
                process.send_signal(signal.SIGKILL)
                await process.wait()
                with pytest.raises(grpc.aio.AioRpcError) as died:
                    await doomed
                assert died.value.code() == grpc.StatusCode.UNAVAILABLE

            # Nobody released the lease: the session stays busy until it expires...
            busy = await client.post(f"/session/{session_id}/iterate", json={"instructions": "too early"})
            assert busy.status_code == 409, busy.text
            assert time.monotonic() - started < timeout_s
            # ...then another replica takes it and generates.
            async with asyncio.timeout(timeout_s + margin_s + 10):
                while True:
                    reply = await client.post(f"/session/{session_id}/iterate", json={"instructions": "after"})
                    if reply.status_code != 409:
                        break
                    await asyncio.sleep(0.2)
            assert reply.status_code == 200, reply.text
            assert time.monotonic() - sent >= timeout_s + margin_s - 1.0
            session = (await client.get(f"/session/{session_id}")).json()
            assert session["status"] == "ready"
            turns = (await client.get(f"/session/{session_id}/history")).json()["turns"]
            # The killed generation is in the history as interrupted, between the two that ran.
            assert [(t["kind"], t["status"]) for t in turns] == [
                ("KIND_GENERATE", "STATUS_COMPLETED"),
                ("KIND_ITERATE", "STATUS_INTERRUPTED"),
                ("KIND_ITERATE", "STATUS_COMPLETED"),
            ]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# `python -m aigen.server.serve` with several replicas -----------------------------------------
async def run_supervisor(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aigen.server.serve",
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def read_until(process: asyncio.subprocess.Process, marker: str, output: list[str], within: float = 60) -> None:
    async with asyncio.timeout(within):
        while not any(marker in line for line in output):
            line = await process.stdout.readline()
            if not line:
                raise AssertionError("supervisor exited:\n" + "".join(output))
            output.append(line.decode())


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def is_envoy(pid: int) -> bool:
    return "envoy" in Path(f"/proc/{pid}/cmdline").read_text()


async def test_serve_refuses_replicas_on_the_embedded_store(tmp_path: Path) -> None:
    process = await run_supervisor({"AIGEN_REPLICAS": "2", "AIGEN_DATA_DIR": str(tmp_path), "AIGEN_STORE": "sqlite"})
    output = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 1
    assert "AIGEN_REPLICAS=2 needs AIGEN_STORE=postgres" in output


async def test_serve_runs_replicas_behind_envoy(postgres: PostgresServer, s3: S3Server, tmp_path: Path) -> None:
    dsn = await postgres.create_database()
    http_port = free_port()
    env = {
        "AIGEN_REPLICAS": "3",
        "AIGEN_GRPC_PORT": "0",
        "AIGEN_HTTP_PORT": str(http_port),
        "AIGEN_DATA_DIR": str(tmp_path / "data"),
        "AIGEN_STORE": "postgres",
        "AIGEN_DATABASE_URL": dsn,
        "AIGEN_BLOBS": "s3",
        "AIGEN_S3_ENDPOINT_URL": s3.endpoint_url,
        "AIGEN_S3_BUCKET": s3.bucket,
        "AIGEN_S3_PREFIX": "serve/",
        "AIGEN_S3_ACCESS_KEY_ID": s3.access_key_id,
        "AIGEN_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
    }
    process = await run_supervisor(env)
    output: list[str] = []
    try:
        await read_until(process, "  providers  ", output)
        banner = "".join(output)
        assert "(3 replicas)" in banner
        children = children_of(process.pid)
        assert len(children) == 4  # three servers and Envoy
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=60) as client:
            session_id = await create_session(client)
            for step in range(3):
                reply = await client.post(f"/session/{session_id}/generate", json={"prompt": f"planet {step}"})
                assert reply.status_code == 200, reply.text
            assert (await client.get(f"/session/{session_id}")).json()["turnCount"] == 3
        # Any replica dying takes the service down.
        servers = [pid for pid in children if not is_envoy(pid)]
        os.kill(servers[1], signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), 60) == 1
        rest = (await process.stdout.read()).decode()
        assert "exited with code -9" in rest
        for pid in children:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await postgres.drop_database(dsn)


# Limits shared by every replica -----------------------------------------------------------------
async def test_rate_limit_is_counted_once_across_replicas(postgres: PostgresServer, tmp_path) -> None:
    from aigen.v1 import (
        generation_service_pb2,
        generation_service_pb2_grpc,
        project_service_pb2,
        project_service_pb2_grpc,
    )

    dsn = await postgres.create_database()
    admin = (("authorization", "Bearer admin"),)
    replicas = []
    try:
        for index in range(2):
            registry = ProviderRegistry()
            registry.add(ScriptedProvider("alpha"))
            settings = make_settings(tmp_path / f"r{index}", store="postgres", database_url=dsn, admin_key="admin")
            replicas.append(await start_server(settings, registry))
        async with channel(f"127.0.0.1:{replicas[0].port}") as ch:
            projects = project_service_pb2_grpc.ProjectServiceStub(ch)
            project = project_service_pb2.Project(project_id="acme", rate_limit=3)
            await projects.PutProject(project_service_pb2.PutProjectRequest(project=project), metadata=admin)
            created = await projects.CreateApiKey(
                project_service_pb2.CreateApiKeyRequest(project_id="acme"), metadata=admin
            )
        key = (("authorization", f"Bearer {created.api_key}"),)
        outcomes = []
        for attempt in range(6):  # alternate replicas
            async with channel(f"127.0.0.1:{replicas[attempt % 2].port}") as ch:
                stub = generation_service_pb2_grpc.GenerationServiceStub(ch)
                try:
                    await stub.ListProviders(generation_service_pb2.ListProvidersRequest(), metadata=key)
                    outcomes.append("ok")
                except grpc.aio.AioRpcError as error:
                    outcomes.append(error.code().name)
        assert outcomes == ["ok", "ok", "ok", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]
    finally:
        for replica in replicas:
            await replica.stop(0)
        await postgres.drop_database(dsn)
