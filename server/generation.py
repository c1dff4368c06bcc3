"""Generations end to end: validate, resolve defaults, run the engine, persist the turn.

`prepare` does everything that can fail fast (validation, the session's busy lease), so
streaming RPCs report those failures as ordinary gRPC errors before their first message;
`execute` runs the chain and always releases the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aigen.server import access, errors
from aigen.server.config import Settings
from aigen.server.convert import layer_proto
from aigen.server.engine import FallbackEngine, Plan, Served, build_chain
from aigen.server.ids import new_id
from aigen.server.imaging import (
    canonical_aspect_ratio,
    canonical_image_size,
    nearest_ratio,
    parse_size,
    target_dimensions,
)
from aigen.server.layered import LayeredEdit, LayeredSessions
from aigen.server.models import ModelResolver
from aigen.server.observability.observer import NULL_OBSERVER, GenerationObserver
from aigen.server.progress import ProgressReporter
from aigen.server.providers.base import ALL_ASPECT_RATIOS, ImageRequest, InputImage
from aigen.server.references import decode_reference_images
from aigen.server.store.base import Store
from aigen.server.store.records import (
    AttemptRecord,
    ImageRecord,
    ProjectRecord,
    SessionRecord,
    TurnRecord,
    UsageRecord,
)
from aigen.v1 import types_pb2

QUALITIES = ("", "auto", "low", "medium", "high")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated generation ready to run; holds the session lease when in a session."""

    kind: str  # "generate" | "iterate" | "image"
    text: str
    plan: Plan
    requested: tuple[str, str]
    omit_image_data: bool
    session: SessionRecord | None = None
    started: float = 0.0
    project: str = "default"  # charged for the image
    billing_mode: str = "owner_pays"


class Generations:
    """The generation use cases behind GenerationService."""

    def __init__(
        self,
        settings: Settings,
        resolver: ModelResolver,
        store: Store,
        engine: FallbackEngine,
        layered: LayeredSessions,
        base_url: str,
        observer: GenerationObserver = NULL_OBSERVER,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.store = store
        self.engine = engine
        self.layered = layered
        self.base_url = base_url
        self.observer = observer

    # Preparation --------------------------------------------------------------------------
    async def prepare(self, kind: str, request, client_deadline_s: float | None) -> Prepared:
        """Validate `request` and, in a session, take its busy lease (ABORTED when taken)."""
        text_field = "instructions" if kind == "iterate" else "prompt"
        text = self._text(getattr(request, text_field), text_field)
        principal = access.current()
        project = principal.project
        session = await self.store.get_session(request.session_id, principal.scope) if kind != "image" else None
        if kind == "image" and request.project and principal.scope not in (None, request.project):
            raise errors.project_not_found(request.project)
        config = session.config if session else None
        requested = self.resolver.resolve(
            request.provider,
            request.model,
            (config.provider, config.model) if config else ("", ""),
            (project.default_provider, project.default_model),
        )
        _check_allowed(requested, project)
        fallback = self._fallback(request.fallback, config.fallback_chain if config else ())
        chain = build_chain(requested, fallback, self.resolver.extra_chain())
        references = await self._references(request)
        image_request = self._image_request(kind, request, text, config, references)
        deadline = time.monotonic() + self._timeout(request, client_deadline_s)
        plan = Plan(
            request=image_request,
            chain=chain,
            deadline=deadline,
            allowed=project.allowed_providers,
            keep=None if _edits_layers(kind, session) else self.store.blob_writer(),
        )
        if session is not None:
            plan = await self._with_session_inputs(kind, session, plan, request)
            pending = {
                "kind": kind,
                "text": text,
                "requested_provider": requested[0],
                "requested_model": requested[1],
                "aspect_ratio": plan.request.aspect_ratio,
                "image_size": plan.request.image_size,
            }
            if not await self.store.try_begin_generation(
                session.session_id, deadline - time.monotonic() + self.settings.lease_margin_s, pending
            ):
                raise errors.SessionBusy(f"session {session.session_id} is already generating; retry when it is ready")
        return Prepared(
            kind=kind,
            text=text,
            plan=plan,
            requested=requested,
            omit_image_data=request.omit_image_data,
            session=session,
            started=time.monotonic(),
            project=_usage_project(principal, session, request),
            billing_mode=project.billing_mode,
        )

    async def _references(self, request) -> tuple[InputImage, ...]:
        """The decoded reference images, in a worker thread (none: no hand-off)."""
        if not request.reference_images and not request.reference_image_data:
            return ()
        return await asyncio.to_thread(
            decode_reference_images,
            request.reference_images,
            request.reference_image_data,
            max_count=self.settings.max_reference_images,
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
        )

    def _text(self, value: str, field: str) -> str:
        if not value.strip():
            raise errors.InvalidArgument(field, "is required")
        if len(value) > self.settings.max_prompt_chars:
            raise errors.InvalidArgument(field, f"is {len(value)} characters; at most {self.settings.max_prompt_chars}")
        return value

    def _fallback(self, requested: Sequence[types_pb2.ModelRef], session_chain: Sequence[tuple[str, str]]):
        if requested:
            return [
                self.resolver.resolve_entry(ref.provider, ref.model, f"fallback[{i}].")
                for i, ref in enumerate(requested)
            ]
        if session_chain:
            return list(session_chain)
        return [(entry.provider, entry.model) for entry in self.settings.fallback_chain]

    def _image_request(self, kind: str, request, text: str, config, references: tuple[InputImage, ...]) -> ImageRequest:
        if request.quality not in QUALITIES:
            raise errors.InvalidArgument(
                "quality", f"unknown quality {request.quality!r}; use low, medium, high or auto"
            )
        width = height = 0
        if request.size:
            width, height = parse_size(request.size, self.settings.max_image_pixels)
        if request.aspect_ratio:
            ratio = canonical_aspect_ratio(request.aspect_ratio)
        elif request.size:
            ratio = nearest_ratio(width / height, ALL_ASPECT_RATIOS)
        else:
            ratio = (config.aspect_ratio if config else "") or "1:1"
        tier = (
            canonical_image_size(request.image_size)
            if request.image_size
            else ((config.image_size if config else "") or "1K")
        )
        if not request.size:
            width, height = target_dimensions(ratio, tier)
        return ImageRequest(
            prompt=text,
            model="",
            aspect_ratio=ratio,
            image_size=tier,
            width=width,
            height=height,
            size=request.size,
            quality=request.quality or "auto",
            seed=request.seed or None,
            reference_images=references,
            keeps_state=kind != "image",  # sessionless images have no next turn
        )

    def _timeout(self, request, client_deadline_s: float | None) -> float:
        timeout = self.settings.generation_timeout_s
        if request.HasField("timeout"):
            asked = request.timeout.ToTimedelta().total_seconds()
            if asked <= 0:
                raise errors.InvalidArgument("timeout", "must be positive")
            timeout = min(timeout, asked)
        if client_deadline_s is not None:
            timeout = min(timeout, client_deadline_s)
        return timeout

    async def _with_session_inputs(self, kind: str, session: SessionRecord, plan: Plan, asked) -> Plan:
        if kind != "iterate":
            return plan
        if not session.current_image_id:
            raise errors.FailedPrecondition(
                f"session {session.session_id} has no image yet; call generate before iterate"
            )
        image = await self.store.get_image(session.current_image_id)
        data = await self.store.read_blob(image.sha256)
        last = await self.store.last_completed_turn(session.session_id)
        mask = None
        edit = plan.request
        if session.mode == "layered":
            if await self.store.list_layers(session.session_id):
                edit = _at_stack_size(edit, asked, (image.width, image.height))
            mask_png = await self.layered.edit_mask(session, (image.width, image.height))
            mask = InputImage(mask_png, "image/png") if mask_png else None
        request = dataclasses.replace(
            edit,
            source_image=InputImage(data, image.content_type),
            mask=mask,
            provider_state=last.provider_state if last else None,
        )
        return dataclasses.replace(plan, request=request, state_provider=last.served_provider if last else "")

    # Execution ----------------------------------------------------------------------------
    async def execute(self, prepared: Prepared, reporter: ProgressReporter) -> types_pb2.GenerationResult:
        """Run the chain, persist the image (and the turn), release the session."""
        attempts: list[AttemptRecord] = []
        self.observer.generation_started(prepared)
        try:
            served = await self.engine.run(prepared.plan, reporter, attempts)
            reporter.event(types_pb2.GenerationEvent.PHASE_PERSISTING, "storing the image")
            return await self._persist(prepared, served)
        except errors.AigenError as exc:
            # A deadline that expired is a cancelled turn (Turn.STATUS_CANCELLED), not a failure.
            status = "cancelled" if isinstance(exc, (errors.DeadlineExceeded, errors.Cancelled)) else "failed"
            await asyncio.shield(self._record_failure(prepared, status, exc, attempts))
            raise
        except asyncio.CancelledError:
            await asyncio.shield(
                self._record_failure(prepared, "cancelled", errors.Cancelled("cancelled by the caller"), attempts)
            )
            raise
        finally:
            self.observer.generation_ended(prepared)
            if prepared.session is not None:
                await asyncio.shield(self.store.end_generation(prepared.session.session_id))

    async def _persist(self, prepared: Prepared, served: Served) -> types_pb2.GenerationResult:
        session = prepared.session
        data, content_type, width, height = served.result.data, served.mime_type, served.width, served.height
        edit = await self._layered_edit(prepared, data)
        if edit is not None:
            data, content_type, width, height = edit.image_png, "image/png", edit.width, edit.height
        sha = served.sha256 if edit is None and served.sha256 else await self.store.write_blob(data)
        image = ImageRecord(
            image_id=new_id("img"),
            sha256=sha,
            content_type=content_type,
            width=width,
            height=height,
            size_bytes=len(data),
            created_at=time.time(),
            session_id=session.session_id if session else None,
        )
        credits = self._credits(served)
        usage = UsageRecord(
            project_id=prepared.project,
            day=time.strftime("%Y-%m-%d", time.gmtime()),
            provider=served.profile.provider,
            model=served.profile.name,
            billing_mode=prepared.billing_mode,
            credits=credits,
        )
        turn, layer_records = None, None
        if session is None:
            await self.store.insert_image(image, usage)
        else:
            layer_images: list[ImageRecord] = []
            if edit is not None:
                kept = {r.layer_id: r for r in await self.store.list_layers(session.session_id) if r.locked}
                layer_images, layer_records = await self.layered.store_stack(session.session_id, edit.stack, kept)
            elif session.mode == "layered" and prepared.kind == "generate":
                layer_records = []  # a new image starts without layers
            turn = await self.store.commit_turn(
                self._turn(prepared, served, image, credits),
                [image, *layer_images],
                current_image_id=image.image_id,
                layers=layer_records,
                usage=usage,
            )
        self.observer.generation_served(prepared, served, image, credits)
        result = self._result(prepared, served, image, credits, turn, data)
        if edit is not None:
            result.layers.extend(layer_proto(r, self.base_url) for r in layer_records)
            result.lock_drift.CopyFrom(edit.drift)
        return result

    def _credits(self, served: Served) -> int:
        """The configured price of the serving model, else its profile's."""
        prices = self.settings.credits
        provider, model = served.profile.provider, served.profile.name
        return prices.get(f"{provider}/{model}", prices.get(f"{provider}/*", served.profile.credits_per_image))

    async def _layered_edit(self, prepared: Prepared, data: bytes) -> LayeredEdit | None:
        """Locked layers restored over an iterate's output, in a layered session with layers."""
        session = prepared.session
        if session is None or session.mode != "layered" or prepared.kind != "iterate":
            return None
        current = await self.store.get_image(session.current_image_id)
        return await self.layered.apply_edit(session, data, (current.width, current.height))

    def _turn(self, prepared: Prepared, served: Served, image: ImageRecord, credits: int) -> TurnRecord:
        request = prepared.plan.request
        return TurnRecord(
            turn_id=new_id("turn"),
            session_id=prepared.session.session_id,
            kind=prepared.kind,
            status="completed",
            created_at=time.time(),
            prompt=prepared.text if prepared.kind == "generate" else "",
            instructions=prepared.text if prepared.kind == "iterate" else "",
            requested_provider=prepared.requested[0],
            requested_model=prepared.requested[1],
            served_provider=served.profile.provider,
            served_model=served.profile.name,
            attempts=served.attempts,
            duration_s=time.monotonic() - prepared.started,
            image_id=image.image_id,
            credits_used=credits,
            degradations=served.degradations,
            aspect_ratio=request.aspect_ratio,
            image_size=request.image_size,
            provider_state=served.result.provider_state,
        )

    async def _record_failure(
        self, prepared: Prepared, status: str, error: errors.AigenError, walked: Sequence[AttemptRecord] = ()
    ) -> None:
        self.observer.generation_failed(prepared, status)
        if prepared.session is None:
            return
        attempts = tuple(walked) or error.attempts
        request = prepared.plan.request
        turn = TurnRecord(
            turn_id=new_id("turn"),
            session_id=prepared.session.session_id,
            kind=prepared.kind,
            status=status,
            created_at=time.time(),
            prompt=prepared.text if prepared.kind == "generate" else "",
            instructions=prepared.text if prepared.kind == "iterate" else "",
            requested_provider=prepared.requested[0],
            requested_model=prepared.requested[1],
            attempts=attempts,
            duration_s=time.monotonic() - prepared.started,
            error=error.message,
            aspect_ratio=request.aspect_ratio,
            image_size=request.image_size,
        )
        with contextlib.suppress(errors.NotFound):  # the session was deleted meanwhile
            await self.store.commit_turn(turn)

    def _result(
        self,
        prepared: Prepared,
        served: Served,
        image: ImageRecord,
        credits: int,
        turn: TurnRecord | None,
        data: bytes,
    ) -> types_pb2.GenerationResult:
        from aigen.server.convert import attempt_proto, duration, image_url

        served_pair = (served.profile.provider, served.profile.name)
        result = types_pb2.GenerationResult(
            image_id=image.image_id,
            url=image_url(self.base_url, image.image_id),
            content_type=image.content_type,
            width=image.width,
            height=image.height,
            provider=served_pair[0],
            model=served_pair[1],
            revised_prompt=served.result.revised_prompt,
            credits_used=credits,
            attempts=[attempt_proto(a) for a in served.attempts],
            degradations=list(served.degradations),
            session_id=prepared.session.session_id if prepared.session else "",
            turn_id=turn.turn_id if turn else "",
            duration=duration(time.monotonic() - prepared.started),
            aspect_ratio=prepared.plan.request.aspect_ratio,
        )
        if not prepared.omit_image_data:
            result.data = data
        if served_pair != prepared.requested:
            result.fallback_used.CopyFrom(types_pb2.ModelRef(provider=served_pair[0], model=served_pair[1]))
            result.original_request.CopyFrom(
                types_pb2.ModelRef(provider=prepared.requested[0], model=prepared.requested[1])
            )
        return result


def _at_stack_size(edit: ImageRequest, asked, size: tuple[int, int]) -> ImageRequest:
    """An edit in a layered session with layers, requested at the size of its layer stack.

    Locked layers can only be kept at that size: when the session defaults give another one,
    the stack's size and nearest aspect ratio are used; when the request itself asks for
    another size (`size`, `aspectRatio` or `imageSize`), it is refused naming the field.
    """
    width, height = size
    if (edit.width, edit.height) == size:
        return edit
    for field, value in (("size", asked.size), ("aspectRatio", asked.aspect_ratio), ("imageSize", asked.image_size)):
        if value:
            raise errors.InvalidArgument(
                field,
                f"{value} gives {edit.width}x{edit.height} but the layers of this session are {width}x{height}; "
                "leave it out to edit at the layers' size, or generate a new image to change the size",
            )
    return dataclasses.replace(
        edit, width=width, height=height, aspect_ratio=nearest_ratio(width / height, ALL_ASPECT_RATIOS)
    )


def _edits_layers(kind: str, session: SessionRecord | None) -> bool:
    """True when the provider's output is not the image stored (locked layers are restored over it)."""
    return kind == "iterate" and session is not None and session.mode == "layered"


def _check_allowed(pair: tuple[str, str], project: ProjectRecord) -> None:
    """PERMISSION_DENIED naming the allowed providers when the project may not use `pair`."""
    allowed = project.allowed_providers
    if allowed and pair[0] not in allowed:
        raise errors.PermissionDenied(
            f"provider {pair[0]} is not allowed for project {project.project_id}; allowed: {', '.join(allowed)}"
        )


def _usage_project(principal: access.Principal, session: SessionRecord | None, request) -> str:
    """The project an image is charged to."""
    if principal.scope is not None:
        return principal.scope
    if session is not None:
        return session.project
    return getattr(request, "project", "") or principal.project.project_id
