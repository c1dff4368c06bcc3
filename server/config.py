"""Server settings from environment variables and an optional TOML file (pydantic-settings).

Gateway settings use the AIGEN_ prefix (AIGEN_GRPC_PORT, AIGEN_DATA_DIR, ...); provider
credentials and base URLs use each vendor's own variable names (GEMINI_API_KEY,
OPENAI_BASE_URL, ...). AIGEN_CONFIG_FILE points at an optional TOML file; environment
variables win over it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from aigen.server.image_sends import HOLD_S

MiB = 1024 * 1024


class ChainEntry(BaseModel):
    """One provider/model pair of a fallback chain."""

    provider: str
    model: str


DEFAULT_CHAIN = [
    ChainEntry(provider="gemini", model="nano-banana-pro"),
    ChainEntry(provider="replicate", model="flux-pro"),
    ChainEntry(provider="gemini", model="nano-banana"),
    ChainEntry(provider="replicate", model="recraft"),
    ChainEntry(provider="replicate", model="ideogram"),
    ChainEntry(provider="replicate", model="flux-dev"),
]


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything configurable about the gateway."""

    model_config = SettingsConfigDict(env_prefix="AIGEN_", extra="ignore", populate_by_name=True)

    # Network and storage.
    host: str = "127.0.0.1"
    grpc_port: int = 19002
    http_port: int = 19001
    admin_port: int = 0  # Envoy admin; 0 picks a free port
    data_dir: Path = Path("data")
    # Prefix of image URLs in responses; default http://localhost:<http_port>.
    public_url: str = ""

    # Defaults and the fallback chain (API.md).
    default_provider: str = "gemini"
    default_model: str = "nano-banana"
    fallback_chain: list[ChainEntry] = Field(default_factory=lambda: list(DEFAULT_CHAIN))
    # Append the keyless local renderer to every chain: "auto" does so only when no
    # remote provider has credentials, so a fresh machine still returns images.
    local_fallback: Literal["auto", "always", "never"] = "auto"

    # Access: "auto" turns authentication on once a project exists or when not on loopback.
    auth: Literal["auto", "on", "off"] = "auto"
    admin_key: str = ""
    rate_limit: int = 600  # requests per window per credential (per address when anonymous)
    rate_limit_window_s: float = 300.0
    app_token_ttl_s: float = 3600.0
    # Credits per image by "provider/model" (or "provider/*"); the model profile's price otherwise.
    credits: dict[str, int] = Field(default_factory=dict)

    # Limits (APP-API: prompts of at most 4,000 characters, 120 s per generation).
    generation_timeout_s: float = 120.0
    # A session stays busy for its generation's deadline plus this margin; a replica that dies
    # mid-generation therefore frees its sessions once the lease runs out.
    lease_margin_s: float = 30.0
    model_timeouts_s: dict[str, float] = Field(default_factory=dict)  # "provider/model" -> s
    max_prompt_chars: int = 4000
    max_reference_images: int = 14
    max_image_bytes: int = 20 * MiB
    max_image_pixels: int = 40_000_000
    max_message_bytes: int = 200 * MiB
    grace_period_s: float = 30.0
    # Completed stream events carrying image bytes that may be on their way at once; the others
    # wait for a turn with their image in the store rather than in memory (server/image_sends.py).
    stream_image_sends: int = Field(32, ge=1)
    # How long one such event may hold its turn while its caller reads it (then the next goes).
    stream_image_hold_s: float = Field(HOLD_S, gt=0)

    # Engine: retries and cooldown of failing provider/model pairs.
    retry_attempts: int = 2
    retry_base_delay_s: float = 0.5
    retry_max_delay_s: float = 8.0
    cooldown_failures: int = 3
    cooldown_s: float = 60.0

    # Provider credentials and endpoints, under the vendors' own variable names.
    gemini_api_key: str = Field("", validation_alias=_env("GEMINI_API_KEY", "AIGEN_GEMINI_API_KEY"))
    gemini_base_url: str = Field("", validation_alias=_env("GOOGLE_GEMINI_BASE_URL", "AIGEN_GEMINI_BASE_URL"))
    replicate_api_token: str = Field("", validation_alias=_env("REPLICATE_API_TOKEN", "AIGEN_REPLICATE_API_TOKEN"))
    replicate_base_url: str = Field("", validation_alias=_env("REPLICATE_BASE_URL", "AIGEN_REPLICATE_BASE_URL"))
    openai_api_key: str = Field("", validation_alias=_env("OPENAI_API_KEY", "AIGEN_OPENAI_API_KEY"))
    openai_base_url: str = Field("", validation_alias=_env("OPENAI_BASE_URL", "AIGEN_OPENAI_BASE_URL"))
    bfl_api_key: str = Field("", validation_alias=_env("BFL_API_KEY", "AIGEN_BFL_API_KEY"))
    bfl_base_url: str = Field("https://api.bfl.ai", validation_alias=_env("BFL_BASE_URL", "AIGEN_BFL_BASE_URL"))
    # Provider model ids by short name, e.g. {"gpt-image": "gpt-image-1.5"}; ids change often.
    model_ids: dict[str, str] = Field(default_factory=dict)
    # Max bytes downloaded for one provider output image.
    max_download_bytes: int = 64 * MiB
    # Connections each provider's HTTP client may hold open at once (concurrent provider calls).
    provider_max_connections: int = Field(4096, ge=1)

    # S3-compatible object storage for image bytes (server/store/s3_blobs.py), AIGEN_S3_* variables.
    # Not used by the embedded store, which keeps blobs as files under data_dir.
    s3_endpoint_url: str = ""  # e.g. http://127.0.0.1:8333; empty means AWS S3 itself
    s3_region: str = "us-east-1"  # SigV4 signing region
    s3_bucket: str = ""
    s3_prefix: str = ""  # prepended to every object key (key = prefix + sha256 hex)
    s3_access_key_id: str = ""  # empty: botocore's default credential chain
    s3_secret_access_key: str = ""
    # GET /images/{id} through Envoy answers 302 to a presigned S3 URL instead of relaying the
    # bytes (gRPC callers still get the bytes). Presigned URLs name s3_public_endpoint_url when
    # callers reach the storage under another address than the servers do.
    s3_presigned_redirect: bool = False
    s3_presign_expiry_s: int = Field(900, ge=1, le=604800)  # SigV4 allows at most 7 days
    s3_public_endpoint_url: str = ""

    # Backends: "sqlite" is the embedded single-process store under data_dir; "postgres" is
    # the shared store (AIGEN_DATABASE_URL) that several replicas use together. Image bytes
    # live under data_dir/blobs ("local") or in the S3 bucket of the s3_* settings ("s3").
    store: Literal["sqlite", "postgres"] = "sqlite"
    database_url: str = ""  # e.g. postgresql://aigen@127.0.0.1:5432/aigen
    blobs: Literal["local", "s3"] = "local"
    # gRPC server processes `make serve` starts (consecutive ports from grpc_port) behind one Envoy.
    replicas: int = Field(1, ge=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Init values, then environment, then the TOML file named by AIGEN_CONFIG_FILE."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("AIGEN_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @model_validator(mode="after")
    def _check_backends(self) -> Settings:
        """The chosen store and blob backends have what they need."""
        if self.store == "postgres" and not self.database_url:
            raise ValueError("AIGEN_STORE=postgres needs AIGEN_DATABASE_URL (postgresql://user@host:5432/db)")
        if self.blobs == "s3" and not self.s3_bucket:
            raise ValueError("AIGEN_BLOBS=s3 needs AIGEN_S3_BUCKET")
        if self.blobs == "s3" and self.store == "sqlite":
            raise ValueError("AIGEN_BLOBS=s3 needs AIGEN_STORE=postgres (the sqlite store keeps blobs in data_dir)")
        if self.s3_presigned_redirect and self.blobs != "s3":
            raise ValueError("AIGEN_S3_PRESIGNED_REDIRECT needs AIGEN_BLOBS=s3")
        return self

    def timeout_for(self, provider: str, model: str) -> float:
        """The generation deadline for one provider/model pair."""
        return self.model_timeouts_s.get(f"{provider}/{model}", self.generation_timeout_s)
