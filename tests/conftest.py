"""Suite-wide guards (no test reaches a real provider, and no real credential leaks in), the
session's PostgreSQL and S3 servers, and the storage modes server tests run in.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import store_modes
from postgres_harness import PostgresServer, running_postgres
from s3_harness import S3Server, seaweedfs

_PROVIDER_ENV = (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_API_VERSION",
    "GOOGLE_GEMINI_BASE_URL",
    "REPLICATE_API_TOKEN",
    "REPLICATE_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "BFL_API_KEY",
    "BFL_BASE_URL",
    "AIGEN_CONFIG_FILE",
)
for _name in _PROVIDER_ENV:
    os.environ.pop(_name, None)

_LOOPBACK = {"localhost", "::1", "0.0.0.0", "", None}
_real_getaddrinfo = socket.getaddrinfo


def _loopback_only(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOOPBACK and not str(name).startswith("127."):
        raise OSError(f"tests may only reach loopback addresses, not {name!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_only


# Storage modes ----------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_stores: run the module's tests in the embedded and in the shared storage mode"
    )
    config.addinivalue_line("markers", "no_server: the test starts no aigen server, so it runs once (unparametrized)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the tests of `both_stores` modules by storage mode."""
    marked = metafunc.definition.get_closest_marker
    if marked("both_stores") is None or marked("no_server") is not None:
        return
    metafunc.parametrize("store_mode", store_modes.MODES, indirect=True, scope="module")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the whole session, started by the first test that needs it."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A SeaweedFS S3 server with one bucket for the whole session, started on first use."""
    with seaweedfs() as server:
        yield server


@pytest.fixture(scope="session")
def shared_backends(postgres: PostgresServer, s3: S3Server) -> Iterator[store_modes.SharedBackends]:
    """The shared mode's database template and bucket."""
    backends = store_modes.SharedBackends(postgres, s3)
    try:
        yield backends
    finally:
        backends.close()


@pytest.fixture(scope="module", autouse=True)
def store_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """The storage mode servers of this test use ("embedded" unless the module runs both)."""
    mode = getattr(request, "param", store_modes.EMBEDDED)
    backends = request.getfixturevalue("shared_backends") if mode == store_modes.SHARED else None
    with store_modes.activated(backends):
        yield mode


@pytest.fixture
async def dsn(postgres: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty database on the session's cluster, dropped after the test."""
    database = await postgres.create_database()
    try:
        yield database
    finally:
        await postgres.drop_database(database)


@pytest.fixture(autouse=True)
def store_scope() -> Iterator[None]:
    """Shared-mode databases of this test's data_dirs are emptied for reuse after it."""
    with store_modes.scope():
        yield
