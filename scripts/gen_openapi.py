"""Write gen/openapi.json: the OpenAPI 3.1 document of every REST route, from gen/aigen.binpb.

Routes come from the `google.api.http` options of the aigen.v1 services, JSON names follow
the transcoder: lowerCamelCase, except on `/api/` routes (snake_case, the proto names).
Server-streaming RPCs answer `text/event-stream` (one `data:` frame per message),
`google.api.HttpBody` answers raw bytes, errors `{"code","message","details"}`.
Run by `make gen` after scripts/gen_protos.py; `--check` fails when the file is stale.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR_SET = ROOT / "gen" / "aigen.binpb"
OUTPUT = ROOT / "gen" / "openapi.json"
PACKAGE = "aigen.v1"
SNAKE_PREFIX = "/api/"
ERROR = "google.rpc.Status"
FieldType = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    FieldType.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldType.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldType.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldType.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldType.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldType.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FieldType.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FieldType.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldType.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldType.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldType.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldType.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldType.TYPE_BOOL: {"type": "boolean"},
    FieldType.TYPE_STRING: {"type": "string"},
    FieldType.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
WELL_KNOWN = {
    "google.protobuf.Duration": {"type": "string", "description": 'Seconds with an "s" suffix, e.g. "1.5s".'},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"]},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.Int64Value": {"type": ["string", "null"]},
}
HTTP_BODY = "google.api.HttpBody"


class Catalogue:
    """Messages, enums, comments and methods of a descriptor set, by full name."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.comments: dict[tuple, str] = {}
        self.services: list[tuple[descriptor_pb2.ServiceDescriptorProto, tuple]] = []
        for file in files.file:
            self._add_file(file)

    def _add_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        comments = {tuple(loc.path): _clean(loc.leading_comments) for loc in file.source_code_info.location}
        for index, message in enumerate(file.message_type):
            self._add_message(f"{file.package}.{message.name}", message, (file.name, 4, index), comments)
        for index, enum in enumerate(file.enum_type):
            self.enums[f"{file.package}.{enum.name}"] = enum
            self.comments[(f"{file.package}.{enum.name}",)] = comments.get((5, index), "")
        if file.package == PACKAGE:
            for index, service in enumerate(file.service):
                self.services.append((service, (file.name, index)))
                self.comments[(file.name, "service", index)] = comments.get((6, index), "")
                for method_index, _ in enumerate(service.method):
                    key = (file.name, "method", index, method_index)
                    self.comments[key] = comments.get((6, index, 2, method_index), "")

    def _add_message(self, name: str, message, path: tuple, comments: dict[tuple, str]) -> None:
        self.messages[name] = message
        local = path[1:]
        self.comments[(name,)] = comments.get(local, "")
        for index, field in enumerate(message.field):
            self.comments[(name, field.name)] = comments.get((*local, 2, index), "")
        for index, nested in enumerate(message.nested_type):
            self._add_message(f"{name}.{nested.name}", nested, (*path, 3, index), comments)
        for nested_enum in message.enum_type:
            self.enums[f"{name}.{nested_enum.name}"] = nested_enum


class SchemaWriter:
    """JSON schemas of messages, in lowerCamelCase or snake_case, collected as components."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.components: dict[str, dict] = {}

    def ref(self, type_name: str, snake: bool) -> dict:
        """A schema for `type_name`: inline for well-known types, else a component reference."""
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        if type_name in self.catalogue.enums:
            return self._enum(type_name)
        key = _component_name(type_name, snake)
        if key not in self.components:
            self.components[key] = {}  # reserved first: messages may be recursive
            self.components[key] = self.message_schema(type_name, snake)
        return {"$ref": f"#/components/schemas/{key}"}

    def message_schema(self, type_name: str, snake: bool, omit: frozenset[str] = frozenset()) -> dict:
        """An object schema for the message's fields (less `omit`, given as proto names)."""
        message = self.catalogue.messages[type_name]
        properties = {}
        for field in message.field:
            if field.name in omit:
                continue
            schema = self.field_schema(field, snake)
            if comment := self.catalogue.comments.get((type_name, field.name)):
                schema = {**schema, "description": comment} if "$ref" not in schema else _described(schema, comment)
            properties[field.name if snake else field.json_name] = schema
        schema: dict = {"type": "object", "properties": properties}
        if comment := self.catalogue.comments.get((type_name,)):
            schema["description"] = comment
        return schema

    def field_schema(self, field: descriptor_pb2.FieldDescriptorProto, snake: bool) -> dict:
        """The schema of one field's JSON value."""
        entry = self._map_entry(field)
        if entry is not None:
            return {"type": "object", "additionalProperties": self.field_schema(entry.field[1], snake)}
        if field.type in (FieldType.TYPE_MESSAGE, FieldType.TYPE_ENUM):
            single = self.ref(field.type_name.lstrip("."), snake)
        else:
            single = dict(SCALARS[field.type])
        if field.label == FieldType.LABEL_REPEATED:
            return {"type": "array", "items": single}
        return single

    def _map_entry(self, field) -> descriptor_pb2.DescriptorProto | None:
        if field.type != FieldType.TYPE_MESSAGE or field.label != FieldType.LABEL_REPEATED:
            return None
        message = self.catalogue.messages.get(field.type_name.lstrip("."))
        return message if message is not None and message.options.map_entry else None

    def _enum(self, type_name: str) -> dict:
        values = [value.name for value in self.catalogue.enums[type_name].value]
        schema: dict = {"type": "string", "enum": values}
        if comment := self.catalogue.comments.get((type_name,)):
            schema["description"] = comment
        return schema


def _clean(comment: str) -> str:
    """A proto comment as one paragraph per blank-line-separated block."""
    return "\n".join(line.strip() for line in comment.strip().splitlines())


def _summary(comment: str) -> str:
    """The first sentence."""
    flat = " ".join(comment.split())
    match = re.match(r"(.+?\.)(\s|$)", flat)
    return match.group(1) if match else flat


def _described(ref: dict, comment: str) -> dict:
    """A reference with its own description (OpenAPI 3.1 allows siblings of $ref)."""
    return {**ref, "description": comment}


def _component_name(type_name: str, snake: bool) -> str:
    return f"snake_case.{type_name}" if snake else type_name


def _path_names(catalogue: Catalogue, request_type: str, template: str, snake: bool) -> dict[str, str]:
    """Field of each `{field}` or `{field=pattern}` variable, and its JSON name as a parameter name."""
    fields = [match.group(1) for match in re.finditer(r"\{([^}=]+)(?:=[^}]*)?\}", template)]
    return {field: _json_name(catalogue, request_type, field, snake) for field in fields}


def _openapi_path(template: str, names: dict[str, str]) -> str:
    return re.sub(r"\{([^}=]+)(?:=[^}]*)?\}", lambda m: "{" + names[m.group(1)] + "}", template)


def _json_name(catalogue: Catalogue, type_name: str, field_name: str, snake: bool) -> str:
    if snake:
        return field_name
    message = catalogue.messages[type_name]
    return next(f.json_name for f in message.field if f.name == field_name)


def _bindings(rule) -> list[tuple[str, str, str]]:
    """(method, template, body) of a rule and its additional bindings."""
    found = []
    for binding in (rule, *rule.additional_bindings):
        pattern = binding.WhichOneof("pattern")
        if pattern and pattern != "custom":
            found.append((pattern, getattr(binding, pattern), binding.body))
    return found


def build(descriptor_set: Path = DESCRIPTOR_SET) -> dict:
    """The OpenAPI document for the services in `descriptor_set`."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    catalogue = Catalogue(files)
    writer = SchemaWriter(catalogue)
    paths: dict[str, dict] = {}
    tags = []
    for service, (file_name, service_index) in catalogue.services:
        tags.append({"name": service.name, "description": catalogue.comments[(file_name, "service", service_index)]})
        for method_index, method in enumerate(service.method):
            if not method.options.HasExtension(annotations_pb2.http):
                continue
            summary = catalogue.comments[(file_name, "method", service_index, method_index)]
            bindings = _bindings(method.options.Extensions[annotations_pb2.http])
            for binding, (verb, template, body) in enumerate(bindings):
                snake = template.startswith(SNAKE_PREFIX)
                names = _path_names(catalogue, method.input_type.lstrip("."), template, snake)
                operation = _operation(writer, service, method, names, body, snake, summary)
                if binding:
                    operation["operationId"] += f"_{binding + 1}"
                paths.setdefault(_openapi_path(template, names), {})[verb] = operation
    writer.ref(ERROR, snake=False)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aigen",
            "version": "v1",
            "description": (
                "Image-generation gateway. REST routes are transcoded by Envoy from the aigen.v1 gRPC "
                "services: JSON names are lowerCamelCase (snake_case on /api/ routes; requests accept "
                "both), 64-bit integers are strings, and errors are google.rpc.Status objects "
                '{"code","message","details"} with the HTTP status of the gRPC code.'
            ),
        },
        "servers": [{"url": "http://localhost:19001"}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(writer.components.items()))},
    }


def _operation(
    writer: SchemaWriter, service, method, names: dict[str, str], body: str, snake: bool, summary: str
) -> dict:
    request_type = method.input_type.lstrip(".")
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names.values()
    ]
    operation: dict = {
        "operationId": f"{service.name}_{method.name}",
        "tags": [service.name],
        "summary": _summary(summary),
        "description": summary,
        "parameters": parameters,
    }
    omit = frozenset(names)
    if body == "*":
        schema = writer.message_schema(request_type, snake, omit)
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    else:
        parameters.extend(_query_parameters(writer, request_type, omit, snake))
    operation["responses"] = {
        "200": _success(writer, method, snake),
        "default": {
            "description": "Error: a google.rpc.Status with ErrorInfo, BadRequest, RetryInfo or attempt details.",
            "content": {"application/json": {"schema": writer.ref(ERROR, snake=False)}},
        },
    }
    return operation


def _query_parameters(writer: SchemaWriter, request_type: str, omit: frozenset[str], snake: bool) -> list[dict]:
    message = writer.catalogue.messages[request_type]
    parameters = []
    for field in message.field:
        if field.name in omit or field.type == FieldType.TYPE_MESSAGE:
            continue
        parameter = {
            "name": field.name if snake else field.json_name,
            "in": "query",
            "required": False,
            "schema": writer.field_schema(field, snake),
        }
        if comment := writer.catalogue.comments.get((request_type, field.name)):
            parameter["description"] = comment
        parameters.append(parameter)
    return parameters


def _success(writer: SchemaWriter, method, snake: bool) -> dict:
    response_type = method.output_type.lstrip(".")
    if response_type == HTTP_BODY:
        return {
            "description": "Raw bytes with their own content type.",
            "content": {"*/*": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}},
        }
    schema = writer.ref(response_type, snake)
    if method.server_streaming:
        return {
            "description": f"Server-sent events: one `data: <{response_type} as JSON>` frame per message.",
            "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-schema": schema}},
        }
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def render(document: dict) -> str:
    """The file's text."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    """Write gen/openapi.json, or with --check fail when it differs."""
    text = render(build())
    if "--check" in sys.argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            sys.exit(f"{OUTPUT.relative_to(ROOT)} is stale: run 'make gen'")
        return
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
