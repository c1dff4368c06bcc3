"""Failover timing: from a dead provider (connection refused) to the fallback's request.

The chain is openai (its base URL on a closed port) then gemini (the fake). For each request the
penalty is the time from sending it to the fake seeing the gemini request, minus the same time
when gemini is asked first (median of the baseline). Scenarios: the default retry policy, no
retries, and cooldown engaged (the dead pair skipped). `python -m bench.failover`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from aigen.v1 import generation_service_pb2, generation_service_pb2_grpc
from bench import procs
from bench.fake_provider import FakeProvider
from bench.load import grpc_channel

REQUESTS = 12
CHAIN = json.dumps([{"provider": "gemini", "model": "nano-banana"}])


async def _timings(fake: FakeProvider, port: int, provider: str, model: str, count: int) -> list[float]:
    """Seconds from sending each request to the fake's gemini arrival (sequential requests)."""
    found: list[float] = []
    async with grpc_channel(f"127.0.0.1:{port}") as channel:
        stub = generation_service_pb2_grpc.GenerationServiceStub(channel)
        request = generation_service_pb2.GenerateImageRequest(
            prompt="failover timing", provider=provider, model=model, omit_image_data=True
        )
        await stub.GenerateImage(request, timeout=60)  # warm: connections and imports
        for _ in range(count):
            sent = time.monotonic()
            await stub.GenerateImage(request, timeout=60)
            arrivals = [t for wire, t in fake.arrivals if wire == "gemini" and t >= sent]
            found.append(arrivals[0] - sent)
    return found


async def _scenario(workdir: Path, fake: FakeProvider, dead_url: str, name: str, env: dict[str, str]) -> list[float]:
    data_dir = Path(tempfile.mkdtemp(prefix="aigen-failover-data-"))
    settings = {
        **procs.openai_env(dead_url),
        "GEMINI_API_KEY": "bench",
        "GOOGLE_GEMINI_BASE_URL": fake.gemini_base_url(0),
        **env,
    }
    server = procs.start_aigen(workdir, data_dir, settings, name=f"aigen-failover-{name}")
    try:
        if name == "baseline":
            return await _timings(fake, server.port, "gemini", "nano-banana", REQUESTS)
        return await _timings(fake, server.port, "openai", "gpt-image", REQUESTS)
    finally:
        server.stop()
        await asyncio.to_thread(shutil.rmtree, data_dir, True)


async def run_failover(workdir: Path) -> dict:
    """Every scenario; penalties in ms (median and max)."""
    fake = FakeProvider()
    await fake.start()
    dead_url = f"http://127.0.0.1:{procs.free_port()}/v1"  # nothing listens there: connection refused
    common = {"AIGEN_FALLBACK_CHAIN": CHAIN}
    scenarios = {
        "baseline": {**common},
        "default retries, no cooldown": {**common, "AIGEN_COOLDOWN_FAILURES": "1000000"},
        "no retries, no cooldown": {**common, "AIGEN_RETRY_ATTEMPTS": "0", "AIGEN_COOLDOWN_FAILURES": "1000000"},
        "cooldown engaged (defaults)": {**common},
    }
    report: dict = {}
    try:
        baseline: float | None = None
        for name, env in scenarios.items():
            found = await _scenario(workdir, fake, dead_url, name if name == "baseline" else "x", env)
            if name == "baseline":
                baseline = statistics.median(found)
                report[name] = {"median_ms": round(baseline * 1000, 1), "max_ms": round(max(found) * 1000, 1)}
                continue
            assert baseline is not None
            penalties = [(t - baseline) * 1000 for t in found]
            # With cooldown, the warm-up request's failures (3 with the default retries) already put
            # the dead pair in cooldown: every timed request skips it.
            report[name] = {
                "median_penalty_ms": round(statistics.median(penalties), 1),
                "max_penalty_ms": round(max(penalties), 1),
                "first_penalty_ms": round(penalties[0], 1),
            }
    finally:
        await fake.stop()
    print("failover:", json.dumps(report), flush=True)
    return report


def main() -> None:
    """Run the failover timings alone."""
    asyncio.run(run_failover(Path(tempfile.mkdtemp(prefix="aigen-bench-"))))


if __name__ == "__main__":
    main()
