"""The model catalogue: name resolution with defaults, and the ListProviders/ListModels views."""

from __future__ import annotations

from aigen.server.config import Settings
from aigen.server.convert import duration
from aigen.server.errors import InvalidArgument
from aigen.server.health import ModelHealth
from aigen.server.providers.base import ModelProfile, ProviderRegistry
from aigen.v1 import generation_service_pb2 as gen_pb2

LOCAL_PAIR = ("local", "local")


class ModelResolver:
    """Turns the names callers send into canonical (provider, short model name) pairs."""

    def __init__(self, registry: ProviderRegistry, settings: Settings, health: ModelHealth) -> None:
        self.registry = registry
        self.settings = settings
        self.health = health

    def resolve(
        self,
        provider: str,
        model: str,
        session_default: tuple[str, str] = ("", ""),
        project_default: tuple[str, str] = ("", ""),
    ) -> tuple[str, str]:
        """Request, then session config, then project, then server default: the pair to try first."""
        if provider or model:
            return self.resolve_entry(provider, model, "")
        if any(session_default):
            return self.resolve_entry(*session_default, "config.")
        if any(project_default):
            return self.resolve_entry(*project_default, "project.default")
        return self.resolve_entry(self.settings.default_provider, self.settings.default_model, "")

    def resolve_entry(self, provider: str, model: str, prefix: str) -> tuple[str, str]:
        """Validate one pair; a missing provider is inferred from the model, a missing model
        is the provider's first one. Errors name `prefix + field`.
        """
        if provider and self.registry.get(provider) is None:
            names = ", ".join(sorted(self.registry.providers))
            raise InvalidArgument(f"{prefix}provider", f"unknown provider {provider!r}; use one of {names}")
        if not model:
            if not provider:
                raise InvalidArgument(f"{prefix}model", "is required")
            return provider, self.registry.get(provider).models()[0].name
        if provider:
            profile = self.registry.find_model(provider, model)
            if profile is None:
                names = ", ".join(p.name for p in self.registry.get(provider).models())
                raise InvalidArgument(f"{prefix}model", f"unknown model {model!r} for {provider}; use one of {names}")
            return provider, profile.name
        return self._infer_provider(model, prefix)

    def _infer_provider(self, model: str, prefix: str) -> tuple[str, str]:
        matches = [p for p in self.registry.all_models() if model in p.names()]
        if not matches:
            names = ", ".join(sorted({p.name for p in self.registry.all_models()}))
            raise InvalidArgument(f"{prefix}model", f"unknown model {model!r}; use one of {names}")
        preferred = [p for p in matches if p.provider == self.settings.default_provider] or matches
        if len(preferred) > 1:
            owners = ", ".join(p.provider for p in preferred)
            raise InvalidArgument(f"{prefix}provider", f"model {model!r} exists in {owners}; name the provider")
        return preferred[0].provider, preferred[0].name

    def extra_chain(self) -> tuple[tuple[str, str], ...]:
        """The local renderer as a last resort, per the `local_fallback` setting."""
        if self.registry.get("local") is None or self.settings.local_fallback == "never":
            return ()
        remote_configured = any(p.configured for name, p in self.registry.providers.items() if name != "local")
        if self.settings.local_fallback == "always" or not remote_configured:
            return (LOCAL_PAIR,)
        return ()

    # Catalogue views ----------------------------------------------------------------------
    def list_providers(self) -> gen_pb2.ListProvidersResponse:
        """Every provider with its configuration state and cooling-down models."""
        cooling = set(self.health.cooling_down())
        providers = []
        for name, provider in self.registry.providers.items():
            models = [p.name for p in provider.models()]
            providers.append(
                gen_pb2.ProviderInfo(
                    name=name,
                    configured=provider.configured,
                    credential_env=provider.credential_env or "",
                    models=models,
                    description=provider.description,
                    models_in_cooldown=[m for m in models if (name, m) in cooling],
                )
            )
        return gen_pb2.ListProvidersResponse(providers=providers)

    def list_models(self, provider: str = "", allowed: tuple[str, ...] = ()) -> gen_pb2.ListModelsResponse:
        """Every model (of one provider when given) with capabilities, latency and price."""
        if provider and self.registry.get(provider) is None:
            names = ", ".join(sorted(self.registry.providers))
            raise InvalidArgument("provider", f"unknown provider {provider!r}; use one of {names}")
        cooling = set(self.health.cooling_down())
        models = [
            self._model_info(profile, cooling)
            for profile in self.registry.all_models()
            if (not provider or profile.provider == provider) and (not allowed or profile.provider in allowed)
        ]
        return gen_pb2.ListModelsResponse(models=models)

    def _model_info(self, profile: ModelProfile, cooling: set) -> gen_pb2.ModelInfo:
        provider = self.registry.get(profile.provider)
        capabilities = gen_pb2.ModelCapabilities(
            aspect_ratios=list(profile.aspect_ratios),
            image_sizes=list(profile.image_sizes),
            max_reference_images=profile.max_reference_images,
            can_edit=profile.can_edit,
            supports_mask=profile.supports_mask,
            reports_progress=profile.reports_progress,
            streams_previews=profile.streams_previews,
        )
        return gen_pb2.ModelInfo(
            provider=profile.provider,
            model=profile.name,
            internal_id=profile.internal_id,
            aliases=list(profile.aliases),
            configured=provider.configured,
            notes=profile.notes,
            capabilities=capabilities,
            typical_latency=duration(profile.typical_latency_s),
            credits_per_image=profile.credits_per_image,
            in_cooldown=(profile.provider, profile.name) in cooling,
            local=profile.local,
        )
