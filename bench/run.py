"""`python -m bench.run`: throughput, latency, CPU and memory of aigen against a fake provider.

Rows, for a provider delay of 0 ms and 2 s, at concurrency 1, 16 and 64:

- direct   the fake provider itself (lower bound)
- ceiling  a minimal grpc.aio handler making the same SDK call (bench/ceiling.py)
- grpc     aigen GenerateImage over gRPC, bytes in the answer
- rest     aigen POST /generate through Envoy (the product's own template)
- litellm  LiteLLM proxy, one worker (only with --peer litellm, when it is installed)
- shared-N the rest row on PostgreSQL + S3 with N = 1 and 3 replicas behind Envoy (bench/shared.py)

The direct, ceiling, grpc and rest rows run once per provider of `--provider` (the same ~200 KB
PNG): through the OpenAI adapter under the names above, through the Gemini adapter as
`direct-gemini`, `ceiling-gemini`, `grpc-gemini` and `rest-gemini`.

Then the concurrency run (bench/streams.py) and the failover timings (bench/failover.py).
Figures go to stdout as a table and to bench/out/*.json. Nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import procs
from bench.load import (
    LoadResult,
    closed_loop,
    direct_call,
    grpc_call,
    grpc_channel,
    http_session,
    litellm_call,
    rest_call,
)

OUT = Path(__file__).resolve().parent / "out"
CONCURRENCY = (1, 16, 64)
DELAYS_MS = (0, 2000)
PROVIDERS = ("openai", "gemini")


def row_name(target: str, provider: str) -> str:
    """The row of `target` through `provider`: the OpenAI rows keep the bare name."""
    return target if provider == "openai" else f"{target}-{provider}"


def fake_url(fake: procs.Child, delay_ms: int, provider: str) -> str:
    """The fake's base URL for `provider`'s SDK at `delay_ms`."""
    root = f"http://127.0.0.1:{fake.port}/d/{delay_ms}"
    return f"{root}/v1" if provider == "openai" else root


def provider_env(provider: str, base_url: str) -> dict[str, str]:
    """Aigen settings that send every generation to `provider`'s adapter at `base_url`."""
    if provider == "openai":
        return procs.openai_env(base_url)
    return {
        "GEMINI_API_KEY": "bench",
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "AIGEN_DEFAULT_PROVIDER": "gemini",
        "AIGEN_DEFAULT_MODEL": "nano-banana",
    }


def start_ceiling(workdir: Path, provider: str, base_url: str) -> procs.Child:
    """The minimal grpc.aio handler (bench.ceiling) in front of `provider`'s SDK."""
    port_file = workdir / f"ceiling-{provider}.port"
    port_file.unlink(missing_ok=True)
    variable = "OPENAI_BASE_URL" if provider == "openai" else "GOOGLE_GEMINI_BASE_URL"
    argv = [sys.executable, "-m", "bench.ceiling", "--provider", provider, "--port-file", str(port_file)]
    child = procs.spawn(f"ceiling-{provider}", argv, workdir, procs.clean_env(**{variable: base_url}))
    child.port = procs._port_from_file(child, port_file, "ceiling server")
    return child


@dataclass
class Row:
    """One line of the table."""

    target: str
    delay_ms: int
    concurrency: int
    ok: int
    errors: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    added_p50_ms: float | None
    server_cpu_ms: float | None  # per successful request
    envoy_cpu_ms: float | None
    server_rss_mb: float | None
    server_peak_rss_mb: float | None
    first_error: str = ""
    backends_cpu_ms: dict[str, float] | None = None  # per backend process, shared-mode rows only


def load_average() -> str:
    """The 1/5/15-minute load averages."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> dict:
    """What the figures were measured on."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import psutil

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


class Bench:
    """Runs the rows and collects them."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.direct_p50: dict[tuple[str, int, int], float] = {}  # (direct row, delay, concurrency)

    def bounds(self, delay_ms: int) -> tuple[float, int]:
        """Duration and request cap of one measured run."""
        duration = self.args.duration if delay_ms == 0 else max(self.args.duration, 5 * delay_ms / 1000)
        return duration, self.args.max_requests

    async def measure(
        self,
        target: str,
        delay_ms: int,
        call,
        concurrency: int,
        server: procs.Child | None,
        envoy: procs.Child | None = None,
        backends: dict | None = None,
        direct: str = "direct",
    ) -> Row:
        """Warm up, then one bounded closed-loop run with CPU read before and after.

        `+p50` is taken against the `direct` row (the same provider wire) at the same delay and
        concurrency.
        """
        await closed_loop(call, concurrency, 1.0 if delay_ms == 0 else delay_ms / 1000 + 0.5, 2 * concurrency)
        cpu0 = server.cpu_s() if server else 0.0
        envoy0 = envoy.cpu_s() if envoy else 0.0
        backends0 = {name: child.cpu_s() for name, child in (backends or {}).items()}
        duration, cap = self.bounds(delay_ms)
        result: LoadResult = await closed_loop(call, concurrency, duration, cap)
        ok = max(result.ok, 1)
        row = Row(
            target=target,
            delay_ms=delay_ms,
            concurrency=concurrency,
            ok=result.ok,
            errors=len(result.errors),
            rps=result.rps,
            p50_ms=result.pct(0.50),
            p90_ms=result.pct(0.90),
            p99_ms=result.pct(0.99),
            added_p50_ms=None,
            server_cpu_ms=(server.cpu_s() - cpu0) * 1000 / ok if server else None,
            envoy_cpu_ms=(envoy.cpu_s() - envoy0) * 1000 / ok if envoy else None,
            server_rss_mb=server.rss_mb() if server else None,
            server_peak_rss_mb=server.peak_rss_mb() if server else None,
            first_error=result.errors[0] if result.errors else "",
            backends_cpu_ms={name: (child.cpu_s() - backends0[name]) * 1000 / ok for name, child in backends.items()}
            if backends
            else None,
        )
        if target == direct:
            self.direct_p50[(direct, delay_ms, concurrency)] = row.p50_ms
        elif (direct, delay_ms, concurrency) in self.direct_p50:
            row.added_p50_ms = row.p50_ms - self.direct_p50[(direct, delay_ms, concurrency)]
        self.rows.append(row)
        print(format_row(row), flush=True)
        return row

    async def run_delay(self, fake: procs.Child, delay_ms: int) -> None:
        """Every target at every concurrency for one provider delay."""
        base_url = fake_url(fake, delay_ms, "openai")
        only = set(self.args.only.split(",")) if self.args.only else None
        wanted = lambda name: only is None or name in only  # noqa: E731
        for provider in self.args.provider:
            await self.run_provider(fake, delay_ms, provider, wanted)
        if self.args.peer == "litellm" and wanted("litellm"):
            await self.run_litellm(base_url, delay_ms)
        if wanted("shared"):
            from bench.shared import run_shared

            await run_shared(self, base_url, delay_ms)

    async def run_provider(self, fake: procs.Child, delay_ms: int, provider: str, wanted) -> None:
        """The direct, ceiling, gRPC and REST rows through one provider's wire and adapter."""
        base_url = fake_url(fake, delay_ms, provider)
        direct = row_name("direct", provider)
        if wanted("direct"):
            for c in self.args.concurrency:
                async with http_session(c) as session:
                    call = direct_call(session, base_url, provider)
                    await self.measure(direct, delay_ms, call, c, fake, direct=direct)
        if wanted("ceiling"):
            ceiling = start_ceiling(self.workdir, provider, base_url)
            try:
                async with grpc_channel(f"127.0.0.1:{ceiling.port}") as channel:
                    for c in self.args.concurrency:
                        call = grpc_call(channel, provider)
                        await self.measure(row_name("ceiling", provider), delay_ms, call, c, ceiling, direct=direct)
            finally:
                ceiling.stop()
        if wanted("grpc") or wanted("rest"):
            await self.run_aigen(base_url, delay_ms, wanted, provider)

    async def run_aigen(self, base_url: str, delay_ms: int, wanted, provider: str = "openai") -> None:
        """The gRPC and REST rows through `provider` against one aigen server with Envoy in front."""
        data_dir = Path(tempfile.mkdtemp(prefix="aigen-bench-data-"))
        server = procs.start_aigen(self.workdir, data_dir, provider_env(provider, base_url))
        envoy = procs.start_envoy(self.workdir, server.port)
        direct = row_name("direct", provider)
        try:
            if wanted("grpc"):
                name = row_name("grpc", provider)
                async with grpc_channel(f"127.0.0.1:{server.port}") as channel:
                    for c in self.args.concurrency:
                        await self.measure(name, delay_ms, grpc_call(channel, provider), c, server, direct=direct)
                        if c == 16 and delay_ms == 0 and self.args.profile:
                            await self.profile(server, grpc_call(channel, provider), name)
            if wanted("rest"):
                origin = f"http://127.0.0.1:{envoy.port}"
                name = row_name("rest", provider)
                for c in self.args.concurrency:
                    async with http_session(c) as session:
                        call = rest_call(session, origin, provider)
                        await self.measure(name, delay_ms, call, c, server, envoy, direct=direct)
        finally:
            envoy.stop()
            server.stop()
            await asyncio.to_thread(shutil.rmtree, data_dir, True)

    async def run_litellm(self, base_url: str, delay_ms: int) -> None:
        """The LiteLLM proxy rows, or a note saying why there are none."""
        if procs.litellm_binary() is None:
            message = (
                "litellm row skipped: litellm[proxy] is not installed (pip install 'litellm[proxy]', or LITELLM=path)"
            )
            print(message, flush=True)
            self.notes.append(message)
            return
        peer = procs.start_litellm(self.workdir, base_url)
        try:
            origin = f"http://127.0.0.1:{peer.port}"
            for c in self.args.concurrency:
                async with http_session(c) as session:
                    await self.measure("litellm", delay_ms, litellm_call(session, origin, peer.extra["key"]), c, peer)
        finally:
            peer.stop()

    async def profile(self, server: procs.Child, call, name: str = "grpc") -> None:
        """py-spy on the server during a c=16 run of row `name` (not part of the table)."""
        py_spy = Path(os.sys.executable).parent / "py-spy"
        if not py_spy.exists():
            self.notes.append("py-spy not installed: no profile")
            return
        OUT.mkdir(exist_ok=True)
        raw = OUT / f"profile-{name}-c16.txt"
        seconds = max(5, int(self.args.duration))
        argv = [str(py_spy), "record", "--pid", str(server.pid), "--duration", str(seconds), "--rate", "250"]
        argv += ["--format", "raw", "--output", str(raw), "--nonblocking", "--threads", "--gil"]
        spy = await asyncio.to_thread(subprocess.Popen, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await asyncio.sleep(1.0)
        await closed_loop(call, 16, seconds + 1.0, 10**9)
        _, err = await asyncio.to_thread(spy.communicate)
        if spy.returncode != 0:
            self.notes.append(f"py-spy failed: {err.decode()[-300:]}")
            return
        from bench.profile_summary import summarize

        summary = summarize(raw)
        (OUT / f"profile-{name}-c16-summary.txt").write_text(summary)
        print(summary, flush=True)


HEADER = (
    f"{'target':14} {'delay':>6} {'c':>3} {'ok':>6} {'err':>4} {'req/s':>8} {'p50':>8} {'p90':>8} {'p99':>8} "
    f"{'+p50':>7} {'srv cpu':>8} {'envoy':>6} {'rss':>6} {'peak':>6}"
)


def _f(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def format_row(row: Row) -> str:
    """One fixed-width line (ms for latencies and CPU per request, MB for memory)."""
    line = (
        f"{row.target:14} {row.delay_ms:>6} {row.concurrency:>3} {row.ok:>6} {row.errors:>4} {row.rps:>8.1f} "
        f"{row.p50_ms:>8.1f} {row.p90_ms:>8.1f} {row.p99_ms:>8.1f} {_f(row.added_p50_ms, 7)} "
        f"{_f(row.server_cpu_ms, 8, 2)} {_f(row.envoy_cpu_ms, 6, 2)} {_f(row.server_rss_mb, 6, 0)} "
        f"{_f(row.server_peak_rss_mb, 6, 0)}"
    )
    return line + (f"  ! {row.first_error}" if row.first_error else "")


async def main_async(args: argparse.Namespace) -> dict:
    """Every row, then the concurrency and failover runs; the whole report."""
    OUT.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="aigen-bench-"))
    bench = Bench(args, workdir)
    report: dict = {"machine": machine(), "load_before": load_average(), "args": vars(args)}
    print(f"machine: {report['machine']}\nload average before: {report['load_before']}", flush=True)
    print("latencies in ms; cpu = CPU ms per request of the server process (and of Envoy); memory in MB")
    print(HEADER, flush=True)
    fake = procs.start_fake(workdir)
    try:
        for delay in args.delays:
            await bench.run_delay(fake, delay)
    finally:
        fake.stop()
    report["rows"] = [asdict(row) for row in bench.rows]
    report["load_after_table"] = load_average()
    if not args.skip_streams:
        from bench.streams import run_streams

        report["streams"] = await run_streams(args.streams, args.stream_delay_s, workdir, clients=args.stream_clients)
    if not args.skip_failover:
        from bench.failover import run_failover

        report["failover"] = await run_failover(workdir)
    report["notes"] = bench.notes
    report["load_after"] = load_average()
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(description="aigen benchmarks (not a test: prints figures)")
    parser.add_argument("--quick", action="store_true", help="short runs and 200 streams")
    parser.add_argument("--peer", default="", help="'litellm' adds the LiteLLM proxy row")
    parser.add_argument("--only", default="", help="comma list of targets: direct,ceiling,grpc,rest,litellm,shared")
    parser.add_argument(
        "--provider",
        type=lambda s: [name for name in s.split(",") if name],
        default=list(PROVIDERS),
        help="comma list of adapters the direct/ceiling/grpc/rest rows go through: openai,gemini",
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measured run (0 ms delay)")
    parser.add_argument("--max-requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=list(CONCURRENCY))
    parser.add_argument("--delays", type=lambda s: [int(x) for x in s.split(",")], default=list(DELAYS_MS))
    parser.add_argument("--streams", type=int, default=2000, help="simultaneous streams in the concurrency run")
    parser.add_argument("--stream-delay-s", type=float, default=30.0)
    parser.add_argument("--stream-clients", type=int, default=4, help="load-generator processes of the concurrency run")
    parser.add_argument("--skip-streams", action="store_true")
    parser.add_argument("--skip-failover", action="store_true")
    parser.add_argument("--no-profile", dest="profile", action="store_false")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 2.0)
        args.streams = min(args.streams, 200)
    return args


def main() -> None:
    """Run everything and print the table."""
    args = parse_args()
    started = time.monotonic()
    report = asyncio.run(main_async(args))
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = OUT / f"results-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nload average after: {report['load_after']}; {time.monotonic() - started:.0f} s; figures in {path}")


if __name__ == "__main__":
    main()
