import datetime

from aigen.v1 import types_pb2 as _types_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateRequest(_message.Message):
    __slots__ = ("session_id", "prompt", "provider", "model", "fallback", "aspect_ratio", "image_size", "reference_images", "reference_image_data", "size", "quality", "seed", "omit_image_data", "timeout")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGE_DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OMIT_IMAGE_DATA_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    prompt: str
    provider: str
    model: str
    fallback: _containers.RepeatedCompositeFieldContainer[_types_pb2.ModelRef]
    aspect_ratio: str
    image_size: str
    reference_images: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    reference_image_data: _containers.RepeatedCompositeFieldContainer[_types_pb2.ImageData]
    size: str
    quality: str
    seed: int
    omit_image_data: bool
    timeout: _duration_pb2.Duration
    def __init__(self, session_id: _Optional[str] = ..., prompt: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., fallback: _Optional[_Iterable[_Union[_types_pb2.ModelRef, _Mapping]]] = ..., aspect_ratio: _Optional[str] = ..., image_size: _Optional[str] = ..., reference_images: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., reference_image_data: _Optional[_Iterable[_Union[_types_pb2.ImageData, _Mapping]]] = ..., size: _Optional[str] = ..., quality: _Optional[str] = ..., seed: _Optional[int] = ..., omit_image_data: _Optional[bool] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class IterateRequest(_message.Message):
    __slots__ = ("session_id", "instructions", "provider", "model", "fallback", "aspect_ratio", "image_size", "reference_images", "reference_image_data", "size", "quality", "seed", "omit_image_data", "timeout")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGE_DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OMIT_IMAGE_DATA_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    instructions: str
    provider: str
    model: str
    fallback: _containers.RepeatedCompositeFieldContainer[_types_pb2.ModelRef]
    aspect_ratio: str
    image_size: str
    reference_images: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    reference_image_data: _containers.RepeatedCompositeFieldContainer[_types_pb2.ImageData]
    size: str
    quality: str
    seed: int
    omit_image_data: bool
    timeout: _duration_pb2.Duration
    def __init__(self, session_id: _Optional[str] = ..., instructions: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., fallback: _Optional[_Iterable[_Union[_types_pb2.ModelRef, _Mapping]]] = ..., aspect_ratio: _Optional[str] = ..., image_size: _Optional[str] = ..., reference_images: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., reference_image_data: _Optional[_Iterable[_Union[_types_pb2.ImageData, _Mapping]]] = ..., size: _Optional[str] = ..., quality: _Optional[str] = ..., seed: _Optional[int] = ..., omit_image_data: _Optional[bool] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GenerateImageRequest(_message.Message):
    __slots__ = ("project", "prompt", "provider", "model", "fallback", "aspect_ratio", "image_size", "reference_images", "reference_image_data", "size", "quality", "seed", "omit_image_data", "timeout")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGE_DATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    OMIT_IMAGE_DATA_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    project: str
    prompt: str
    provider: str
    model: str
    fallback: _containers.RepeatedCompositeFieldContainer[_types_pb2.ModelRef]
    aspect_ratio: str
    image_size: str
    reference_images: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    reference_image_data: _containers.RepeatedCompositeFieldContainer[_types_pb2.ImageData]
    size: str
    quality: str
    seed: int
    omit_image_data: bool
    timeout: _duration_pb2.Duration
    def __init__(self, project: _Optional[str] = ..., prompt: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., fallback: _Optional[_Iterable[_Union[_types_pb2.ModelRef, _Mapping]]] = ..., aspect_ratio: _Optional[str] = ..., image_size: _Optional[str] = ..., reference_images: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ..., reference_image_data: _Optional[_Iterable[_Union[_types_pb2.ImageData, _Mapping]]] = ..., size: _Optional[str] = ..., quality: _Optional[str] = ..., seed: _Optional[int] = ..., omit_image_data: _Optional[bool] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("session_id", "turns")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    def __init__(self, session_id: _Optional[str] = ..., turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("turn_id", "index", "kind", "status", "prompt", "instructions", "requested", "served", "attempts", "duration", "image", "credits_used", "error", "layer_id", "create_time", "degradations", "aspect_ratio", "image_size")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Turn.Kind]
        KIND_GENERATE: _ClassVar[Turn.Kind]
        KIND_ITERATE: _ClassVar[Turn.Kind]
        KIND_SEPARATE: _ClassVar[Turn.Kind]
        KIND_LOCK: _ClassVar[Turn.Kind]
        KIND_UNLOCK: _ClassVar[Turn.Kind]
    KIND_UNSPECIFIED: Turn.Kind
    KIND_GENERATE: Turn.Kind
    KIND_ITERATE: Turn.Kind
    KIND_SEPARATE: Turn.Kind
    KIND_LOCK: Turn.Kind
    KIND_UNLOCK: Turn.Kind
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[Turn.Status]
        STATUS_COMPLETED: _ClassVar[Turn.Status]
        STATUS_FAILED: _ClassVar[Turn.Status]
        STATUS_CANCELLED: _ClassVar[Turn.Status]
        STATUS_INTERRUPTED: _ClassVar[Turn.Status]
    STATUS_UNSPECIFIED: Turn.Status
    STATUS_COMPLETED: Turn.Status
    STATUS_FAILED: Turn.Status
    STATUS_CANCELLED: Turn.Status
    STATUS_INTERRUPTED: Turn.Status
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CREDITS_USED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LAYER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DEGRADATIONS_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    index: int
    kind: Turn.Kind
    status: Turn.Status
    prompt: str
    instructions: str
    requested: _types_pb2.ModelRef
    served: _types_pb2.ModelRef
    attempts: _containers.RepeatedCompositeFieldContainer[_types_pb2.Attempt]
    duration: _duration_pb2.Duration
    image: _types_pb2.Image
    credits_used: int
    error: str
    layer_id: str
    create_time: _timestamp_pb2.Timestamp
    degradations: _containers.RepeatedScalarFieldContainer[str]
    aspect_ratio: str
    image_size: str
    def __init__(self, turn_id: _Optional[str] = ..., index: _Optional[int] = ..., kind: _Optional[_Union[Turn.Kind, str]] = ..., status: _Optional[_Union[Turn.Status, str]] = ..., prompt: _Optional[str] = ..., instructions: _Optional[str] = ..., requested: _Optional[_Union[_types_pb2.ModelRef, _Mapping]] = ..., served: _Optional[_Union[_types_pb2.ModelRef, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[_types_pb2.Attempt, _Mapping]]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., image: _Optional[_Union[_types_pb2.Image, _Mapping]] = ..., credits_used: _Optional[int] = ..., error: _Optional[str] = ..., layer_id: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., degradations: _Optional[_Iterable[str]] = ..., aspect_ratio: _Optional[str] = ..., image_size: _Optional[str] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProvidersResponse(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderInfo]
    def __init__(self, providers: _Optional[_Iterable[_Union[ProviderInfo, _Mapping]]] = ...) -> None: ...

class ProviderInfo(_message.Message):
    __slots__ = ("name", "configured", "credential_env", "models", "description", "models_in_cooldown")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ENV_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MODELS_IN_COOLDOWN_FIELD_NUMBER: _ClassVar[int]
    name: str
    configured: bool
    credential_env: str
    models: _containers.RepeatedScalarFieldContainer[str]
    description: str
    models_in_cooldown: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., configured: _Optional[bool] = ..., credential_env: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., models_in_cooldown: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("project", "provider")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    project: str
    provider: str
    def __init__(self, project: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("provider", "model", "internal_id", "aliases", "configured", "notes", "capabilities", "typical_latency", "credits_per_image", "in_cooldown", "local")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TYPICAL_LATENCY_FIELD_NUMBER: _ClassVar[int]
    CREDITS_PER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    IN_COOLDOWN_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    internal_id: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    configured: bool
    notes: str
    capabilities: ModelCapabilities
    typical_latency: _duration_pb2.Duration
    credits_per_image: int
    in_cooldown: bool
    local: bool
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., internal_id: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., configured: _Optional[bool] = ..., notes: _Optional[str] = ..., capabilities: _Optional[_Union[ModelCapabilities, _Mapping]] = ..., typical_latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., credits_per_image: _Optional[int] = ..., in_cooldown: _Optional[bool] = ..., local: _Optional[bool] = ...) -> None: ...

class ModelCapabilities(_message.Message):
    __slots__ = ("aspect_ratios", "image_sizes", "max_reference_images", "can_edit", "supports_mask", "reports_progress", "streams_previews")
    ASPECT_RATIOS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZES_FIELD_NUMBER: _ClassVar[int]
    MAX_REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    CAN_EDIT_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_MASK_FIELD_NUMBER: _ClassVar[int]
    REPORTS_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_PREVIEWS_FIELD_NUMBER: _ClassVar[int]
    aspect_ratios: _containers.RepeatedScalarFieldContainer[str]
    image_sizes: _containers.RepeatedScalarFieldContainer[str]
    max_reference_images: int
    can_edit: bool
    supports_mask: bool
    reports_progress: bool
    streams_previews: bool
    def __init__(self, aspect_ratios: _Optional[_Iterable[str]] = ..., image_sizes: _Optional[_Iterable[str]] = ..., max_reference_images: _Optional[int] = ..., can_edit: _Optional[bool] = ..., supports_mask: _Optional[bool] = ..., reports_progress: _Optional[bool] = ..., streams_previews: _Optional[bool] = ...) -> None: ...
