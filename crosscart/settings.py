"""Service configuration, read from `CROSSCART_*` environment variables (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a deployment may change. Paths default to `./var/` so demos can run side by side."""

    model_config = SettingsConfigDict(env_prefix="CROSSCART_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("var"), description="Generated data, features and artifacts.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite under data_dir.")
    mlflow_uri: str = Field(default="", description="MLflow tracking URI; empty means sqlite under data_dir.")
    redis_url: str = Field(default="", description="Redis for shared counters and caches; empty: database.")
    model_name: str = Field(default="crosscart-recommender", description="Registered recommender name.")
    uplift_model_name: str = Field(default="crosscart-uplift", description="Registered uplift model name.")
    model_alias: str = Field(default="champion", description="Registry alias the API serves.")
    model_poll_seconds: float = Field(default=30.0, description="How often the API checks the alias.")
    rate_limit_per_minute: int = Field(default=600, description="Requests per key per minute.")
    rate_limit_anonymous_per_minute: int = Field(default=60, description="Per client IP without a key.")
    max_body_bytes: int = Field(default=1_000_000, description="Largest accepted request body.")
    dask_scheduler: str = Field(
        default="",
        description="Dask cluster for feature jobs: 'local:N' or 'tcp://HOST:8786'; empty: in-process.",
    )
    identity_key: str = Field(
        default="crosscart-dev-identity-key",
        description="Secret used to protect resident ID numbers (HMAC). Change it in production.",
    )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'crosscart.db').resolve()}"

    @property
    def resolved_mlflow_uri(self) -> str:
        return self.mlflow_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings; tests build `Settings(...)` directly instead."""
    return Settings()
