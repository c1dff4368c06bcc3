"""Records to protos. Pure functions, no I/O."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2

from aigen.server.store.records import AttemptRecord, ImageRecord, LayerRecord, SessionRecord, TurnRecord
from aigen.v1 import generation_service_pb2, session_service_pb2, types_pb2

TURN_KINDS = {
    "generate": generation_service_pb2.Turn.KIND_GENERATE,
    "iterate": generation_service_pb2.Turn.KIND_ITERATE,
    "separate": generation_service_pb2.Turn.KIND_SEPARATE,
    "lock": generation_service_pb2.Turn.KIND_LOCK,
    "unlock": generation_service_pb2.Turn.KIND_UNLOCK,
}
TURN_STATUSES = {
    "completed": generation_service_pb2.Turn.STATUS_COMPLETED,
    "failed": generation_service_pb2.Turn.STATUS_FAILED,
    "cancelled": generation_service_pb2.Turn.STATUS_CANCELLED,
    "interrupted": generation_service_pb2.Turn.STATUS_INTERRUPTED,
}


def duration(seconds: float) -> duration_pb2.Duration:
    """Seconds as a Duration."""
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(max(0.0, seconds) * 1e9))
    return message


def timestamp(epoch_s: float) -> timestamp_pb2.Timestamp:
    """Epoch seconds as a Timestamp."""
    message = timestamp_pb2.Timestamp()
    message.FromNanoseconds(int(epoch_s * 1e9))
    return message


def image_url(base_url: str, image_id: str) -> str:
    """The permanent URL of an image."""
    return f"{base_url}/images/{image_id}"


def attempt_proto(attempt: AttemptRecord) -> types_pb2.Attempt:
    """An attempt record as the API shows it."""
    return types_pb2.Attempt(
        provider=attempt.provider,
        model=attempt.model,
        attempt_number=attempt.attempt_number,
        chain_position=attempt.chain_position,
        outcome=attempt.outcome,
        reason=attempt.reason,
        error=attempt.error,
        duration=duration(attempt.duration_s),
    )


def image_proto(image: ImageRecord, base_url: str) -> types_pb2.Image:
    """Image metadata with its URL (no bytes)."""
    return types_pb2.Image(
        image_id=image.image_id,
        url=image_url(base_url, image.image_id),
        content_type=image.content_type,
        width=image.width,
        height=image.height,
        size_bytes=image.size_bytes,
    )


def session_proto(session: SessionRecord, current: ImageRecord | None, base_url: str) -> session_service_pb2.Session:
    """A session record with its current image."""
    config = types_pb2.SessionConfig(
        aspect_ratio=session.config.aspect_ratio,
        image_size=session.config.image_size,
        provider=session.config.provider,
        model=session.config.model,
        fallback_chain=[types_pb2.ModelRef(provider=p, model=m) for p, m in session.config.fallback_chain],
    )
    message = session_service_pb2.Session(
        session_id=session.session_id,
        status=session.status,
        project=session.project,
        mode=session.mode,
        config=config,
        turn_count=session.turn_count,
        layer_count=session.layer_count,
        create_time=timestamp(session.created_at),
        update_time=timestamp(session.updated_at),
    )
    if current is not None:
        message.current_image.CopyFrom(image_proto(current, base_url))
    return message


def turn_proto(turn: TurnRecord, image: ImageRecord | None, base_url: str) -> generation_service_pb2.Turn:
    """A history entry."""
    message = generation_service_pb2.Turn(
        turn_id=turn.turn_id,
        index=turn.index,
        kind=TURN_KINDS.get(turn.kind, 0),
        status=TURN_STATUSES.get(turn.status, 0),
        prompt=turn.prompt,
        instructions=turn.instructions,
        attempts=[attempt_proto(a) for a in turn.attempts],
        duration=duration(turn.duration_s),
        credits_used=turn.credits_used,
        error=turn.error,
        layer_id=turn.layer_id,
        create_time=timestamp(turn.created_at),
        degradations=list(turn.degradations),
        aspect_ratio=turn.aspect_ratio,
        image_size=turn.image_size,
    )
    if turn.requested_provider:
        message.requested.CopyFrom(types_pb2.ModelRef(provider=turn.requested_provider, model=turn.requested_model))
    if turn.served_provider:
        message.served.CopyFrom(types_pb2.ModelRef(provider=turn.served_provider, model=turn.served_model))
    if image is not None:
        message.image.CopyFrom(image_proto(image, base_url))
    return message


def layer_proto(layer: LayerRecord, base_url: str) -> types_pb2.Layer:
    """A layer with the URL of its PNG."""
    x, y, width, height = layer.bbox
    return types_pb2.Layer(
        layer_id=layer.layer_id,
        name=layer.name,
        z_order=layer.z_order,
        bounding_box=types_pb2.BoundingBox(x=x, y=y, width=width, height=height),
        coverage=layer.coverage,
        locked=layer.locked,
        url=image_url(base_url, layer.image_id),
        image_id=layer.image_id,
    )
