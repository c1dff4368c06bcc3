"""A fake Replicate API speaking the real wire format, for driving the official SDK.

    async with FakeReplicate(token="r8_test") as fake:
        settings = Settings(replicate_api_token="r8_test", replicate_base_url=fake.base_url)
        fake.fail(429, retry_after="7")        # the next API request gets a 429

Routes: `POST /v1/models/{owner}/{name}/predictions`, `GET /v1/predictions/{id}`,
`POST /v1/predictions/{id}/cancel`, `POST /v1/files`, and the outputs under `/outputs/`
(plain http on 127.0.0.1, which the SDK leaves as strings). Inputs are checked against each
model's schema (fields and aspect ratio enum) like Replicate does, answering 422 otherwise.

A prediction starts as `starting`, is `processing` for `polls - 1` reloads with tqdm lines
advancing in its logs, then ends as `finish_status` (succeeded, failed or canceled). API replies
can be scripted in order (`fail`, `malformed`, `slow`, `script`); outputs follow `download`
("ok", "chunked", "truncated" or "missing").
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from aiohttp import web

from .base import FakeServer, FormPart, Handler, Recorded, json_response, png_bytes, truncated_response

_COMMON_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4")


@dataclass(frozen=True)
class ModelSchema:
    """What one model accepts: its input fields and aspect ratio enum, and its output shape."""

    fields: frozenset[str]
    ratios: tuple[str, ...]
    list_output: bool = False


SCHEMAS = {
    "black-forest-labs/flux-1.1-pro": ModelSchema(
        frozenset(
            {"prompt", "aspect_ratio", "image_prompt", "seed", "width", "height"}
            | {"output_format", "output_quality", "safety_tolerance", "prompt_upsampling"}
        ),
        ("custom", *_COMMON_RATIOS),
    ),
    "black-forest-labs/flux-dev": ModelSchema(
        frozenset(
            {"prompt", "aspect_ratio", "image", "prompt_strength", "num_outputs", "num_inference_steps"}
            | {"guidance", "seed", "output_format", "output_quality", "disable_safety_checker"}
            | {"go_fast", "megapixels"}
        ),
        (*_COMMON_RATIOS, "21:9", "9:21"),
        list_output=True,
    ),
    "recraft-ai/recraft-v3": ModelSchema(
        frozenset({"prompt", "size", "aspect_ratio", "style"}),
        ("Not set", *_COMMON_RATIOS, "2:1", "1:2", "7:5", "5:7", "5:3", "3:5"),
    ),
    "ideogram-ai/ideogram-v3-turbo": ModelSchema(
        frozenset(
            {"prompt", "aspect_ratio", "resolution", "magic_prompt_option", "image", "mask"}
            | {"style_type", "style_reference_images", "seed"}
        ),
        (*_COMMON_RATIOS, "16:10", "10:16", "2:1", "1:2", "3:1", "1:3"),
    ),
}

OutputStyle = Literal["auto", "url", "list", "data"]


@dataclass
class FakePrediction:
    """One prediction's state."""

    id: str
    model: str
    input: dict[str, Any]
    finish_status: str
    finish_error: str | None
    output_style: OutputStyle
    status: str = "starting"
    reloads: int = 0
    logs: str = ""
    output: Any = None
    error: str | None = None
    log_lines: list[str] = field(default_factory=list)


def tqdm_line(current: int, total: int) -> str:
    """A progress line as tqdm writes it."""
    percent = current * 100 // total
    filled = percent // 10
    bar = "\u2588" * filled + " " * (10 - filled)
    return f"{percent:3d}%|{bar}| {current}/{total} [00:0{current % 10}<00:0{(total - current) % 10}, 3.51it/s]"


def problem(status: int, title: str, detail: str) -> dict[str, Any]:
    """An RFC 7807 problem body, as Replicate sends on errors."""
    return {"type": f"https://replicate.com/docs/errors#{status}", "title": title, "status": status, "detail": detail}


class FakeReplicate(FakeServer):
    """A scriptable Replicate API server."""

    def __init__(self, token: str | None = "r8_test", *, polls: int = 3, steps: int = 28) -> None:
        super().__init__()
        self.token = token
        self.polls = polls  # reloads until the prediction ends
        self.steps = steps  # tqdm total
        self.log_progress = True
        self.finish_status = "succeeded"
        self.finish_error: str | None = None
        self.output_style: OutputStyle = "auto"
        self.image = png_bytes(32, 24)
        self.download: Literal["ok", "chunked", "truncated", "missing"] = "ok"
        self.predictions: dict[str, FakePrediction] = {}
        self.uploads: dict[str, FormPart] = {}
        self.downloads: list[Recorded] = []
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """What REPLICATE_BASE_URL should be."""
        return self.origin

    # Views of what was received.
    @property
    def created(self) -> list[Recorded]:
        """Every prediction creation request."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/predictions")]

    @property
    def last_input(self) -> dict[str, Any]:
        """The `input` of the last prediction created."""
        return self.created[-1].json["input"]

    @property
    def reloads(self) -> list[Recorded]:
        """Every prediction GET."""
        return [r for r in self.requests if r.method == "GET" and r.path.startswith("/v1/predictions/")]

    @property
    def cancels(self) -> list[str]:
        """Ids of the predictions whose cancel endpoint was called."""
        return [r.match["id"] for r in self.requests if r.path.endswith("/cancel")]

    # Finishing and output options for the predictions created from now on.
    def finish(self, status: str = "succeeded", error: str | None = None) -> Self:
        """How predictions end: succeeded, failed (with `error`) or canceled."""
        self.finish_status, self.finish_error = status, error
        return self

    # Server plumbing.
    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/models/{owner}/{name}/predictions", self.dispatch),
            web.get("/v1/predictions/{id}", self.dispatch),
            web.post("/v1/predictions/{id}/cancel", self.dispatch),
            web.post("/v1/files", self.dispatch),
            web.get("/outputs/{id}/{file}", self.serve_output),
        ]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            self.requests.append(await self._record(request))
            detail = "You did not pass a valid authentication token"
            return json_response(401, problem(401, "Unauthenticated", detail))
        return await super().dispatch(request)

    async def default_reply(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        if request.path == "/v1/files":
            return self._upload(recorded)
        if request.method == "POST" and request.path.endswith("/predictions"):
            return self._create(recorded)
        prediction = self.predictions.get(recorded.match["id"])
        if prediction is None:
            return json_response(404, problem(404, "Not found", "The requested resource could not be found."))
        if request.path.endswith("/cancel"):
            if prediction.status not in ("succeeded", "failed", "canceled"):
                prediction.status = "canceled"
            return json_response(200, self._json(prediction))
        self._advance(prediction)
        return json_response(200, self._json(prediction))

    async def serve_output(self, request: web.Request) -> web.StreamResponse:
        """An output file, outside the reply script."""
        recorded = await self._record(request)
        self.downloads.append(recorded)
        if self.download == "missing":
            return web.Response(status=404, text="not found")
        if self.download == "truncated":
            return await truncated_response(request, 200, self.image, "image/png")
        if self.download == "chunked":
            response = web.StreamResponse(headers={"Content-Type": "image/png"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            await response.write(self.image)
            await response.write_eof()
            return response
        return web.Response(body=self.image, content_type="image/png")

    # Reply factories.
    def error_reply(self, status: int, detail: str = "", *, title: str = "", retry_after: str | None = None) -> Handler:
        """A problem+json error, with Retry-After when asked."""
        body = problem(status, title or f"HTTP {status}", detail or f"fake error {status}")
        headers = {"Retry-After": retry_after} if retry_after is not None else None

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            return json_response(status, body, headers)

        return handler

    # Shortcuts that queue one reply.
    def fail(self, status: int, detail: str = "", **options: Any) -> Self:
        return self.script(self.error_reply(status, detail, **options))

    def malformed(self) -> Self:
        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            return web.Response(status=201, text='{"id": "abc", "status": ', content_type="application/json")

        return self.script(handler)

    # Internals.
    def _create(self, recorded: Recorded) -> web.Response:
        model = f"{recorded.match['owner']}/{recorded.match['name']}"
        schema = SCHEMAS.get(model)
        if schema is None:
            return json_response(404, problem(404, "Not found", f"Model {model} does not exist."))
        payload = (recorded.json or {}).get("input")
        invalid = _invalid_fields(payload, schema)
        if invalid:
            body = problem(422, "Input validation failed", "".join(f"- {text}\n" for text in invalid))
            return json_response(422, {**body, "invalid_fields": [{"description": text} for text in invalid]})
        prediction_id = f"fake{next(self._ids):04d}pred"
        prediction = FakePrediction(
            prediction_id, model, payload, self.finish_status, self.finish_error, self.output_style
        )
        self.predictions[prediction_id] = prediction
        return json_response(201, self._json(prediction))

    def _advance(self, prediction: FakePrediction) -> None:
        if prediction.status in ("succeeded", "failed", "canceled"):
            return
        prediction.reloads += 1
        done = prediction.reloads >= self.polls
        if self.log_progress:
            current = self.steps if done else self.steps * prediction.reloads // self.polls
            prediction.log_lines.append(tqdm_line(current, self.steps))
            prediction.logs = "Using seed: 1234\n" + "\n".join(prediction.log_lines) + "\n"
        if not done:
            prediction.status = "processing"
            return
        prediction.status = prediction.finish_status
        if prediction.status == "failed":
            prediction.error = prediction.finish_error or "Prediction failed."
        if prediction.status == "succeeded":
            prediction.output = self._output(prediction)

    def _output(self, prediction: FakePrediction) -> Any:
        schema = SCHEMAS[prediction.model]
        style = prediction.output_style
        if style == "data":
            return "data:image/png;base64," + base64.b64encode(self.image).decode()
        url = f"{self.origin}/outputs/{prediction.id}/out-0.png"
        if style == "list" or (style == "auto" and schema.list_output):
            return [url]
        return url

    def _upload(self, recorded: Recorded) -> web.Response:
        content = recorded.files("content")
        if not content:
            return json_response(400, problem(400, "Bad request", "missing file part 'content'"))
        part = content[0]
        file_id = f"file{next(self._ids):04d}"
        self.uploads[file_id] = part
        return json_response(
            201,
            {
                "id": file_id,
                "name": part.filename,
                "content_type": part.content_type,
                "size": len(part.data),
                "etag": hashlib.md5(part.data).hexdigest(),
                "checksums": {"sha256": hashlib.sha256(part.data).hexdigest()},
                "metadata": {},
                "created_at": "2026-11-22T08:00:00Z",
                "expires_at": "2026-11-23T08:00:00Z",
                "urls": {"get": f"{self.origin}/v1/files/{file_id}"},
            },
        )

    def _json(self, prediction: FakePrediction) -> dict[str, Any]:
        urls = {
            "get": f"{self.origin}/v1/predictions/{prediction.id}",
            "cancel": f"{self.origin}/v1/predictions/{prediction.id}/cancel",
            "web": f"https://replicate.com/p/{prediction.id}",
        }
        done = prediction.status in ("succeeded", "failed", "canceled")
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": "dp-" + hashlib.sha256(prediction.model.encode()).hexdigest()[:32],
            "status": prediction.status,
            "input": prediction.input,
            "logs": prediction.logs,
            "output": prediction.output,
            "error": prediction.error,
            "metrics": {"predict_time": 1.5} if prediction.status == "succeeded" else {},
            "data_removed": False,
            "source": "api",
            "created_at": "2026-11-22T08:00:00.000Z",
            "started_at": "2026-11-22T08:00:00.500Z" if prediction.status != "starting" else None,
            "completed_at": "2026-11-22T08:00:02.000Z" if done else None,
            "urls": urls,
        }


def _invalid_fields(payload: Any, schema: ModelSchema) -> list[str]:
    if not isinstance(payload, dict) or not isinstance(payload.get("prompt"), str):
        return ["input: prompt is required"]
    problems = [f"input: Additional property {name} is not allowed" for name in payload if name not in schema.fields]
    ratio = payload.get("aspect_ratio")
    if ratio is not None and ratio not in schema.ratios:
        allowed = ", ".join(f'"{r}"' for r in schema.ratios)
        problems.append(f"input.aspect_ratio: aspect_ratio must be one of the following: {allowed}")
    return problems
