"""Render envoy/envoy.yaml.tmpl into a concrete Envoy config (ports, upstreams, limits).

Placeholders are `${name}` (string.Template) and are replaced by JSON values, which YAML reads
as they are: no quoting or escaping rules of our own.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from aigen.server.config import MiB, Settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "envoy" / "envoy.yaml.tmpl"
DESCRIPTOR_SET = ROOT / "gen" / "aigen.binpb"
SERVICES = (
    "aigen.v1.SessionService",
    "aigen.v1.GenerationService",
    "aigen.v1.LayerService",
    "aigen.v1.ImageService",
    "aigen.v1.ProjectService",
    "aigen.v1.AccessService",
    "aigen.v1.OpsService",
    "aigen.v1.UiService",
)
# 14 reference images of several MB each, base64-encoded in JSON, fit with room to spare.
MAX_REQUEST_BYTES = 160 * MiB
# A 4K PNG, base64-encoded in a JSON response, fits many times over.
MAX_RESPONSE_BYTES = 128 * MiB
# Streams end at the server's deadline with a terminal event; Envoy cuts them only after this.
STREAM_GRACE_S = 60.0
_WILDCARDS = {"", "0.0.0.0", "::", "localhost"}


@dataclass(frozen=True, slots=True)
class EnvoyOptions:
    """What varies between rendered configs."""

    http_port: int
    admin_port: int
    upstreams: Sequence[tuple[str, int]]
    listen_address: str = "127.0.0.1"
    deadline_s: float = 120.0
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_response_bytes: int = MAX_RESPONSE_BYTES
    descriptor: Path = DESCRIPTOR_SET


def options_from_settings(settings: Settings, grpc_ports: Sequence[int] | None = None) -> EnvoyOptions:
    """Options for an Envoy in front of the gRPC server(s) that `settings` describe."""
    host = upstream_host(settings.host)
    ports = grpc_ports or [settings.grpc_port]
    return EnvoyOptions(
        http_port=settings.http_port,
        admin_port=settings.admin_port,
        upstreams=[(host, port) for port in ports],
        listen_address=listen_host(settings.host),
        deadline_s=max([settings.generation_timeout_s, *settings.model_timeouts_s.values()]),
    )


def upstream_host(host: str) -> str:
    """The address Envoy dials for a server bound to `host` (wildcards mean loopback)."""
    return "127.0.0.1" if host in _WILDCARDS else host


def listen_host(host: str) -> str:
    """The address Envoy listens on for `host` ("localhost" is not an IP)."""
    return "127.0.0.1" if host in ("", "localhost") else host


def render(options: EnvoyOptions, template: Path = TEMPLATE) -> str:
    """The concrete YAML config for `options`."""
    return Template(template.read_text()).substitute(_values(options))


def write_config(options: EnvoyOptions, path: Path, template: Path = TEMPLATE) -> Path:
    """Render into `path` (parents created) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(options, template))
    return path


def _values(options: EnvoyOptions) -> dict[str, str]:
    values: dict[str, object] = {
        "http_port": options.http_port,
        "admin_port": options.admin_port,
        "listen_address": options.listen_address,
        "descriptor": str(options.descriptor),
        "services": list(SERVICES),
        "max_request_bytes": options.max_request_bytes,
        "oversize_request_bytes": options.max_request_bytes + 1,
        "max_response_bytes": options.max_response_bytes,
        "deadline": _duration(options.deadline_s),
        "stream_backstop": _duration(options.deadline_s + STREAM_GRACE_S),
        "cluster_type": "STATIC" if all(_is_ip(host) for host, _ in options.upstreams) else "STRICT_DNS",
        "upstream_endpoints": [_endpoint(host, port) for host, port in options.upstreams],
    }
    return {name: json.dumps(value) for name, value in values.items()}


def _endpoint(host: str, port: int) -> dict[str, object]:
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
