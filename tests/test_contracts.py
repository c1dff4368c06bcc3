"""The contracts: every documented route is bound, and the documented JSON parses losslessly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, json_format

from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import types_pb2

DESCRIPTOR_SET = Path(__file__).resolve().parent.parent / "gen" / "aigen.binpb"

# (verb, path template, service.method, body): every route of API.md and APP-API.md,
# the streaming twins and the image URL. Path variables are written as the spec writes them.
ROUTES = [
    ("post", "/session", "SessionService.CreateSession", "*"),
    ("get", "/session/{id}", "SessionService.GetSession", ""),
    ("delete", "/session/{id}", "SessionService.DeleteSession", ""),
    ("get", "/sessions", "SessionService.ListSessions", ""),
    ("post", "/session/{id}/generate", "GenerationService.Generate", "*"),
    ("post", "/session/{id}/generate:stream", "GenerationService.StreamGenerate", "*"),
    ("post", "/session/{id}/iterate", "GenerationService.Iterate", "*"),
    ("post", "/session/{id}/iterate:stream", "GenerationService.StreamIterate", "*"),
    ("get", "/session/{id}/history", "GenerationService.GetHistory", ""),
    ("post", "/generate", "GenerationService.GenerateImage", "*"),
    ("post", "/generate:stream", "GenerationService.StreamGenerateImage", "*"),
    ("get", "/providers", "GenerationService.ListProviders", ""),
    ("get", "/models", "GenerationService.ListModels", ""),
    ("get", "/api/{project}/services/image/models", "GenerationService.ListModels", ""),
    ("post", "/api/{project}/services/image", "GenerationService.GenerateImage", "*"),
    ("post", "/session/{id}/separate", "LayerService.SeparateLayers", "*"),
    ("post", "/session/{id}/lock", "LayerService.LockLayer", "*"),
    ("post", "/session/{id}/unlock", "LayerService.UnlockLayer", "*"),
    ("get", "/session/{id}/layers", "LayerService.ListLayers", ""),
    ("get", "/session/{id}/layers:export", "LayerService.ExportLayers", ""),
    ("get", "/images/{id}", "ImageService.GetImage", ""),
    ("post", "/api/token", "AccessService.CreateAppToken", "*"),
    ("get", "/usage", "AccessService.GetUsage", ""),
    ("post", "/admin/projects", "ProjectService.PutProject", "project"),
    ("get", "/admin/projects", "ProjectService.ListProjects", ""),
    ("get", "/admin/projects/{project_id}", "ProjectService.GetProject", ""),
    ("delete", "/admin/projects/{project_id}", "ProjectService.DeleteProject", ""),
    ("post", "/admin/projects/{project_id}/keys", "ProjectService.CreateApiKey", "*"),
    ("delete", "/admin/projects/{project_id}/keys/{key_id}", "ProjectService.RevokeApiKey", ""),
    ("get", "/metrics", "OpsService.GetMetrics", ""),
    ("get", "/openapi.json", "OpsService.GetOpenApiDocument", ""),
    ("get", "/", "UiService.GetAsset", ""),
    ("get", "/ui/{path=**}", "UiService.GetAsset", ""),
]

# Which request field each spec path variable binds to.
PATH_VARIABLES = {"{id}": ("{session_id}", "{image_id}"), "{project}": ("{project}",)}


def _bindings() -> dict[tuple[str, str], tuple[str, str]]:
    """(verb, template) -> (service.method, body) for every binding in the descriptor set."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for file in fds.file:
        if file.package != "aigen.v1":
            continue
        for service in file.service:
            for method in service.method:
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in [rule, *rule.additional_bindings]:
                    verb, path = _verb_and_path(binding)
                    found[(verb, path)] = (f"{service.name}.{method.name}", binding.body)
    return found


def _verb_and_path(rule: http_pb2.HttpRule) -> tuple[str, str]:
    verb = rule.WhichOneof("pattern")
    return verb, getattr(rule, verb)


def _spec_template(path: str, bindings: dict) -> str:
    """Map the spec's variable names onto the proto field names actually bound."""
    for spec_name, field_names in PATH_VARIABLES.items():
        for field_name in field_names:
            candidate = path.replace(spec_name, field_name)
            if any(candidate == bound for _, bound in bindings):
                return candidate
    return path


@pytest.mark.parametrize(("verb", "path", "method", "body"), ROUTES, ids=[f"{v} {p}" for v, p, *_ in ROUTES])
def test_route_is_bound(verb: str, path: str, method: str, body: str) -> None:
    bindings = _bindings()
    template = _spec_template(path, bindings)
    assert (verb, template) in bindings, f"{verb.upper()} {path} is not bound"
    assert bindings[(verb, template)] == (method, body)


def test_no_unexpected_routes() -> None:
    bound = {(verb, path) for verb, path in _bindings()}
    expected = {(verb, _spec_template(path, _bindings())) for verb, path, *_ in ROUTES}
    assert bound == expected


def test_descriptor_set_carries_rich_error_types() -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    names = {file.name for file in fds.file}
    assert {"google/rpc/status.proto", "google/rpc/error_details.proto", "google/api/httpbody.proto"} <= names


def _round_trip(body: dict, message_type):
    """Parse documented JSON strictly, print it back and compare: nothing lost."""
    message = json_format.ParseDict(body, message_type())
    printed = json_format.MessageToDict(message)
    return message, printed


def test_create_session_example() -> None:
    body = {
        "project": "name",
        "mode": "layered",
        "config": {
            "aspectRatio": "story",
            "imageSize": "2K",
            "provider": "gemini",
            "model": "nano-banana-pro",
        },
    }
    message, printed = _round_trip(body, session_pb2.CreateSessionRequest)
    assert printed == body
    assert message.config.aspect_ratio == "story"


def test_create_session_response_names() -> None:
    session = session_pb2.Session(session_id="sess_abc", status="ready")
    assert json_format.MessageToDict(session) == {"sessionId": "sess_abc", "status": "ready"}


def test_generate_with_fallback_example() -> None:
    body = {
        "prompt": "Blue planet with rings",
        "provider": "gemini",
        "model": "nano-banana-pro",
        "fallback": [
            {"provider": "replicate", "model": "flux-pro"},
            {"provider": "gemini", "model": "nano-banana"},
        ],
        "referenceImages": [],
    }
    message, printed = _round_trip(body, gen_pb2.GenerateRequest)
    assert printed == {k: v for k, v in body.items() if v != []}
    assert [(f.provider, f.model) for f in message.fallback] == [
        ("replicate", "flux-pro"),
        ("gemini", "nano-banana"),
    ]


def test_iterate_example() -> None:
    body = {
        "instructions": "Change the color to red",
        "referenceImages": ["iVBORw0KGgoAAAANSUhEUgAA"],
        "aspectRatio": "4:5",
        "provider": "gemini",
        "model": "nano-banana",
        "fallback": [{"provider": "gemini", "model": "nano-banana"}],
    }
    _, printed = _round_trip(body, gen_pb2.IterateRequest)
    assert printed == body


def test_reference_images_accept_all_three_forms_in_one_array() -> None:
    forms = [
        "iVBORw0KGgoAAAANSUhEUgAA",
        "data:image/jpeg;base64,/9j/4AAQ",
        {"data": "/9j/4AAQ", "mimeType": "image/jpeg"},
    ]
    message = json_format.Parse(json.dumps({"prompt": "p", "referenceImages": forms}), gen_pb2.GenerateRequest())
    values = [json_format.MessageToDict(v) for v in message.reference_images]
    assert values == forms


def test_typed_reference_images_for_grpc() -> None:
    request = gen_pb2.GenerateRequest(prompt="p")
    request.reference_image_data.add(data=b"\x89PNG", mime_type="image/png")
    printed = json_format.MessageToDict(request)
    assert printed["referenceImageData"] == [{"data": "iVBORw==", "mimeType": "image/png"}]


def test_app_api_request_snake_case_names_parse() -> None:
    body = {
        "prompt": "A sunset over mountains",
        "provider": "openai",
        "model": "gpt-image-1",
        "size": "1024x1024",
        "quality": "auto",
        "aspect_ratio": "16:9",
        "image_size": "512",
    }
    message = json_format.ParseDict(body, gen_pb2.GenerateImageRequest())
    assert printed_snake(message) == body


def printed_snake(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_app_api_response_shape_with_proto_names() -> None:
    result = types_pb2.GenerationResult(
        url="/images/img_1",
        content_type="image/png",
        revised_prompt="r",
        model="gpt-image-1",
        provider="openai",
        credits_used=50,
    )
    assert printed_snake(result) == {
        "url": "/images/img_1",
        "content_type": "image/png",
        "revised_prompt": "r",
        "model": "gpt-image-1",
        "provider": "openai",
        "credits_used": 50,
    }


def test_fallback_response_fields_as_documented() -> None:
    result = types_pb2.GenerationResult(
        fallback_used=types_pb2.ModelRef(provider="gemini", model="nano-banana"),
        original_request=types_pb2.ModelRef(provider="gemini", model="nano-banana-pro"),
    )
    assert json_format.MessageToDict(result) == {
        "fallbackUsed": {"provider": "gemini", "model": "nano-banana"},
        "originalRequest": {"provider": "gemini", "model": "nano-banana-pro"},
    }


def test_unknown_typed_field_is_rejected() -> None:
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict({"prompt": "p", "fallback": ["gemini"]}, gen_pb2.GenerateRequest())
