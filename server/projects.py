"""Project administration: validated settings, API keys. Used by the admin RPCs and command."""

from __future__ import annotations

import re
import secrets
import time

from aigen.server import errors
from aigen.server.access import hash_secret, new_secret
from aigen.server.models import ModelResolver
from aigen.server.store.base import Store
from aigen.server.store.records import CredentialRecord, ProjectRecord

PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
BILLING_MODES = ("owner_pays", "user_pays")


class Projects:
    """Create, change and delete projects and their keys."""

    def __init__(self, store: Store, resolver: ModelResolver) -> None:
        self.store = store
        self.resolver = resolver

    def validate(self, project: ProjectRecord) -> ProjectRecord:
        """Check every setting; canonical names for the default pair."""
        if not PROJECT_ID.fullmatch(project.project_id):
            raise errors.InvalidArgument("project.projectId", "use 1-64 letters, digits, '-' or '_'")
        known = set(self.resolver.registry.providers)
        unknown = [p for p in project.allowed_providers if p not in known]
        if unknown:
            raise errors.InvalidArgument(
                "project.allowedProviders", f"unknown provider {unknown[0]!r}; use any of {', '.join(sorted(known))}"
            )
        billing = project.billing_mode or "owner_pays"
        if billing not in BILLING_MODES:
            raise errors.InvalidArgument("project.billingMode", "use owner_pays or user_pays")
        if project.rate_limit < 0:
            raise errors.InvalidArgument("project.rateLimit", "must not be negative")
        provider, model = project.default_provider, project.default_model
        if provider or model:
            provider, model = self.resolver.resolve_entry(provider, model, "project.default")
            if project.allowed_providers and provider not in project.allowed_providers:
                raise errors.InvalidArgument("project.defaultProvider", "must be one of the allowed providers")
        return ProjectRecord(
            project_id=project.project_id,
            allowed_providers=tuple(dict.fromkeys(project.allowed_providers)),
            default_provider=provider,
            default_model=model,
            billing_mode=billing,
            rate_limit=project.rate_limit,
            allow_public_clients=project.allow_public_clients,
            created_at=project.created_at or time.time(),
        )

    async def put(self, project: ProjectRecord) -> ProjectRecord:
        """Validate and store."""
        return await self.store.put_project(self.validate(project))

    async def create_key(self, project_id: str) -> tuple[str, str]:
        """A new API key for the project: (key id, secret shown once)."""
        secret = new_secret("aig")
        key_id = f"key_{secrets.token_hex(8)}"
        await self.store.add_credential(
            CredentialRecord(
                credential_id=key_id,
                project_id=project_id,
                kind="api_key",
                secret_hash=hash_secret(secret),
                created_at=time.time(),
            )
        )
        return key_id, secret
