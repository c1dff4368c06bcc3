"""ProjectService (admin) and AccessService (app tokens, usage)."""

from __future__ import annotations

from google.protobuf import empty_pb2

from aigen.server import access, errors
from aigen.server.convert import timestamp
from aigen.server.projects import Projects
from aigen.server.store.records import ProjectRecord
from aigen.v1 import access_service_pb2 as access_pb2
from aigen.v1 import access_service_pb2_grpc as access_grpc
from aigen.v1 import project_service_pb2 as pb2
from aigen.v1 import project_service_pb2_grpc as pb2_grpc


def project_proto(project: ProjectRecord) -> pb2.Project:
    """A project record as the API shows it."""
    return pb2.Project(
        project_id=project.project_id,
        allowed_providers=list(project.allowed_providers),
        default_provider=project.default_provider,
        default_model=project.default_model,
        billing_mode=project.billing_mode,
        rate_limit=project.rate_limit,
        allow_public_clients=project.allow_public_clients,
        create_time=timestamp(project.created_at),
    )


class ProjectServicer(pb2_grpc.ProjectServiceServicer):
    """Admin RPCs; the access guard admits only the admin key here."""

    def __init__(self, projects: Projects, control: access.AccessControl) -> None:
        self.projects = projects
        self.control = control

    async def PutProject(self, request: pb2.PutProjectRequest, context) -> pb2.Project:
        """Create or replace a project."""
        given = request.project
        stored = await self.projects.put(
            ProjectRecord(
                project_id=given.project_id,
                allowed_providers=tuple(given.allowed_providers),
                default_provider=given.default_provider,
                default_model=given.default_model,
                billing_mode=given.billing_mode,
                rate_limit=given.rate_limit,
                allow_public_clients=given.allow_public_clients,
            )
        )
        self.control.projects_changed()
        return project_proto(stored)

    async def GetProject(self, request: pb2.GetProjectRequest, context) -> pb2.Project:
        """One project."""
        return project_proto(await self.projects.store.get_project(request.project_id))

    async def ListProjects(self, request, context) -> pb2.ListProjectsResponse:
        """Every project."""
        return pb2.ListProjectsResponse(projects=[project_proto(p) for p in await self.projects.store.list_projects()])

    async def DeleteProject(self, request: pb2.DeleteProjectRequest, context) -> empty_pb2.Empty:
        """Delete a project and its credentials."""
        await self.projects.store.delete_project(request.project_id)
        self.control.projects_changed()
        return empty_pb2.Empty()

    async def CreateApiKey(self, request: pb2.CreateApiKeyRequest, context) -> pb2.CreateApiKeyResponse:
        """A new secret key, shown once."""
        key_id, secret = await self.projects.create_key(request.project_id)
        return pb2.CreateApiKeyResponse(key_id=key_id, api_key=secret)

    async def RevokeApiKey(self, request: pb2.RevokeApiKeyRequest, context) -> empty_pb2.Empty:
        """Revoke a key."""
        await self.projects.store.revoke_credential(request.project_id, request.key_id)
        return empty_pb2.Empty()


class AccessServicer(access_grpc.AccessServiceServicer):
    """App tokens for public clients, and usage."""

    def __init__(self, control: access.AccessControl) -> None:
        self.control = control

    async def CreateAppToken(self, request: access_pb2.CreateAppTokenRequest, context):
        """Mint a short-lived token for a project that allows public clients."""
        token, expires = await self.control.mint_app_token(request.app)
        return access_pb2.CreateAppTokenResponse(data=access_pb2.AppToken(token=token, expire_time=timestamp(expires)))

    async def GetUsage(self, request: access_pb2.GetUsageRequest, context) -> access_pb2.GetUsageResponse:
        """The caller's project usage by day and model."""
        principal = access.current()
        project = principal.project.project_id
        if request.project and request.project != project:
            if principal.scope is not None:
                raise errors.project_not_found(request.project)
            project = request.project
        rows = await self.control.store.list_usage(project, request.start_day, request.end_day)
        return access_pb2.GetUsageResponse(
            project=project,
            total_credits=sum(r.credits for r in rows),
            rows=[
                access_pb2.UsageRow(
                    day=r.day,
                    provider=r.provider,
                    model=r.model,
                    billing_mode=r.billing_mode,
                    images=r.images,
                    credits=r.credits,
                )
                for r in rows
            ],
        )
