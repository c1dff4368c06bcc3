"""Operability: request logs, Prometheus metrics and OpenTelemetry traces.

`Telemetry` ties them together; the engine and the generation use cases report to it
through the `GenerationObserver` interface, the `ObservabilityInterceptor` wraps every RPC.
"""
