"""Who is calling: project credentials, app tokens, the admin key, and per-client rate limits.

With no project configured and the server on loopback, authentication is off and every call
belongs to the `default` project (the embedded default). Once a project exists (or with
AIGEN_AUTH=on), every RPC needs a project API key (`authorization: Bearer ...`) or an app
token (`x-app-token`), except health, reflection, image URLs and minting app tokens.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import secrets
import time
from contextvars import ContextVar
from dataclasses import dataclass

import grpc

from aigen.server import errors, headers
from aigen.server.config import Settings
from aigen.server.ratelimit import AsyncRateLimiter, LocalRateLimiter, RateLimiter
from aigen.server.store.base import Store
from aigen.server.store.records import CredentialRecord, ProjectRecord

DEFAULT_PROJECT = "default"
PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.",
    "/aigen.v1.ImageService/",
    "/aigen.v1.OpsService/",
    "/aigen.v1.UiService/",
)
TOKEN_METHOD = "/aigen.v1.AccessService/CreateAppToken"
ADMIN_PREFIX = "/aigen.v1.ProjectService/"
PROJECTS_CACHE_S = 1.0


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of the current RPC."""

    project: ProjectRecord
    scoped: bool  # True when authentication is on: the caller sees only its project
    credential_id: str = ""
    admin: bool = False

    @property
    def scope(self) -> str | None:
        """The project the caller is confined to, or None when unconfined."""
        return self.project.project_id if self.scoped and not self.admin else None


_ANONYMOUS = Principal(project=ProjectRecord(project_id=DEFAULT_PROJECT), scoped=False)
_principal: ContextVar[Principal] = ContextVar("aigen_principal", default=_ANONYMOUS)


def current() -> Principal:
    """The caller of the current RPC."""
    return _principal.get()


def hash_secret(secret: str) -> str:
    """How secrets are stored: SHA-256 hex (they are long random strings, so no salt is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    """A new 256-bit secret such as "aig_..."."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


class AccessControl:
    """Authenticates each call, sets the principal, and applies the rate limit."""

    def __init__(self, store: Store, settings: Settings, limiter: AsyncRateLimiter | None = None) -> None:
        self.store = store
        self.settings = settings
        self.limiter = limiter or LocalRateLimiter(RateLimiter(settings.rate_limit_window_s))
        self._projects_checked = 0.0
        self._has_projects = False

    def projects_changed(self) -> None:
        """Forget the cached "are there projects" answer (after admin changes)."""
        self._projects_checked = 0.0

    async def auth_required(self) -> bool:
        """True when calls need credentials."""
        if self.settings.auth != "auto":
            return self.settings.auth == "on"
        if not _is_loopback(self.settings.host):
            return True
        now = time.monotonic()
        if now - self._projects_checked > PROJECTS_CACHE_S:
            self._has_projects = bool(await self.store.list_projects())
            self._projects_checked = now
        return self._has_projects

    async def check(self, method: str, context: grpc.aio.ServicerContext) -> None:
        """Guard one call: raise Unauthenticated/PermissionDenied/RateLimited, else set the principal."""
        if method.startswith(PUBLIC_PREFIXES):
            return
        metadata = {key: value for key, value in (context.invocation_metadata() or ()) if isinstance(value, str)}
        principal = await self._principal(method, metadata)
        _principal.set(principal)
        await self._limit(principal, metadata, context)

    async def _principal(self, method: str, metadata: dict[str, str]) -> Principal:
        bearer = _bearer(metadata.get("authorization", ""))
        if bearer and self.settings.admin_key and hmac.compare_digest(bearer, self.settings.admin_key):
            return Principal(project=ProjectRecord(project_id=DEFAULT_PROJECT), scoped=True, admin=True)
        if method.startswith(ADMIN_PREFIX):
            if not self.settings.admin_key:
                raise errors.PermissionDenied("project administration is disabled; set AIGEN_ADMIN_KEY")
            raise errors.Unauthenticated("project administration needs the admin key as authorization: Bearer")
        if method == TOKEN_METHOD:
            return _ANONYMOUS
        required = await self.auth_required()
        token = metadata.get("x-app-token", "")
        if bearer or token:
            return await self._from_secret(bearer or token, "api_key" if bearer else "app_token", required)
        if required:
            raise errors.Unauthenticated(
                "credentials required: send a project API key as 'authorization: Bearer <key>' "
                "or an app token from POST /api/token as 'X-App-Token'"
            )
        return _ANONYMOUS

    async def _from_secret(self, secret: str, kind: str, scoped: bool) -> Principal:
        credential = await self.store.find_credential(hash_secret(secret))
        if credential is None or credential.kind != kind:
            raise errors.Unauthenticated("the API key or app token is not valid")
        if credential.expires_at and credential.expires_at < time.time():
            raise errors.Unauthenticated("the app token has expired; get a new one from POST /api/token")
        project = await self.store.get_project(credential.project_id)
        return Principal(project=project, scoped=True, credential_id=credential.credential_id)

    async def _limit(self, principal: Principal, metadata: dict[str, str], context: grpc.aio.ServicerContext) -> None:
        if principal.admin:
            return
        key = principal.credential_id or f"addr:{client_address(metadata, context.peer())}"
        limit = principal.project.rate_limit or self.settings.rate_limit
        decision = await self.limiter.hit(key, limit)
        headers.add(*decision.headers())
        if not decision.allowed:
            raise errors.RateLimited(
                f"rate limit of {limit} requests per {decision.window_s} s reached; retry in {decision.reset_s} s",
                retry_after=decision.reset_s,
            )

    async def mint_app_token(self, project_id: str) -> tuple[str, float]:
        """A new app token for a project that allows public clients."""
        if not project_id:
            raise errors.InvalidArgument("app", "is required")
        project = await self.store.get_project(project_id)  # project_not_found when absent
        if not project.allow_public_clients:
            raise errors.PermissionDenied(f"project {project_id} does not allow public clients")
        token = new_secret("apt")
        now = time.time()
        await self.store.delete_expired_credentials(now)
        expires = now + self.settings.app_token_ttl_s
        await self.store.add_credential(
            CredentialRecord(
                credential_id=f"tok_{secrets.token_hex(8)}",
                project_id=project_id,
                kind="app_token",
                secret_hash=hash_secret(token),
                created_at=now,
                expires_at=expires,
            )
        )
        return token, expires


def _bearer(value: str) -> str:
    scheme, _, secret = value.partition(" ")
    return secret.strip() if scheme.lower() == "bearer" else ""


@functools.lru_cache(maxsize=4096)
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_address(metadata: dict[str, str], peer: str) -> str:
    """The client's address: Envoy's x-forwarded-for when the peer is local (Envoy), else the peer."""
    host = peer.split(":", 1)[-1].rsplit(":", 1)[0].strip("[]") if peer else ""
    forwarded = metadata.get("x-forwarded-for", "")
    if forwarded and _is_loopback(host):
        return forwarded.split(",")[-1].strip()
    return host or "unknown"
