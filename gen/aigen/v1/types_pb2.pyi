import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttemptOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_OUTCOME_UNSPECIFIED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SUCCEEDED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_FAILED_RETRYABLE: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_FAILED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_REFUSED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SKIPPED_CAPABILITY: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SKIPPED_NOT_CONFIGURED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SKIPPED_COOLDOWN: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_CANCELLED: _ClassVar[AttemptOutcome]
    ATTEMPT_OUTCOME_SKIPPED_NOT_ALLOWED: _ClassVar[AttemptOutcome]

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_INPUT: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_NOT_CONFIGURED: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_RATE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_TIMEOUT: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_REJECTED: _ClassVar[ErrorReason]
    ERROR_REASON_CONTENT_REFUSED: _ClassVar[ErrorReason]
    ERROR_REASON_ALL_PROVIDERS_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_SESSION_BUSY: _ClassVar[ErrorReason]
    ERROR_REASON_SESSION_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_IMAGE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_NO_CURRENT_IMAGE: _ClassVar[ErrorReason]
    ERROR_REASON_CAPABILITY_UNSUPPORTED: _ClassVar[ErrorReason]
    ERROR_REASON_PROVIDER_COOLDOWN: _ClassVar[ErrorReason]
    ERROR_REASON_DEADLINE_EXCEEDED: _ClassVar[ErrorReason]
    ERROR_REASON_CANCELLED: _ClassVar[ErrorReason]
    ERROR_REASON_UNAUTHENTICATED: _ClassVar[ErrorReason]
    ERROR_REASON_PERMISSION_DENIED: _ClassVar[ErrorReason]
    ERROR_REASON_RATE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_PAYLOAD_TOO_LARGE: _ClassVar[ErrorReason]
    ERROR_REASON_LAYER_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_LAYERED: _ClassVar[ErrorReason]
    ERROR_REASON_INTERNAL: _ClassVar[ErrorReason]
    ERROR_REASON_PROJECT_NOT_FOUND: _ClassVar[ErrorReason]
ATTEMPT_OUTCOME_UNSPECIFIED: AttemptOutcome
ATTEMPT_OUTCOME_SUCCEEDED: AttemptOutcome
ATTEMPT_OUTCOME_FAILED_RETRYABLE: AttemptOutcome
ATTEMPT_OUTCOME_FAILED: AttemptOutcome
ATTEMPT_OUTCOME_REFUSED: AttemptOutcome
ATTEMPT_OUTCOME_SKIPPED_CAPABILITY: AttemptOutcome
ATTEMPT_OUTCOME_SKIPPED_NOT_CONFIGURED: AttemptOutcome
ATTEMPT_OUTCOME_SKIPPED_COOLDOWN: AttemptOutcome
ATTEMPT_OUTCOME_CANCELLED: AttemptOutcome
ATTEMPT_OUTCOME_SKIPPED_NOT_ALLOWED: AttemptOutcome
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_INPUT: ErrorReason
ERROR_REASON_PROVIDER_NOT_CONFIGURED: ErrorReason
ERROR_REASON_PROVIDER_RATE_LIMITED: ErrorReason
ERROR_REASON_PROVIDER_UNAVAILABLE: ErrorReason
ERROR_REASON_PROVIDER_TIMEOUT: ErrorReason
ERROR_REASON_PROVIDER_REJECTED: ErrorReason
ERROR_REASON_CONTENT_REFUSED: ErrorReason
ERROR_REASON_ALL_PROVIDERS_FAILED: ErrorReason
ERROR_REASON_SESSION_BUSY: ErrorReason
ERROR_REASON_SESSION_NOT_FOUND: ErrorReason
ERROR_REASON_IMAGE_NOT_FOUND: ErrorReason
ERROR_REASON_NO_CURRENT_IMAGE: ErrorReason
ERROR_REASON_CAPABILITY_UNSUPPORTED: ErrorReason
ERROR_REASON_PROVIDER_COOLDOWN: ErrorReason
ERROR_REASON_DEADLINE_EXCEEDED: ErrorReason
ERROR_REASON_CANCELLED: ErrorReason
ERROR_REASON_UNAUTHENTICATED: ErrorReason
ERROR_REASON_PERMISSION_DENIED: ErrorReason
ERROR_REASON_RATE_LIMITED: ErrorReason
ERROR_REASON_PAYLOAD_TOO_LARGE: ErrorReason
ERROR_REASON_LAYER_NOT_FOUND: ErrorReason
ERROR_REASON_NOT_LAYERED: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason
ERROR_REASON_PROJECT_NOT_FOUND: ErrorReason

class ModelRef(_message.Message):
    __slots__ = ("provider", "model")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ImageData(_message.Message):
    __slots__ = ("data", "mime_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    mime_type: str
    def __init__(self, data: _Optional[bytes] = ..., mime_type: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("image_id", "url", "content_type", "width", "height", "size_bytes", "data")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    url: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    data: bytes
    def __init__(self, image_id: _Optional[str] = ..., url: _Optional[str] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., size_bytes: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class SessionConfig(_message.Message):
    __slots__ = ("aspect_ratio", "image_size", "provider", "model", "fallback_chain")
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_CHAIN_FIELD_NUMBER: _ClassVar[int]
    aspect_ratio: str
    image_size: str
    provider: str
    model: str
    fallback_chain: _containers.RepeatedCompositeFieldContainer[ModelRef]
    def __init__(self, aspect_ratio: _Optional[str] = ..., image_size: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., fallback_chain: _Optional[_Iterable[_Union[ModelRef, _Mapping]]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("provider", "model", "attempt_number", "chain_position", "outcome", "reason", "error", "duration")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHAIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    attempt_number: int
    chain_position: int
    outcome: AttemptOutcome
    reason: ErrorReason
    error: str
    duration: _duration_pb2.Duration
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., attempt_number: _Optional[int] = ..., chain_position: _Optional[int] = ..., outcome: _Optional[_Union[AttemptOutcome, str]] = ..., reason: _Optional[_Union[ErrorReason, str]] = ..., error: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LockDrift(_message.Message):
    __slots__ = ("changed_fraction", "changed_pixels", "max_channel_delta")
    CHANGED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHANNEL_DELTA_FIELD_NUMBER: _ClassVar[int]
    changed_fraction: float
    changed_pixels: int
    max_channel_delta: int
    def __init__(self, changed_fraction: _Optional[float] = ..., changed_pixels: _Optional[int] = ..., max_channel_delta: _Optional[int] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("layer_id", "name", "z_order", "bounding_box", "coverage", "locked", "url", "image_id")
    LAYER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    Z_ORDER_FIELD_NUMBER: _ClassVar[int]
    BOUNDING_BOX_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    LOCKED_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    layer_id: str
    name: str
    z_order: int
    bounding_box: BoundingBox
    coverage: float
    locked: bool
    url: str
    image_id: str
    def __init__(self, layer_id: _Optional[str] = ..., name: _Optional[str] = ..., z_order: _Optional[int] = ..., bounding_box: _Optional[_Union[BoundingBox, _Mapping]] = ..., coverage: _Optional[float] = ..., locked: _Optional[bool] = ..., url: _Optional[str] = ..., image_id: _Optional[str] = ...) -> None: ...

class GenerationResult(_message.Message):
    __slots__ = ("image_id", "url", "content_type", "width", "height", "data", "provider", "model", "revised_prompt", "credits_used", "fallback_used", "original_request", "attempts", "degradations", "session_id", "turn_id", "duration", "aspect_ratio", "layers", "lock_drift")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REVISED_PROMPT_FIELD_NUMBER: _ClassVar[int]
    CREDITS_USED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_USED_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DEGRADATIONS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    LOCK_DRIFT_FIELD_NUMBER: _ClassVar[int]
    image_id: str
    url: str
    content_type: str
    width: int
    height: int
    data: bytes
    provider: str
    model: str
    revised_prompt: str
    credits_used: int
    fallback_used: ModelRef
    original_request: ModelRef
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    degradations: _containers.RepeatedScalarFieldContainer[str]
    session_id: str
    turn_id: str
    duration: _duration_pb2.Duration
    aspect_ratio: str
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    lock_drift: LockDrift
    def __init__(self, image_id: _Optional[str] = ..., url: _Optional[str] = ..., content_type: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., revised_prompt: _Optional[str] = ..., credits_used: _Optional[int] = ..., fallback_used: _Optional[_Union[ModelRef, _Mapping]] = ..., original_request: _Optional[_Union[ModelRef, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., degradations: _Optional[_Iterable[str]] = ..., session_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., aspect_ratio: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., lock_drift: _Optional[_Union[LockDrift, _Mapping]] = ...) -> None: ...

class GenerationEvent(_message.Message):
    __slots__ = ("phase", "percent", "percent_estimated", "eta", "elapsed", "attempt", "message", "preview", "result", "error", "time")
    class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PHASE_UNSPECIFIED: _ClassVar[GenerationEvent.Phase]
        PHASE_QUEUED: _ClassVar[GenerationEvent.Phase]
        PHASE_RUNNING: _ClassVar[GenerationEvent.Phase]
        PHASE_FALLBACK: _ClassVar[GenerationEvent.Phase]
        PHASE_PERSISTING: _ClassVar[GenerationEvent.Phase]
        PHASE_COMPLETED: _ClassVar[GenerationEvent.Phase]
        PHASE_FAILED: _ClassVar[GenerationEvent.Phase]
    PHASE_UNSPECIFIED: GenerationEvent.Phase
    PHASE_QUEUED: GenerationEvent.Phase
    PHASE_RUNNING: GenerationEvent.Phase
    PHASE_FALLBACK: GenerationEvent.Phase
    PHASE_PERSISTING: GenerationEvent.Phase
    PHASE_COMPLETED: GenerationEvent.Phase
    PHASE_FAILED: GenerationEvent.Phase
    PHASE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    PERCENT_ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    phase: GenerationEvent.Phase
    percent: float
    percent_estimated: bool
    eta: _duration_pb2.Duration
    elapsed: _duration_pb2.Duration
    attempt: Attempt
    message: str
    preview: Image
    result: GenerationResult
    error: _status_pb2.Status
    time: _timestamp_pb2.Timestamp
    def __init__(self, phase: _Optional[_Union[GenerationEvent.Phase, str]] = ..., percent: _Optional[float] = ..., percent_estimated: _Optional[bool] = ..., eta: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., attempt: _Optional[_Union[Attempt, _Mapping]] = ..., message: _Optional[str] = ..., preview: _Optional[_Union[Image, _Mapping]] = ..., result: _Optional[_Union[GenerationResult, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
