"""Run settings from the environment (EVOPRUNE_*, REDIS_URL, RAY_ADDRESS): the service's and a local run's."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from evoprune.api.allowed_paths import resolve_roots
from evoprune.shared.storage import is_object_uri, storage_path
from evoprune.shared.store import StoreSpec
from evoprune.shared.store_local import FITNESS_FILE

# A local run (the command line, `evoprune.run`) reads its settings from here too: the assembly and the Ray
# launcher are imported when a Settings is built or run settings are asked for, not with this module.
if TYPE_CHECKING:
    from evoprune.coordinator.assembly import RunSettings

MIN_TOKEN_LENGTH = 32
# a generated token (`openssl rand -hex 32`, 64 characters of 16 kinds) has far more kinds than this
MIN_TOKEN_CHARACTER_KINDS = 8
# tokens copied from examples rather than generated: refusing them beats a server that looks protected
PLACEHOLDER_TOKENS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "changethis",
        "<token>",
        "token",
        "secret",
        "password",
        "your-token",
        "your-token-here",
        "example",
        "xxx",
        "test",
        "dev",
    }
)
# words of example text; a token that holds one was written by a person, not generated
PLACEHOLDER_WORDS = (
    "changeme",
    "changethis",
    "replaceme",
    "yourtoken",
    "tokenhere",
    "placeholder",
    "example",
)
# "${EVOPRUNE_API_TOKEN}" or "$TOKEN": a variable reference that nothing expanded (a quoted .env, a unit file)
_VARIABLE_REFERENCE = re.compile(r"\$\{[^}]*\}|^\$[A-Za-z_]")
# the same piece over and over: "changeme-changeme", "abcd1234abcd1234..."
_REPEATED = re.compile(r"(.+?)\1+")
MIB = 1 << 20
_GENERATE = "generate one, e.g. `openssl rand -hex 32`"


def token_problem(token: str | None) -> str | None:
    """Say what is wrong with an API token, or None when it will do.

    Args:
        token: the configured token (None or empty when unset).

    Returns:
        A message naming EVOPRUNE_API_TOKEN, or None.

    """
    if not token:
        return "EVOPRUNE_API_TOKEN is empty but EVOPRUNE_REQUIRE_TOKEN=true"
    if _VARIABLE_REFERENCE.search(token):
        # not echoed: a reference with a default (`${TOKEN:-...}`) would print the default to the logs
        return f"EVOPRUNE_API_TOKEN holds a variable reference that was never expanded; {_GENERATE}"
    lowered = token.strip().lower()
    letters = "".join(character for character in lowered if character.isalnum())
    if (
        lowered in PLACEHOLDER_TOKENS
        or lowered.strip("<>{}$ ") in PLACEHOLDER_TOKENS
        or any(word in letters for word in PLACEHOLDER_WORDS)
        or _REPEATED.fullmatch(letters) is not None
        or len(set(lowered)) < MIN_TOKEN_CHARACTER_KINDS
    ):
        return f"EVOPRUNE_API_TOKEN is a placeholder; {_GENERATE}"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"EVOPRUNE_API_TOKEN is shorter than {MIN_TOKEN_LENGTH} characters; {_GENERATE}"
    return None


def _launcher_ray_timeout_s() -> float:
    from evoprune.coordinator.service.launcher import RAY_TIMEOUT_S

    return RAY_TIMEOUT_S


class SharedCacheEnvironment(BaseSettings):
    """The shared fitness cache the environment names, read alike by the service and the command line."""

    model_config = SettingsConfigDict(env_prefix="EVOPRUNE_", extra="ignore", frozen=True)

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "EVOPRUNE_REDIS_URL"),
        description="Redis for records, events and the shared fitness cache (REDIS_URL); unset = local files",
    )
    redis_prefix: str = Field(default="evoprune", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9:_.-]+$")


def local_run_settings(workers: int | None, address: str | None) -> RunSettings:
    """How an experiment runs in this process: the command line's `run`/`resume` and `evoprune.run`.

    Args:
        workers: worker actors; None one per GPU (else one per CPU node); 0 evaluates without Ray.
        address: the Ray cluster to join; None: RAY_ADDRESS, else a local Ray.

    Returns:
        The settings, with the shared fitness cache the environment names, as the service reads it.

    Raises:
        ConfigError: the environment names the cache badly (EVOPRUNE_REDIS_PREFIX).

    """
    from pydantic import ValidationError

    from evoprune.coordinator.assembly import RunSettings
    from evoprune.shared.config import ConfigError

    try:
        cache = SharedCacheEnvironment()
    except ValidationError as error:
        raise ConfigError([f"environment: {' '.join(str(error).split())}"]) from None
    return RunSettings(
        workers=workers,
        address=address,
        redis_url=cache.redis_url or None,
        redis_prefix=cache.redis_prefix,
        show_progress=True,
    )


class Settings(SharedCacheEnvironment):
    """What a deployment of the API configures; every field is EVOPRUNE_<NAME> unless noted."""

    api_token: SecretStr | None = Field(
        default=None, description="when set, every /experiments request needs `Authorization: Bearer <token>`"
    )
    require_token: bool = Field(default=False, description="refuse to start without a proper token")
    allow_open: bool = Field(
        default=False,
        description="let `evoprune serve` listen on a non-loopback address without EVOPRUNE_API_TOKEN "
        "(an API open to anyone who can reach it)",
    )
    trusted_hosts: str = Field(
        default="",
        description="comma-separated Host header values the server answers (`*.example.org` allowed); "
        "empty = loopback names when serving on loopback (against DNS rebinding), any otherwise",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="a connection that has not sent a request's headers by then is closed",
    )
    keep_alive_s: float = Field(
        default=5.0, gt=0, le=300, description="idle keep-alive connections close after it"
    )
    body_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="a request body not all arrived by then is answered 408 and its connection closed",
    )
    max_connections: int = Field(
        default=1000,
        ge=2,
        description="open connections (SSE streams included) beyond which requests are answered 503 "
        "(uvicorn's limit_concurrency); keep it under the process's file limit (ulimit -n)",
    )
    data_dir: Path = Field(
        default=Path("evoprune-data"), description="results directories, and the local store without Redis"
    )
    results_root: str | None = Field(
        default=None,
        description="where experiments' results directories go: a folder, or a prefix on object storage "
        "(s3://bucket/prefix, gs://bucket/prefix; credentials and endpoint from the store's standard "
        "environment, e.g. AWS_ENDPOINT_URL); unset = DATA_DIR/results",
    )
    datasets_dir: Path | None = Field(
        default=None,
        validation_alias="EVOPRUNE_DATA",
        description="the datasets folder (EVOPRUNE_DATA): posted configs may read under it",
    )
    allowed_roots: str = Field(
        default="",
        description=(
            "comma-separated folders, besides the data, datasets and feature-cache folders, under which "
            "posted configs may name paths (sources, cache_dir, backbone.weights)"
        ),
    )
    ray_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("RAY_ADDRESS", "EVOPRUNE_RAY_ADDRESS"),
        description="the Ray cluster experiments run on (RAY_ADDRESS); unset = a local Ray the API starts",
    )
    ray_timeout_s: float = Field(
        default_factory=_launcher_ray_timeout_s,
        gt=0,
        le=600,
        description="how long a request waits for Ray (joining it, starting or looking up a runner): "
        "past it, POST answers 503 and the experiment ends failed",
    )
    workers_per_experiment: int | None = Field(default=None, ge=1, le=1024)
    cors_origins: str = Field(default="", description="comma-separated origins allowed by CORS; empty = off")
    max_body_bytes: int = Field(default=MIB, ge=1024)
    max_runs: int = Field(default=20, ge=1)
    max_population: int = Field(default=1000, ge=2)
    max_evaluations: int = Field(default=100_000, ge=1, description="per run")
    max_mask_length: int = Field(default=1 << 20, ge=1, description="bits in one mask")
    max_epochs: int = Field(default=10_000, ge=1)
    max_active_experiments: int = Field(default=32, ge=1, description="queued or running at once")
    connect_ray_on_start: bool = Field(
        default=True, description="join Ray when the server starts (else at the first submission)"
    )
    recover_on_start: bool = Field(
        default=True, description="resume experiments whose runner is gone when the server starts"
    )
    config_variables: str = Field(
        default="EVOPRUNE_DATA",
        description=(
            "comma-separated environment variables of the server that posted configs may use in "
            "dataset/ood sources (`folder:${EVOPRUNE_DATA}/srsmas`); no other variable is ever expanded"
        ),
    )
    worker_actor: str | None = Field(
        default=None, description="module:Class of the worker actor (tests); unset = the real evaluator"
    )

    @field_validator("results_root")
    @classmethod
    def _results_root_reachable(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not is_object_uri(value.strip()):
            return str(Path(value.strip()).expanduser().resolve())
        # the URI is parsed now, so a deployment with no bucket in it (or a store the settings cannot
        # reach) refuses to start rather than failing each experiment
        return str(storage_path(value.strip()))

    @model_validator(mode="after")
    def _token_fits(self) -> Settings:
        token = self.api_token.get_secret_value() if self.api_token is not None else None
        if self.require_token or token:
            problem = token_problem(token)
            if problem is not None:
                raise ValueError(problem)
        return self

    @property
    def token(self) -> str | None:
        """The API token, or None when the API is open."""
        value = self.api_token.get_secret_value() if self.api_token is not None else ""
        return value or None

    def config_environment(self) -> dict[str, str]:
        """The server's values of the variables posted configs may reference (those that are set)."""
        names = [name.strip() for name in self.config_variables.split(",") if name.strip()]
        return {name: os.environ[name] for name in names if name in os.environ}

    def allowed_root_paths(self) -> list[Path]:
        """The resolved folders posted configs may name paths under: data, datasets, feature cache, extras."""
        from evoprune.workers.features.feature_cache import resolve_cache_dir

        folders: list[str | os.PathLike[str]] = [self.data_dir]
        cache_dir = resolve_cache_dir(None)
        if isinstance(cache_dir, Path):  # a cache on object storage is no folder of this machine
            folders.append(cache_dir)
        if self.datasets_dir is not None:
            folders.append(self.datasets_dir)
        folders += [folder.strip() for folder in self.allowed_roots.split(",") if folder.strip()]
        return resolve_roots(folders)

    def store_spec(self) -> StoreSpec:
        """Where the store and results live, in the form runners in other processes can open."""
        return StoreSpec(
            data_dir=str(self.data_dir.resolve()),
            redis_url=self.redis_url,
            redis_prefix=self.redis_prefix,
            results_location=self.results_root,
        )

    def run_settings(self) -> RunSettings:
        """How the service's experiments run: the settings object the command line builds from its flags."""
        from evoprune.coordinator.assembly import RunSettings

        spec = self.store_spec()
        return RunSettings(
            workers=self.workers_per_experiment,
            address=self.ray_address,
            redis_url=self.redis_url,
            redis_prefix=self.redis_prefix,
            # without Redis, the service's experiments share the local store's fitness cache
            local_fitness_cache=None if self.redis_url else str(Path(spec.data_dir) / FITNESS_FILE),
            max_mask_length=self.max_mask_length,
            worker_actor=self.worker_actor,
        )

    @property
    def trusted_host_list(self) -> list[str]:
        """The configured trusted hosts (empty: not configured)."""
        return [host.strip() for host in self.trusted_hosts.split(",") if host.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        """CORS origins as a list (empty: CORS stays off)."""
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]
