from aigen.v1 import types_pb2 as _types_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SeparateLayersRequest(_message.Message):
    __slots__ = ("session_id", "layer_count")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_COUNT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    layer_count: int
    def __init__(self, session_id: _Optional[str] = ..., layer_count: _Optional[int] = ...) -> None: ...

class SeparateLayersResponse(_message.Message):
    __slots__ = ("session_id", "layers")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    layers: _containers.RepeatedCompositeFieldContainer[_types_pb2.Layer]
    def __init__(self, session_id: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[_types_pb2.Layer, _Mapping]]] = ...) -> None: ...

class LockLayerRequest(_message.Message):
    __slots__ = ("session_id", "layer_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    layer_id: str
    def __init__(self, session_id: _Optional[str] = ..., layer_id: _Optional[str] = ...) -> None: ...

class LockLayerResponse(_message.Message):
    __slots__ = ("layer",)
    LAYER_FIELD_NUMBER: _ClassVar[int]
    layer: _types_pb2.Layer
    def __init__(self, layer: _Optional[_Union[_types_pb2.Layer, _Mapping]] = ...) -> None: ...

class UnlockLayerRequest(_message.Message):
    __slots__ = ("session_id", "layer_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    layer_id: str
    def __init__(self, session_id: _Optional[str] = ..., layer_id: _Optional[str] = ...) -> None: ...

class UnlockLayerResponse(_message.Message):
    __slots__ = ("layer",)
    LAYER_FIELD_NUMBER: _ClassVar[int]
    layer: _types_pb2.Layer
    def __init__(self, layer: _Optional[_Union[_types_pb2.Layer, _Mapping]] = ...) -> None: ...

class ListLayersRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ListLayersResponse(_message.Message):
    __slots__ = ("session_id", "layers", "export_url")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_URL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    layers: _containers.RepeatedCompositeFieldContainer[_types_pb2.Layer]
    export_url: str
    def __init__(self, session_id: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[_types_pb2.Layer, _Mapping]]] = ..., export_url: _Optional[str] = ...) -> None: ...

class ExportLayersRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...
