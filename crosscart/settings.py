"""Service configuration, read from `CROSSCART_*` environment variables (and `.env`)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
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
    delivery_model_name: str = Field(
        default="crosscart-delivery", description="Registered delivery-time model name."
    )
    model_alias: str = Field(default="champion", description="Registry alias the API serves.")
    session_model_name: str = Field(default="crosscart-session", description="Registered session model.")
    session_max_items: int = Field(default=30, description="Recent items kept per live session.")
    session_ttl_seconds: int = Field(default=1800, description="A session expires after this inactivity.")
    session_blend_weight: float = Field(
        default=0.1,  # learned on the synthetic marketplace (bench/sessions.py, ALS + V-SKNN)
        ge=0.0,
        le=1.0,
        description="Long-term model's share when it re-ranks a live session's candidates for a shopper.",
    )
    model_poll_seconds: float = Field(default=30.0, description="How often the API checks the alias.")
    rate_limit_per_minute: int = Field(default=600, description="Requests per key per minute.")
    rate_limit_anonymous_per_minute: int = Field(default=60, description="Per client IP without a key.")
    event_rate_limit_per_minute: int = Field(
        default=6_000,
        ge=1_000,  # one full batch (1,000 events) must always fit
        description="Events per throttled key per minute, each event of a POST /v1/events batch counted (a"
        " batch over what is left is refused whole, 429); the storefront role is not throttled.",
    )
    merchant_applications_per_hour: int = Field(
        default=10,
        ge=1,
        description="Merchant applications (POST /v1/merchants) per client address, or per throttled key, per"
        " hour; each one counts, refused ones too. An admin registers many with `crosscart db load`.",
    )
    rate_limit_replicas: int = Field(
        default=1,
        ge=1,
        description="API processes sharing the rate limits (hosts x `crosscart serve --workers`): without"
        " Redis (down, evicting or not configured) each process admits limit // this, at least 1, so all"
        " of them together admit about the limit.",
    )
    max_body_bytes: int = Field(default=1_000_000, description="Largest accepted request body.")
    log_level: str = Field(default="info", description="Root log level of the API.")
    log_format: Literal["json", "console"] = Field(default="json", description="JSON lines or terminal text.")
    access_log: bool = Field(default=True, description="One structured line per request.")
    otel_endpoint: str = Field(
        default="", description="OTLP/HTTP endpoint for traces (e.g. http://collector:4318); empty: off."
    )
    max_event_age_days: int = Field(
        default=400, ge=1, description="Events sent stamped earlier than this many days ago are refused."
    )
    pending_order_ttl_minutes: float = Field(
        default=30.0, gt=0, description="Unpaid orders older than this expire, giving back stock and coupons."
    )
    max_open_pending_orders: int = Field(default=5, ge=1, description="Unpaid orders one shopper may hold.")
    pending_sweep_seconds: float = Field(default=60.0, gt=0, description="How often the API expires orders.")
    db_pool_size: int = Field(
        default=10, ge=1, description="Requests inside a database transaction at once (API); others wait."
    )
    db_wait_seconds: float = Field(default=1.0, description="Longest wait for database slots before 503.")
    db_connect_timeout_seconds: float = Field(default=3.0, description="Database connect timeout (API).")
    db_statement_timeout_seconds: float = Field(default=10.0, description="Per-statement timeout (API).")
    db_lock_timeout_seconds: float = Field(default=0.3, description="Longest wait for a row lock (API).")
    auth_cache_stale_seconds: float = Field(
        default=900.0, description="How long a key seen valid keeps working while the database is down."
    )
    precomputed_dir: str = Field(
        default="",
        description="`crosscart batch-score --out` directory: the API serves those top-N lists (for the "
        "model version that made them) instead of scoring online; empty: always online.",
    )
    precomputed_redis: bool = Field(
        default=False,
        description="Serve the lists `crosscart batch-score --redis` published to CROSSCART_REDIS_URL "
        "(replicas without shared storage) instead of reading CROSSCART_PRECOMPUTED_DIR.",
    )
    prometheus_multiproc_dir: str = Field(
        default="",
        validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"),
        description="prometheus_client's own variable: every worker writes metrics there and /metrics "
        "reports all workers (`crosscart serve --workers N` sets it).",
    )
    auth_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="While revocations cannot be pushed over Redis (configured but unreachable), how often a "
        "replica re-checks a cached key against the database.",
    )
    auth_failures_per_minute: int = Field(
        default=30, description="Failed key checks per client address per minute before 429."
    )
    redis_timeout_seconds: float = Field(default=0.25, description="Redis timeout; then local counts.")
    header_timeout_seconds: float = Field(
        default=10.0, description="Time to send complete request headers; also the keep-alive idle limit."
    )
    forwarded_allow_ips: str = Field(
        default="",
        description="Proxies (comma-separated addresses or networks) whose X-Forwarded-For and"
        " X-Forwarded-Proto are believed; empty: none, the connecting address is the client.",
    )
    metrics_allow: str = Field(
        default="127.0.0.0/8,::1",
        description="Client networks (comma-separated addresses or networks) that may read /metrics; the"
        " address is the one X-Forwarded-For gives through CROSSCART_FORWARDED_ALLOW_IPS. Others get 404.",
    )
    metrics_token: str = Field(
        default="",
        description="Lets a scraper outside CROSSCART_METRICS_ALLOW read /metrics with `Authorization:"
        " Bearer <token>`; empty: none can.",
    )
    shutdown_grace_seconds: float = Field(
        default=20.0,
        gt=0,
        description="On SIGTERM, how long requests in flight may finish before they are cancelled and the "
        "app shuts down (writes what its background writers hold); keep it under the orchestrator's grace.",
    )
    console_secret: str = Field(
        default="",
        description="Signs console session cookies; empty: a random one per `crosscart serve` (shared by"
        " its workers).",
    )
    console_secure_cookie: bool = Field(default=False, description="Console cookie only over HTTPS.")
    console_session_hours: float = Field(default=8.0, description="Console sign-in lifetime.")
    mlflow_ui_url: str = Field(default="", description="MLflow UI the console links to; empty: no link.")
    dask_scheduler: str = Field(
        default="",
        description="Dask cluster for feature jobs: 'local:N' or 'tcp://HOST:8786'; empty: in-process.",
    )
    identity_key: str = Field(
        default="crosscart-dev-identity-key",
        description="Secret used to protect resident ID numbers (HMAC). Change it in production.",
    )
    identity_key_version: int = Field(
        default=1, ge=1, description="Version of identity_key; raise it by one at each rotation."
    )
    identity_previous_keys: dict[int, str] = Field(
        default_factory=dict,
        description='Older identity keys still needed to recognise people, as JSON {"1": "old secret"}.',
    )
    search_backend: str = Field(
        default="memory",
        description="Search index: memory (per replica, in RAM: numpy postings scored as FTS5 scores them,"
        " the fastest lookups), fts5 (embedded SQLite, per replica; a file survives restarts) or postgresql.",
    )
    search_index_path: str = Field(default=":memory:", description="FTS5 index file (:memory: = in RAM).")
    search_ranker_path: str = Field(default="", description="Fitted search ranker (joblib); empty: BM25.")
    search_cache_mb: float = Field(
        default=64.0,
        gt=0,
        description="Estimated memory a worker's cache of search lookups may hold (MB); least recently"
        " used lookups go first.",
    )
    ads_token_secret: str = Field(
        default="",
        description="Secret signing sponsored-result impression tokens (HMAC); empty: a random one per"
        " `crosscart serve` (shared by its workers). Replicas must share one: set it.",
    )
    sponsored_slots: int = Field(default=2, ge=0, le=4, description="Sponsored results per search page.")
    ad_reserve_price: str = Field(
        default="0.30", description="Least cost per click of a sponsored result (CNY)."
    )

    @field_validator("metrics_allow")
    @classmethod
    def _metrics_allow_is_networks(cls, value: str) -> str:
        """A mistyped network fails at start, naming it, rather than in every worker the app builds."""
        _networks(value)
        return value

    @property
    def metrics_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The client networks `/metrics` answers (`serving.security.MetricsAccess`)."""
        return _networks(self.metrics_allow)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'crosscart.db').resolve()}"

    @property
    def resolved_mlflow_uri(self) -> str:
        return self.mlflow_uri or f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"

    @property
    def pending_policy(self):
        """The pending-order policy the API and the CLI pass to commerce (which never reads settings)."""
        from datetime import timedelta

        from commerce.services.pending import PendingPolicy

        return PendingPolicy(timedelta(minutes=self.pending_order_ttl_minutes), self.max_open_pending_orders)

    @property
    def identity_keyring(self):
        """The identity keys commerce hashes and recognises resident ID numbers with."""
        from commerce.identity import Keyring

        return Keyring(self.identity_key, self.identity_key_version, dict(self.identity_previous_keys))

    def ensure_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)


def _networks(names: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(name.strip(), strict=False) for name in names.split(",") if name.strip()]


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings; tests build `Settings(...)` directly instead."""
    return Settings()
