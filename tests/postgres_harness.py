"""A throw-away PostgreSQL server for tests: initdb in tmp, listening on 127.0.0.1 only.

Uses Debian's `postgresql` package (binaries under /usr/lib/postgresql/*/bin). PostgreSQL
refuses to run as root, so as root the server runs as the `postgres` OS user via runuser.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One running server; `dsn(database)` connects to it as the superuser `postgres`."""

    def __init__(self, root: Path, port: int, process: subprocess.Popen, as_user: list[str], bin_dir: Path) -> None:
        self.root = root
        self.port = port
        self.process = process
        self._as_user = as_user
        self._bin = bin_dir

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def create_database(self) -> str:
        """A fresh, empty database; returns its DSN."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        return self.dsn(name)

    async def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[-1]
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()

    def stop(self) -> None:
        subprocess.run(
            [*self._as_user, str(self._bin / "pg_ctl"), "stop", "-D", str(self.root / "data"), "-m", "fast", "-s"],
            check=False,
            capture_output=True,
        )
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start PostgreSQL in a temporary directory, wait until it accepts connections, stop it after."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="aigen-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "postgres.log"
    try:
        subprocess.run(
            [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--no-sync", "--locale=C"],
            check=True, capture_output=True,
        )  # fmt: skip
        port = _free_port()
        options = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(log, "wb") as log_file:
            process = subprocess.Popen(
                [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                 "-k", str(root), *options],
                stdout=log_file, stderr=subprocess.STDOUT,
            )  # fmt: skip
        server = PostgresServer(root, port, process, as_user, bin_dir)
        try:
            deadline = time.monotonic() + 30
            while True:
                ready = subprocess.run(
                    [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"], check=False
                )
                if ready.returncode == 0:
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text(errors='replace')}")
                time.sleep(0.1)
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
