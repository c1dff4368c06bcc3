"""A fake Black Forest Labs API on two hosts (ports), as the real one answers from two.

    async with FakeBfl(key="bfl-test") as fake:
        settings = Settings(bfl_api_key="bfl-test", bfl_base_url=fake.base_url)
        fake.fail(402, "Insufficient credits")   # the next submission gets a 402

`POST /v1/{model}` on the API host checks `x-key`, the body against the model's rules (sizes,
fields) and answers `{id, polling_url}`; the polling URL is on the second host (`fake.delivery`),
which answers `GET /v1/get_result?id=` with Pending (and `progress` 0..1) for `polls - 1`
polls, then `finish_status`, and serves `result.sample` under `/samples/`. Submissions are
scripted with `fail`/`malformed`/`slow`; polls with `fail_poll`/`malformed_poll`/`fake.delivery.slow`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal, Self

from aiohttp import web

from .base import FakeServer, Handler, Recorded, json_response, png_bytes, truncated_response

_FLUX2_FIELDS = frozenset(
    {"prompt", "seed", "width", "height", "safety_tolerance", "output_format", "prompt_upsampling"}
    | {"webhook_url", "webhook_secret", "input_image", *(f"input_image_{n}" for n in range(2, 9))}
)
_FLUX_DEV_FIELDS = frozenset(
    {"prompt", "image_prompt", "width", "height", "steps", "prompt_upsampling", "seed", "guidance"}
    | {"safety_tolerance", "output_format", "webhook_url", "webhook_secret"}
)


@dataclass(frozen=True)
class ModelRules:
    """What one endpoint accepts."""

    fields: frozenset[str]
    multiple: int
    min_side: int
    max_side: int | None
    max_pixels: int | None


RULES = {
    "flux-2-pro": ModelRules(_FLUX2_FIELDS, 16, 64, None, 2048 * 2048),
    "flux-2-flex": ModelRules(_FLUX2_FIELDS | {"steps", "guidance"}, 16, 64, None, 2048 * 2048),
    "flux-2-max": ModelRules(_FLUX2_FIELDS, 16, 64, None, 2048 * 2048),
    "flux-dev": ModelRules(_FLUX_DEV_FIELDS, 32, 256, 1440, None),
}


@dataclass
class FakeTask:
    """One task's state."""

    id: str
    model: str
    body: dict[str, Any]
    finish_status: str
    polls: int = 0


class FakeBfl(FakeServer):
    """The API host: task submission. `delivery` is the polling and sample host."""

    def __init__(self, key: str | None = "bfl-test", *, polls: int = 3) -> None:
        super().__init__()
        self.key = key
        self.polls = polls
        self.report_progress = True
        self.finish_status = "Ready"
        self.image = png_bytes(32, 32)
        self.download: Literal["ok", "truncated", "missing"] = "ok"
        self.tasks: dict[str, FakeTask] = {}
        self.delivery = _DeliveryHost(self)
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """What BFL_BASE_URL should be."""
        return self.origin

    @property
    def submissions(self) -> list[Recorded]:
        """Every submission received."""
        return [r for r in self.requests if r.method == "POST"]

    @property
    def last_body(self) -> dict[str, Any]:
        """The JSON body of the last submission."""
        return self.submissions[-1].json

    @property
    def polls_received(self) -> list[Recorded]:
        """Every poll received by the delivery host."""
        return [r for r in self.delivery.requests if r.path == "/v1/get_result"]

    @property
    def downloads(self) -> list[Recorded]:
        """Every sample download received by the delivery host."""
        return [r for r in self.delivery.requests if r.path.startswith("/samples/")]

    def finish(self, status: str) -> Self:
        """How tasks submitted from now on end: Ready, Request Moderated, Content Moderated, Error, ..."""
        self.finish_status = status
        return self

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        await self.delivery.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.delivery.__aexit__(*exc_info)
        await super().__aexit__(*exc_info)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/{model}", self.dispatch)]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if self.key is not None and request.headers.get("x-key") != self.key:
            self.requests.append(await self._record(request))
            return json_response(403, {"detail": "Not authenticated - Invalid Authentication"})
        return await super().dispatch(request)

    async def default_reply(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        model = recorded.match["model"]
        rules = RULES.get(model)
        if rules is None:
            return json_response(404, {"detail": "Not Found"})
        problems = _validate(recorded.json, rules)
        if problems:
            return json_response(422, {"detail": problems})
        task_id = f"task-{next(self._ids):04d}"
        self.tasks[task_id] = FakeTask(task_id, model, recorded.json, self.finish_status)
        polling_url = f"{self.delivery.origin}/v1/get_result?id={task_id}"
        return json_response(200, {"id": task_id, "polling_url": polling_url, "cost": 3.0, "output_mp": 1.05})

    # Reply factories and shortcuts.
    @staticmethod
    def error_reply(status: int, detail: Any = "", *, retry_after: str | None = None) -> Handler:
        """A FastAPI-style error body `{"detail": ...}`, with Retry-After when asked."""
        headers = {"Retry-After": retry_after} if retry_after is not None else None

        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            return json_response(status, {"detail": detail or f"fake error {status}"}, headers)

        return handler

    @staticmethod
    def malformed_reply() -> Handler:
        async def handler(request: web.Request, recorded: Recorded) -> web.StreamResponse:
            return web.Response(status=200, text='{"id": "task", "polling_url": ', content_type="application/json")

        return handler

    def fail(self, status: int, detail: Any = "", **options: Any) -> Self:
        return self.script(self.error_reply(status, detail, **options))

    def malformed(self) -> Self:
        return self.script(self.malformed_reply())

    def fail_poll(self, status: int, detail: Any = "", **options: Any) -> Self:
        self.delivery.script(self.error_reply(status, detail, **options))
        return self

    def malformed_poll(self) -> Self:
        self.delivery.script(self.malformed_reply())
        return self

    # Polling, on the delivery host.
    def poll_answer(self, task_id: str) -> dict[str, Any]:
        task = self.tasks.get(task_id)
        if task is None:
            return {"id": task_id, "status": "Task not found", "result": None, "progress": None, "details": None}
        task.polls += 1
        if task.polls < self.polls:
            progress = round(task.polls / self.polls, 3) if self.report_progress else None
            return {"id": task_id, "status": "Pending", "result": None, "progress": progress, "details": None}
        answer: dict[str, Any] = {"id": task_id, "status": task.finish_status, "result": None, "progress": None}
        answer["details"] = _details(task.finish_status)
        if task.finish_status == "Ready":
            answer["result"] = {
                "sample": f"{self.delivery.origin}/samples/{task_id}/sample.png?se=2026-11-22&sig=fake",
                "prompt": task.body.get("prompt"),
                "seed": task.body.get("seed", 42),
                "start_time": 1763798400.0,
                "end_time": 1763798405.0,
                "duration": 5.0,
            }
        return answer


class _DeliveryHost(FakeServer):
    """The second host: `GET /v1/get_result` (with `x-key`) and the signed samples (without)."""

    def __init__(self, api: FakeBfl) -> None:
        super().__init__()
        self.api = api

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/get_result", self.dispatch), web.get("/samples/{id}/{file}", self.serve_sample)]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if self.api.key is not None and request.headers.get("x-key") != self.api.key:
            self.requests.append(await self._record(request))
            return json_response(403, {"detail": "Not authenticated - Invalid Authentication"})
        return await super().dispatch(request)

    async def default_reply(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        return json_response(200, self.api.poll_answer(request.query.get("id", "")))

    async def serve_sample(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await self._record(request))
        if self.api.download == "missing":
            return web.Response(status=403, text="AuthenticationFailed: signature expired")
        if self.api.download == "truncated":
            return await truncated_response(request, 200, self.api.image, "image/png")
        return web.Response(body=self.api.image, content_type="image/png")


def _details(status: str) -> Any:
    if status.endswith("Moderated"):
        return {"Moderation Reasons": ["Derivative Works Filter"]}
    if status == "Error":
        return {"error": "Internal processing error"}
    return None


def _validate(body: Any, rules: ModelRules) -> list[dict[str, Any]]:
    """FastAPI-style validation errors for a submission."""
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        return [{"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]
    problems = [
        {"loc": ["body", name], "msg": "extra fields not permitted", "type": "value_error.extra"}
        for name in body
        if name not in rules.fields
    ]
    width, height = body.get("width", 1024), body.get("height", 1024)
    for name, side in (("width", width), ("height", height)):
        if side % rules.multiple or side < rules.min_side or (rules.max_side and side > rules.max_side):
            problems.append({"loc": ["body", name], "msg": f"invalid {name} {side}", "type": "value_error"})
    if rules.max_pixels and width * height > rules.max_pixels:
        problems.append({"loc": ["body"], "msg": "image exceeds the pixel limit", "type": "value_error"})
    return problems
