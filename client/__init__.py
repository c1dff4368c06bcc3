"""aigen client library: `AsyncClient`, the blocking `Client`, typed results and errors.

```python
from aigen.client import Client

with Client("localhost:19002") as client:
    session = client.create_session("demo")
    result = client.generate(session.session_id, "Blue planet with rings", aspect_ratio="16:9")
    result.save("planet.png")
```
"""

from aigen.client._async_client import DEFAULT_ADDRESS, AsyncClient, GenerationOptions, default_address
from aigen.client._errors import (
    AigenError,
    AllProvidersFailedError,
    CancelledError,
    ContentRefusedError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ProviderError,
    ProviderNotConfiguredError,
    RateLimitedError,
    SessionBusyError,
    UnauthenticatedError,
    UnavailableError,
)
from aigen.client._references import ReferenceImage
from aigen.client._stream import GenerationStream
from aigen.client._sync_client import Client, GenerationEvents
from aigen.client._types import (
    Attempt,
    BoundingBox,
    GenerationResult,
    ImageBytes,
    ImageInfo,
    Layer,
    LayerStack,
    LockDrift,
    ModelCapabilities,
    ModelInfo,
    ModelRef,
    ProgressEvent,
    ProviderInfo,
    Session,
    SessionConfig,
    SessionPage,
    Turn,
)

__all__ = [
    "DEFAULT_ADDRESS",
    "AigenError",
    "AllProvidersFailedError",
    "AsyncClient",
    "Attempt",
    "BoundingBox",
    "CancelledError",
    "Client",
    "ContentRefusedError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "GenerationEvents",
    "GenerationOptions",
    "GenerationResult",
    "GenerationStream",
    "ImageBytes",
    "ImageInfo",
    "InternalError",
    "InvalidArgumentError",
    "Layer",
    "LayerStack",
    "LockDrift",
    "ModelCapabilities",
    "ModelInfo",
    "ModelRef",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProgressEvent",
    "ProviderError",
    "ProviderInfo",
    "ProviderNotConfiguredError",
    "RateLimitedError",
    "ReferenceImage",
    "Session",
    "SessionBusyError",
    "SessionConfig",
    "SessionPage",
    "Turn",
    "UnauthenticatedError",
    "UnavailableError",
    "default_address",
]
