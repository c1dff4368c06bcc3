"""SessionService."""

from __future__ import annotations

import time

import grpc
from google.protobuf import empty_pb2

from aigen.server import access, errors
from aigen.server.convert import session_proto
from aigen.server.ids import new_id
from aigen.server.imaging import canonical_aspect_ratio, canonical_image_size
from aigen.server.models import ModelResolver
from aigen.server.store.base import Store
from aigen.server.store.records import SessionConfigRecord, SessionRecord
from aigen.v1 import session_service_pb2 as pb2
from aigen.v1 import session_service_pb2_grpc as pb2_grpc
from aigen.v1 import types_pb2

MODES = ("single", "layered")
DEFAULT_PROJECT = "default"


class SessionServicer(pb2_grpc.SessionServiceServicer):
    """Create, read, list and delete sessions."""

    def __init__(self, store: Store, resolver: ModelResolver, base_url: str) -> None:
        self.store = store
        self.resolver = resolver
        self.base_url = base_url

    async def CreateSession(self, request: pb2.CreateSessionRequest, context: grpc.aio.ServicerContext) -> pb2.Session:
        """Validate the config and create a ready session."""
        mode = (request.mode or "single").strip().lower()
        if mode not in MODES:
            raise errors.InvalidArgument("mode", f"unknown mode {request.mode!r}; use single or layered")
        now = time.time()
        session = SessionRecord(
            session_id=new_id("sess"),
            project=_project_for_new_session(request.project),
            mode=mode,
            config=self._config(request.config),
            created_at=now,
            updated_at=now,
        )
        await self.store.create_session(session)
        return session_proto(session, None, self.base_url)

    def _config(self, config: types_pb2.SessionConfig) -> SessionConfigRecord:
        provider = model = ""
        if config.provider or config.model:
            provider, model = self.resolver.resolve_entry(config.provider, config.model, "config.")
        chain = tuple(
            self.resolver.resolve_entry(ref.provider, ref.model, f"config.fallbackChain[{i}].")
            for i, ref in enumerate(config.fallback_chain)
        )
        return SessionConfigRecord(
            aspect_ratio=canonical_aspect_ratio(config.aspect_ratio, "config.aspectRatio")
            if config.aspect_ratio
            else "",
            image_size=canonical_image_size(config.image_size, "config.imageSize") if config.image_size else "",
            provider=provider,
            model=model,
            fallback_chain=chain,
        )

    async def GetSession(self, request: pb2.GetSessionRequest, context: grpc.aio.ServicerContext) -> pb2.Session:
        """The session with its current image."""
        session = await self.store.get_session(_session_id(request.session_id), access.current().scope)
        current = await self.store.get_image(session.current_image_id) if session.current_image_id else None
        return session_proto(session, current, self.base_url)

    async def DeleteSession(self, request: pb2.DeleteSessionRequest, context: grpc.aio.ServicerContext):
        """Delete the session, its history and its images."""
        session = await self.store.get_session(_session_id(request.session_id), access.current().scope)
        if session.status == "generating" and session.busy_until > time.time():
            raise errors.SessionBusy(f"session {session.session_id} is generating; delete it when it is ready")
        await self.store.delete_session(session.session_id)
        return empty_pb2.Empty()

    async def ListSessions(
        self, request: pb2.ListSessionsRequest, context: grpc.aio.ServicerContext
    ) -> pb2.ListSessionsResponse:
        """Sessions newest first, paged."""
        if request.page_size < 0:
            raise errors.InvalidArgument("pageSize", "must not be negative")
        try:
            page = await self.store.list_sessions(
                _project_filter(request.project), request.page_size, request.page_token
            )
        except errors.InvalidArgument as exc:  # name the field as callers spell it
            if [field for field, _ in exc.field_violations] != ["page_token"]:
                raise
            raise errors.InvalidArgument("pageToken", exc.field_violations[0][1]) from None
        currents = {}
        for session in page.sessions:
            if session.current_image_id:
                currents[session.session_id] = await self.store.get_image(session.current_image_id)
        return pb2.ListSessionsResponse(
            sessions=[session_proto(s, currents.get(s.session_id), self.base_url) for s in page.sessions],
            next_page_token=page.next_page_token,
        )


def _project_for_new_session(requested: str) -> str:
    """The caller's project when authenticated (another one is refused), else the label given."""
    scope = access.current().scope
    if scope is None:
        return requested or DEFAULT_PROJECT
    if requested and requested != scope:
        raise errors.PermissionDenied(f"credentials for project {scope} cannot create sessions in {requested}")
    return scope


def _project_filter(requested: str) -> str | None:
    """Authenticated callers list only their project's sessions."""
    scope = access.current().scope
    if scope is not None and requested and requested != scope:
        raise errors.project_not_found(requested)
    return scope or requested or None


def _session_id(value: str) -> str:
    if not value:
        raise errors.InvalidArgument("sessionId", "is required")
    return value
