"""N simultaneous StreamGenerateImage calls against a provider that takes `delay_s` to answer.

Checks what the streaming contract promises under load: every stream ends with PHASE_COMPLETED,
and progress events arrive at least once per second on every stream while the provider works.
Reports the largest gap between two events of one stream, the total time, and the server's peak
RSS. `python -m bench.streams --streams 2000` (or through `python -m bench.run`); `--clients N`
spreads the streams over N load-generator processes, so that reading 2,000 image-sized final
events at once is not bound by one Python process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from aigen.v1 import generation_service_pb2, generation_service_pb2_grpc, types_pb2
from bench import procs

Phase = types_pb2.GenerationEvent.Phase
STREAMS_PER_CHANNEL = 250


@dataclass
class StreamStats:
    """What one stream saw."""

    events: int = 0
    max_gap_s: float = 0.0
    max_server_gap_s: float = 0.0  # the same between the times the server stamped on the events
    first_event_s: float = 0.0
    terminal: str = ""
    error: str = ""
    gaps_over_1s: int = 0
    late_at_s: list[float] = field(default_factory=list)  # when each gap over 1 s ended
    late_between: list[str] = field(default_factory=list)  # the phases on either side of each
    ended_s: float = 0.0


async def one_stream(stub, started: float, timeout_s: float, omit_image_data: bool = False) -> StreamStats:
    """Run one stream to its end, noting when each event arrived."""
    stats = StreamStats()
    request = generation_service_pb2.GenerateImageRequest(
        prompt="A lighthouse at dusk, concurrency run",
        provider="openai",
        model="gpt-image",
        omit_image_data=omit_image_data,
    )
    last = time.monotonic()
    last_stamp = 0.0
    last_phase = 0
    try:
        async for event in stub.StreamGenerateImage(request, timeout=timeout_s):
            now = time.monotonic()
            stamp = event.time.seconds + event.time.nanos / 1e9
            if last_stamp:
                stats.max_server_gap_s = max(stats.max_server_gap_s, stamp - last_stamp)
            last_stamp = stamp
            if stats.events == 0:
                stats.first_event_s = now - started
            else:
                gap = now - last
                stats.max_gap_s = max(stats.max_gap_s, gap)
                if gap > 1.0:
                    stats.gaps_over_1s += 1
                    stats.late_at_s.append(round(now - started, 2))
                    stats.late_between.append(f"{_short(last_phase)}>{_short(event.phase)}")
            last, last_phase = now, event.phase
            stats.events += 1
            if event.phase in (Phase.PHASE_COMPLETED, Phase.PHASE_FAILED):
                stats.terminal = Phase.Name(event.phase)
                if event.phase == Phase.PHASE_FAILED:
                    stats.error = event.message[:200]
    except grpc.aio.AioRpcError as error:
        stats.error = f"{error.code().name}: {(error.details() or '')[:200]}"
    stats.ended_s = time.monotonic() - started
    return stats


def _short(phase: int) -> str:
    """PHASE_RUNNING -> running."""
    return Phase.Name(phase).removeprefix("PHASE_").lower()


async def sample_rss(
    server: procs.Child, stop: asyncio.Event, peak: list[float], started: float, timeline: dict[int, int]
) -> None:
    """Track the server's RSS every 0.25 s (VmHWM is read at the end too), its peak, every 5 s."""
    while not stop.is_set():
        rss, at = server.rss_mb(), time.monotonic() - started
        if rss > peak[0]:
            peak[:] = [rss, at]
        timeline.setdefault(int(at // 5) * 5, round(rss))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


async def watch_lag(stop: asyncio.Event, worst: list[float]) -> None:
    """The load generator's own event-loop lag: how late a 0.1 s sleep wakes up, at worst."""
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(0.1)
        worst[0] = max(worst[0], time.monotonic() - before - 0.1)


def _own_cpu_s() -> float:
    """CPU seconds of this process and of its children that have ended (the client processes)."""
    usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def start_profile(pid: int, seconds: float, output: Path) -> subprocess.Popen | None:
    """py-spy on the server for `seconds` (raw collapsed stacks), when py-spy is installed."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        return None
    argv = [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"]
    argv += ["--format", "raw", "--output", str(output), "--nonblocking", "--idle", "--threads"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def run_share(
    port: int, count: int, delay_s: float, started: float, omit_image_data: bool = False
) -> list[StreamStats]:
    """`count` streams at once from this process, STREAMS_PER_CHANNEL to a connection."""
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.max_receive_message_length", -1), ("grpc.use_local_subchannel_pool", 1)],
        )
        for _ in range(max(1, -(-count // STREAMS_PER_CHANNEL)))
    ]
    try:
        stubs = [generation_service_pb2_grpc.GenerationServiceStub(channel) for channel in channels]
        timeout_s = delay_s * 4 + 120
        return await asyncio.gather(
            *(one_stream(stubs[i % len(stubs)], started, timeout_s, omit_image_data) for i in range(count))
        )
    finally:
        for channel in channels:
            await channel.close()


async def _run_clients(
    port: int, count: int, clients: int, delay_s: float, started: float, omit_image_data: bool
) -> list[StreamStats]:
    """The streams spread over `clients` processes (`--client-of`), their stats read back as JSON.

    CLOCK_MONOTONIC is shared by the processes, so every stream is timed from the same start.
    """
    shares = [count // clients + (index < count % clients) for index in range(clients)]
    argvs = [
        [sys.executable, "-m", "bench.streams", "--client-of", str(port), "--streams", str(share)]
        + ["--delay-s", str(delay_s), "--started", repr(started)]
        + (["--omit-image-data"] if omit_image_data else [])
        for share in shares
    ]
    children = [await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE) for argv in argvs]
    outputs = await asyncio.gather(*(child.communicate() for child in children))
    return [StreamStats(**fields) for stdout, _ in outputs for fields in json.loads(stdout)]


async def _client_main(port: int, count: int, delay_s: float, started: float, omit_image_data: bool) -> None:
    results = await run_share(port, count, delay_s, started, omit_image_data)
    print(json.dumps([dataclasses.asdict(stats) for stats in results]), flush=True)


async def run_streams(
    count: int,
    delay_s: float,
    workdir: Path,
    profile: Path | None = None,
    omit_image_data: bool = False,
    clients: int = 1,
) -> dict:
    """Start a fake and a server, run `count` streams at once, report the figures."""
    fake = procs.start_fake(workdir)
    data_dir = Path(tempfile.mkdtemp(prefix="aigen-streams-data-"))
    base_url = f"http://127.0.0.1:{fake.port}/d/{int(delay_s * 1000)}/v1"
    server = procs.start_aigen(workdir, data_dir, procs.openai_env(base_url), name="aigen-streams")
    idle_rss = server.rss_mb()
    stop, peak = asyncio.Event(), [0.0, 0.0]
    fake_stats: dict = {}
    spy = start_profile(server.pid, delay_s * 2 + 10, profile) if profile else None
    cpu0 = server.cpu_s()
    started = time.monotonic()
    timeline: dict[int, int] = {}
    sampler = asyncio.create_task(sample_rss(server, stop, peak, started, timeline))
    lag = [0.0]
    lag_watch = asyncio.create_task(watch_lag(stop, lag))
    own_cpu0 = _own_cpu_s()
    try:
        if clients <= 1:
            results = await run_share(server.port, count, delay_s, started, omit_image_data)
        else:
            results = await _run_clients(server.port, count, clients, delay_s, started, omit_image_data)
        wall = time.monotonic() - started
    finally:
        own_cpu = _own_cpu_s() - own_cpu0
        stop.set()
        await sampler
        await lag_watch
        cpu = server.cpu_s() - cpu0
        vm_hwm = server.peak_rss_mb()
        if spy is not None:
            await asyncio.to_thread(spy.wait)
        with contextlib.suppress(Exception):
            reply = await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{fake.port}/stats", timeout=5)
            fake_stats = reply.json()
        server.stop()
        fake.stop()
        await asyncio.to_thread(shutil.rmtree, data_dir, True)
    completed = sum(r.terminal == "PHASE_COMPLETED" for r in results)
    errors = sorted({r.error for r in results if r.error})
    report = {
        "streams": count,
        "provider_delay_s": delay_s,
        "completed": completed,
        "failed_or_broken": count - completed,
        "errors": errors[:5],
        "broken_without_any_event": sum(r.events == 0 for r in results if r.error),
        "broken_after_s": sorted({round(r.ended_s) for r in results if r.error})[:10],
        "wall_s": round(wall, 1),
        "max_gap_s": round(max((r.max_gap_s for r in results), default=0), 2),
        "max_gap_stamped_s": round(max((r.max_server_gap_s for r in results), default=0), 2),
        "streams_with_gap_over_1s": sum(r.gaps_over_1s > 0 for r in results),
        "gaps_over_1s_by_s": _late_by_5s(results),
        "gaps_over_1s_by_phases": dict(Counter(p for r in results for p in r.late_between).most_common()),
        "slowest_first_event_s": round(max((r.first_event_s for r in results), default=0), 2),
        "events_total": sum(r.events for r in results),
        "server_idle_rss_mb": round(idle_rss, 1),
        "server_peak_rss_mb_sampled": round(peak[0], 1),
        "server_peak_rss_at_s": round(peak[1], 1),
        "completed_by_peak_rss": _completed_by(results, peak[1]),
        "first_events_by_s": _first_events_by_second(results),
        "completed_by_s": {at: _completed_by(results, at) for at in timeline},
        "rss_mb_by_s": timeline,
        "server_peak_rss_mb_vmhwm": round(vm_hwm, 1),
        "server_cpu_s": round(cpu, 1),
        "clients": max(1, clients),
        "client_cpu_s": round(own_cpu, 1),
        "client_max_loop_lag_s": round(lag[0], 2),
        "provider_requests": fake_stats.get("requests"),
        "provider_peak_in_flight": fake_stats.get("peak_in_flight"),
    }
    print("streams:", json.dumps(report), flush=True)
    return report


def _completed_by(results: list[StreamStats], seconds: float) -> int:
    """Streams that had completed `seconds` after the start."""
    return sum(r.terminal == "PHASE_COMPLETED" and r.ended_s <= seconds for r in results)


def _late_by_5s(results: list[StreamStats]) -> dict[int, int]:
    """Gaps over 1 s, by the 5 s bucket (since the start) in which each ended."""
    buckets: dict[int, int] = {}
    for late in (at for r in results for at in r.late_at_s):
        bucket = int(late // 5) * 5
        buckets[bucket] = buckets.get(bucket, 0) + 1
    return dict(sorted(buckets.items()))


def _first_events_by_second(results: list[StreamStats]) -> dict[int, int]:
    """How many streams had their first event within 1, 2, 5, 10 and 20 s."""
    return {limit: sum(0 < r.first_event_s <= limit for r in results) for limit in (1, 2, 5, 10, 20)}


def main() -> None:
    """Run the concurrency check alone (or, with --client-of, one load-generator share of it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--delay-s", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="200 streams")
    parser.add_argument("--clients", type=int, default=1, help="load-generator processes")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the server to this file")
    parser.add_argument("--omit-image-data", action="store_true", help="final events without the image bytes")
    parser.add_argument("--client-of", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_of:
        asyncio.run(_client_main(args.client_of, args.streams, args.delay_s, args.started, args.omit_image_data))
        return
    count = min(args.streams, 200) if args.quick else args.streams
    workdir = Path(tempfile.mkdtemp(prefix="aigen-bench-"))
    asyncio.run(run_streams(count, args.delay_s, workdir, args.profile, args.omit_image_data, args.clients))


if __name__ == "__main__":
    main()
