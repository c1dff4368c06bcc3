"""Generate one small image with every configured provider model, straight through the adapters.

For people with real provider keys: it spends real credits, so it never runs in CI. No server is
needed: the adapters are built from the same settings the server reads (GEMINI_API_KEY,
OPENAI_API_KEY, REPLICATE_API_TOKEN, BFL_API_KEY, their *_BASE_URL overrides, AIGEN_MODEL_IDS,
AIGEN_CONFIG_FILE), and each model gets one square image at its smallest size tier.

    python scripts/check_providers.py                           # every configured model
    python scripts/check_providers.py --models nano-banana bfl/flux-2-pro --out /tmp/checks

Prints one row per model (provider, model, internal id, latency, bytes, outcome) and exits with
0 when every model answered with an image, 1 when one failed, 2 when no provider is configured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aigen.server.app import build_registry
from aigen.server.config import Settings
from aigen.server.errors import AigenError
from aigen.server.imaging import TIER_EDGE, target_dimensions
from aigen.server.providers.base import ImageProvider, ImageRequest, ModelProfile, ProviderRegistry

PROMPT = "A small red lighthouse on a rocky shore at dusk, simple flat illustration"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
COLUMNS = ("provider", "model", "internal id", "latency", "bytes", "outcome")


@dataclass(frozen=True)
class Check:
    """The outcome of one model's generation."""

    profile: ModelProfile
    latency_s: float
    size_bytes: int
    outcome: str
    ok: bool


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=[],
        metavar="NAME",
        help='only these models: "provider/model", a short name, an internal id or an alias',
    )
    parser.add_argument("--out", type=Path, help="save each image in this directory")
    parser.add_argument("--prompt", default=PROMPT, help="the prompt sent to every model")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per model (default 180)")
    return parser.parse_args(argv)


def selected(registry: ProviderRegistry, filters: Sequence[str]) -> list[tuple[ImageProvider, ModelProfile]]:
    """Every model of a configured remote provider that matches one of `filters` (all without filters)."""
    chosen = []
    for provider in registry.providers.values():
        if not provider.configured or not provider.credential_env:
            continue  # the local renderer is keyless and no AI model: nothing to check
        for profile in provider.models():
            if not filters or any(_matches(profile, name) for name in filters):
                chosen.append((provider, profile))
    return chosen


def _matches(profile: ModelProfile, name: str) -> bool:
    provider, _, model = name.rpartition("/")
    if provider == profile.provider:
        return model in profile.names()
    return name in profile.names()


def small_request(profile: ModelProfile, prompt: str) -> ImageRequest:
    """A square image at the model's smallest size tier, at low quality."""
    tier = min(profile.image_sizes, key=TIER_EDGE.__getitem__)
    width, height = target_dimensions("1:1", tier)
    return ImageRequest(prompt=prompt, model=profile.name, image_size=tier, width=width, height=height, quality="low")


async def check_model(
    provider: ImageProvider, profile: ModelProfile, prompt: str, timeout_s: float, out: Path | None
) -> Check:
    """Generate one image and say how it went; never raises for a provider failure."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            result = await provider.generate(small_request(profile, prompt), lambda _: None)
    except AigenError as exc:
        return Check(profile, time.monotonic() - started, 0, f"{type(exc).__name__}: {exc.message}", False)
    except TimeoutError:
        return Check(profile, time.monotonic() - started, 0, f"no answer within {timeout_s:g} s", False)
    latency = time.monotonic() - started
    outcome = "ok" + (f" ({'; '.join(result.degradations)})" if result.degradations else "")
    if out is not None:
        path = out / f"{profile.provider}-{profile.name}.{EXTENSIONS.get(result.mime_type, 'bin')}"
        path.write_bytes(result.data)
        outcome += f" -> {path}"
    return Check(profile, latency, len(result.data), outcome, True)


def table(checks: Sequence[Check]) -> str:
    """The results as an aligned text table."""
    rows = [COLUMNS] + [
        (
            c.profile.provider,
            c.profile.name,
            c.profile.internal_id,
            f"{c.latency_s:.1f} s",
            str(c.size_bytes) if c.ok else "-",
            c.outcome,
        )
        for c in checks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]) for row in rows
    )


def nothing_configured(registry: ProviderRegistry) -> str:
    names = sorted(p.credential_env for p in registry.providers.values() if p.credential_env)
    return "no provider is configured: set at least one of " + ", ".join(names)


async def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """Check every selected model in turn; print the table; the exit status."""
    registry = build_registry(settings or Settings())
    try:
        if not any(p.configured and p.credential_env for p in registry.providers.values()):
            print(nothing_configured(registry), file=sys.stderr)
            return 2
        chosen = selected(registry, args.models)
        if not chosen:
            print(f"no configured model matches {' '.join(args.models)}", file=sys.stderr)
            return 2
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
        checks = []
        for provider, profile in chosen:
            print(f"{profile.provider}/{profile.name} ...", file=sys.stderr, flush=True)
            checks.append(await check_model(provider, profile, args.prompt, args.timeout, args.out))
        print(table(checks))
        return 0 if all(check.ok for check in checks) else 1
    finally:
        await registry.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
