"""Every setting the product reads, as one typed model, read once.

`load_config()` reads the process environment, then a `.env` file in the working
directory (the operational guide's convention), then the defaults below, validates
everything and returns an `AppConfig`. The CLI and the Dagster code location each call it
once and hand the result down; nothing reads the environment at import. Environment
names are the guide's: `ROLLING_WINDOW`, `<PREFIX>HOST`, ... (case-insensitive).
"""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import load_dotenv
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from store_anomaly_assets.core.quality import DataQualitySettings
from store_anomaly_assets.core.settings import SpcSettings

# The six databases, keyed by the guide's environment prefixes: the Dagster resource key
# and the default database name, which is also the embedded SQLite file's name.
DATABASES: dict[str, tuple[str, str]] = {
    "OPSHOP_": ("opshop", "luckyus_opshop"),
    "SALESORDER_": ("sales_order", "luckyus_sales_order"),
    "OPPRODUCTION_": ("opproduction", "luckyus_opproduction"),
    "OPEMPEFFICIENCY_": ("opempefficiency", "luckyus_opempefficiency"),
    "OPQUALITYCONTROL_": ("opqualitycontrol", "luckyus_opqualitycontrol"),
    "DBATEST_": ("analytics", "test"),
}
ANALYTICS_PREFIX = "DBATEST_"
SOURCE_PREFIXES = tuple(p for p in DATABASES if p != ANALYTICS_PREFIX)

# The data directory (demo chain, extracts, default DAGSTER_HOME) is per user, not per
# working directory, so every command finds the same one wherever it is started.
DEFAULT_DATA_DIR = Path("~/.store_anomaly")


class SettingsError(ValueError):
    """A setting has a value the product cannot use; the message names the setting."""

    @classmethod
    def from_validation(cls, error: ValidationError, prefix: str = "") -> SettingsError:
        """The first problem pydantic found, as one line naming the environment variable."""
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = f"{prefix}{field}".upper()
        reason = first["msg"].removeprefix("Value error, ")
        if not field:
            return cls(f"settings: {reason}")
        value = first.get("input")
        secret = any(word in name for word in ("PASS", "SECRET"))
        shown = f"={value!r}" if isinstance(value, str | int | float) and not secret else ""
        return cls(f"setting {name}{shown}: {reason}")


def _env(**overrides: object) -> SettingsConfigDict:
    return SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                              case_sensitive=False, env_ignore_empty=True, frozen=True,
                              **overrides)


class DatabaseSettings(BaseSettings):
    """One database's connection, from `<PREFIX>HOST` ... `<PREFIX>DB`.

    Without a host it is the embedded SQLite file named after the database.
    """

    model_config = _env()

    host: str | None = None
    port: int = Field(3306, ge=1, le=65535)
    user: str = "root"
    # `<PREFIX>PASS`: the field's environment name is set per prefix (see `_database`).
    password: SecretStr = SecretStr("")
    db: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.host)


class NotifySettings(BaseSettings):
    """Alert notifications (`NOTIFY_*`): where the routing file is, how the sensors behave.

    Who receives what is in the routing file; without it the sensors send nothing.
    """

    model_config = _env(env_prefix="NOTIFY_", populate_by_name=True)

    routing_file: Path = Path("config/routing.yaml")
    interval_seconds: int = Field(300, ge=30)
    lookback_days: int = Field(7, ge=1)
    sensors_enabled: bool = True
    timeout_seconds: int = Field(30, ge=1)
    max_alerts_per_message: int = Field(50, ge=1)
    # Links to runs in data-team messages; the name Dagster's own docs use.
    webserver_url: str | None = Field(None, validation_alias="DAGSTER_WEBSERVER_URL")

    @field_validator("routing_file")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("webserver_url")
    @classmethod
    def _no_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") or None if value else None


class WebSettings(BaseSettings):
    """The acknowledgment web app (`store-anomaly serve`) and the links messages carry.

    `ACK_LINK_SECRET` signs the links; without it, messages carry no acknowledgment link
    and `serve` refuses to start. `SERVE_PUBLIC_URL` is the address people open (the
    reverse proxy's, in production); by default the server's own.
    """

    model_config = _env()

    serve_host: str = "127.0.0.1"
    serve_port: int = Field(8088, ge=1, le=65535)
    serve_public_url: str | None = None
    ack_link_secret: SecretStr | None = None
    ack_link_ttl_hours: int = Field(168, ge=1, le=24 * 366)
    grafana_url: str | None = None

    @field_validator("ack_link_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (e.g. `openssl rand -hex 32`)")
        return value

    @field_validator("serve_public_url", "grafana_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("give an http:// or https:// address")
        return value.rstrip("/")

    @property
    def public_url(self) -> str:
        return self.serve_public_url or f"http://{self.serve_host}:{self.serve_port}"


def _store_ids(value: object) -> object:
    """ACTIVE_STORES: `1127, 1128` (empty means every active store)."""
    if not isinstance(value, str):
        return value
    parts = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
    bad = [p for p in parts if not p.lstrip("-").isdigit()]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a store id")
    return tuple(sorted({int(p) for p in parts}))


class AppConfig(BaseSettings, SpcSettings, DataQualitySettings):
    """The product's settings: SPC and data quality (inherited), partitions, storage,
    timeouts, logging."""

    model_config = _env()

    partition_start_date: date = Field(date(2025, 7, 1), description="First business day")
    business_timezone: str = "America/New_York"
    lookback_days: int = Field(3, ge=0, le=366, description="Days re-processed for late rows")
    active_stores: Annotated[tuple[int, ...], NoDecode] = ()
    store_anomaly_data_dir: Path = DEFAULT_DATA_DIR
    daily_schedule_enabled: bool | None = Field(
        None, description="Default: on with MySQL databases, off for the embedded demo")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_retention_days: int = Field(90, ge=1)
    # Every database connection: how long to wait for the server to accept, and for any
    # one answer (a backfill's source aggregate must fit in the read timeout).
    db_connect_timeout_seconds: int = Field(10, ge=1, le=3600)
    db_read_timeout_seconds: int = Field(600, ge=1, le=86400)
    # How long a run waits for another run's lock before it fails, saying who holds it.
    run_lock_timeout_seconds: int = Field(900, ge=0, le=86400)
    # Scale (docs/scaling.md). The in-memory temporary table limit of the read-only source
    # sessions, in MiB (0: the server's own); a backfill's aggregates must fit in it.
    source_tmp_table_mb: int = Field(256, ge=0, le=65536)
    # Range writes of at least this many rows use LOAD DATA LOCAL INFILE (0: never).
    bulk_load_rows: int = Field(20000, ge=0)
    # Stores scored, rated and alerted together: bounds a run's memory at any chain size.
    store_batch_size: int = Field(250, ge=1)

    databases: dict[str, DatabaseSettings] = Field(default_factory=dict, exclude=True)
    notify: NotifySettings = Field(default_factory=NotifySettings, exclude=True)
    web: WebSettings = Field(default_factory=WebSettings, exclude=True)

    _validate_ids = field_validator("active_stores", mode="before")(
        classmethod(lambda cls, value: _store_ids(value)))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("business_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    @property
    def data_dir(self) -> Path:
        return self.store_anomaly_data_dir.expanduser().absolute()

    @property
    def embedded(self) -> bool:
        """True when no database host is configured: the SQLite demo chain."""
        return not any(db.configured for db in self.databases.values())

    @property
    def schedule_enabled(self) -> bool:
        # The embedded demo chain ends on a fixed day, so its schedule would ask for days
        # without data: off unless asked for.
        if self.daily_schedule_enabled is not None:
            return self.daily_schedule_enabled
        return not self.embedded

    def database_name(self, prefix: str) -> str:
        return self.databases[prefix].db or DATABASES[prefix][1]


def setting_names() -> set[str]:
    """Every environment variable the product reads (tests clear them for a clean slate)."""
    names = {name.upper() for name, field in AppConfig.model_fields.items()
             if not field.exclude}
    names |= {(field.validation_alias or f"NOTIFY_{name}").upper()
              for name, field in NotifySettings.model_fields.items()}
    names |= {name.upper() for name in WebSettings.model_fields}
    names |= {f"{prefix}{name}" for prefix in DATABASES
              for name in ("HOST", "PORT", "USER", "PASS", "DB")}
    return names


@functools.cache
def _database(prefix: str) -> type[DatabaseSettings]:
    """DatabaseSettings reading `<prefix>HOST` ...; the password is `<prefix>PASS`."""
    return create_model(  # type: ignore[call-overload]
        f"{prefix.strip('_').title()}DatabaseSettings", __base__=DatabaseSettings,
        __config__=None,
        password=(SecretStr, Field(SecretStr(""), validation_alias=f"{prefix}PASS")),
    )


def load_config(env_file: str | Path | None = ".env", **overrides: object) -> AppConfig:
    """Read and validate every setting once; a bad value raises SettingsError naming it.

    `overrides` replace individual settings (tests, benchmarks), by field name. The `.env`
    file's values also go into the process environment (without replacing what is set):
    Dagster resolves passwords as `EnvVar`s from there, so a password kept only in `.env`
    works for runs as it does here.
    """
    if env_file is not None and Path(env_file).is_file():
        load_dotenv(env_file, override=False)
    databases = {}
    for prefix in DATABASES:
        try:
            databases[prefix] = _database(prefix)(_env_prefix=prefix, _env_file=env_file)
        except ValidationError as exc:
            raise SettingsError.from_validation(exc, prefix) from None
    try:
        notify = NotifySettings(_env_file=env_file)
    except ValidationError as exc:
        raise SettingsError.from_validation(exc, "NOTIFY_") from None
    try:
        web = WebSettings(_env_file=env_file)
    except ValidationError as exc:
        raise SettingsError.from_validation(exc) from None
    try:
        return AppConfig(_env_file=env_file, databases=databases, notify=notify, web=web,
                         **overrides)
    except ValidationError as exc:
        raise SettingsError.from_validation(exc) from None
