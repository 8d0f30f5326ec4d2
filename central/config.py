"""Settings of the central service, read from `LOCKER_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CentralSettings(BaseSettings):
    """Everything central needs to start; built once in `app.py` and passed down."""

    model_config = SettingsConfigDict(env_prefix="LOCKER_", extra="ignore")

    database_url: str = "sqlite:///./var/central.db"
    data_dir: Path = Path("var")
    # Derives courier access codes and encrypts webhook secrets at rest. When unset, a random key is
    # made once and kept in `<data_dir>/secret.key` (mode 0600) so the embedded default just works.
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    # Carriers register HTTPS endpoints; plain HTTP is for local development and tests only.
    allow_insecure_webhooks: bool = False
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_retry_hours: float = Field(default=72.0, ge=24.0)
    scheduler_enabled: bool = True
    db_pool_size: int = Field(default=10, ge=1)
