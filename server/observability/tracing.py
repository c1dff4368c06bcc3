"""OpenTelemetry spans: one per RPC, one per provider attempt.

Off by default. `configure_from_environment` installs an SDK tracer provider only when the
standard variables ask for export (OTEL_TRACES_EXPORTER other than "none", or an
OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT) and OTEL_SDK_DISABLED is not true. Incoming trace
context (`traceparent`, `tracestate`) is taken from the call's metadata.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from aigen.server.observability.metrics import outcome_label
from aigen.server.store.records import AttemptRecord
from aigen.v1 import types_pb2

log = logging.getLogger(__name__)
TRACER_NAME = "aigen.server"
_SUCCESS = {types_pb2.AttemptOutcome.ATTEMPT_OUTCOME_SUCCEEDED}
_configured = False


def tracer() -> trace.Tracer:
    """The aigen tracer (a no-op until a tracer provider is installed)."""
    return trace.get_tracer(TRACER_NAME)


def tracing_requested(env: Mapping[str, str]) -> bool:
    """True when the standard OTel variables ask for span export."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_from_environment(env: Mapping[str, str] | None = None) -> bool:
    """Install the SDK tracer provider with the exporters the environment names; once per process."""
    global _configured
    env = os.environ if env is None else env
    if _configured or not tracing_requested(env):
        return _configured
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "aigen")}))
    names = [n.strip() for n in (env.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(",") if n.strip()]
    for name in names:
        exporter = _exporter(name)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    log.info("tracing on: exporting spans with %s", ", ".join(names))
    return True


def _exporter(name: str):
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTEL_TRACES_EXPORTER=otlp needs the otel extra: pip install 'aigen[otel]'")
            return None
        return OTLPSpanExporter()
    if name != "none":
        log.warning("unknown OTEL_TRACES_EXPORTER %r ignored (use otlp, console or none)", name)
    return None


def start_rpc_span(method: str, metadata: Mapping[str, str]) -> Span:
    """A server span for `method` ("/pkg.Service/Method"), child of the caller's traceparent."""
    service, _, name = method.lstrip("/").partition("/")
    parent = propagate.extract(dict(metadata))
    return tracer().start_span(
        f"{service}/{name}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
    )


def end_rpc_span(span: Span, code_name: str, code_value: int, attributes: Mapping[str, str]) -> None:
    """Close the RPC span with its status code and request attributes."""
    span.set_attribute("rpc.grpc.status_code", code_value)
    for key, value in attributes.items():
        if value:
            span.set_attribute(key, value)
    if code_name != "OK":
        span.set_status(Status(StatusCode.ERROR, code_name))
    span.end()


def record_attempt_span(parent: Span | None, record: AttemptRecord) -> None:
    """A span for an attempt that just ended (its start is back-dated by its duration);
    a skipped pair becomes an event on the RPC span instead.
    """
    attributes = {
        "aigen.provider": record.provider,
        "aigen.model": record.model,
        "aigen.attempt.number": record.attempt_number,
        "aigen.attempt.chain_position": record.chain_position,
        "aigen.attempt.outcome": outcome_label(record.outcome),
    }
    if record.reason and record.reason in types_pb2.ErrorReason.values():
        attributes["aigen.attempt.reason"] = types_pb2.ErrorReason.Name(record.reason)
    if record.attempt_number == 0:
        if parent is not None and parent.is_recording():
            parent.add_event("aigen.attempt.skipped", attributes)
        return
    context = trace.set_span_in_context(parent) if parent is not None else None
    end = time.time_ns()
    span = tracer().start_span(
        "aigen.provider_attempt",
        context=context,
        kind=SpanKind.CLIENT,
        attributes=attributes,
        start_time=end - int(record.duration_s * 1e9),
    )
    if record.outcome not in _SUCCESS:
        span.set_status(Status(StatusCode.ERROR, record.error[:200]))
    span.end(end_time=end)
