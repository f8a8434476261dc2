"""Dagster resources: the six databases, the SPC settings and the extract store.

Passwords reach Dagster only as `EnvVar`s, so the UI, the run config and the logs show
the variable's name, never its value. Source sessions are read-only at the session
level, whatever the account may do.
"""


from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import sqlalchemy as sa
from pydantic import Field

from store_anomaly_assets.config import ANALYTICS_PREFIX, DATABASES, AppConfig
from store_anomaly_assets.core.quality import DataQualitySettings
from store_anomaly_assets.core.settings import SpcSettings
from store_anomaly_assets.db import engines
from store_anomaly_assets.db.engines import DatabaseError, DatabaseMissingError


class Database(dg.ConfigurableResource):
    """One of the six databases. Without a host it is the embedded SQLite demo file."""

    database: str = Field(description="Database (schema) name; the SQLite file stem in demo mode")
    host: str | None = Field(default=None, description="MySQL host; blank for embedded SQLite")
    port: int = 3306
    user: str = "root"
    password: str = Field(default="", description="Set through an EnvVar, never inline")
    sqlite_dir: str = Field(default=".store_anomaly", description="Folder of the SQLite files")
    read_only: bool = Field(default=True, description="Open read-only sessions (sources)")
    connect_timeout_seconds: int = Field(default=10, description="DB_CONNECT_TIMEOUT_SECONDS")
    read_timeout_seconds: int = Field(default=600, description="DB_READ_TIMEOUT_SECONDS")
    tmp_table_mb: int = Field(default=0, description="SOURCE_TMP_TABLE_MB (source sessions)")
    bulk_load_rows: int = Field(default=0, description="BULK_LOAD_ROWS (analytics writes)")

    @property
    def sqlite_path(self) -> Path:
        return Path(self.sqlite_dir).absolute() / f"{self.database}.sqlite"

    @property
    def is_sqlite(self) -> bool:
        return not self.host

    def _url(self, create: bool = False) -> sa.URL:
        if self.is_sqlite:
            mode = "rwc" if create else ("ro" if self.read_only else "rw")
            return engines.sqlite_url(self.sqlite_path, mode)
        return engines.mysql_url(self.host, self.port, self.user, self.password, self.database)

    def _engine(self, url: sa.URL, read_only: bool) -> sa.Engine:
        return engines.create_engine(url, read_only, self.connect_timeout_seconds,
                                     self.read_timeout_seconds, self.tmp_table_mb,
                                     self.bulk_load_rows)

    def engine(self) -> sa.Engine:
        if self.is_sqlite and not self.sqlite_path.exists():
            raise DatabaseMissingError(
                f"no {self.database} database at {self.sqlite_path}: run `store-anomaly demo` "
                "(embedded demo) or `store-anomaly init-db`, or configure the *_HOST settings"
            )
        return self._engine(self._url(), self.read_only)

    def writable_engine(self) -> sa.Engine:
        """A read-write engine that creates a missing SQLite file (demo loading, init-db)."""
        if self.is_sqlite:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        return self._engine(self._url(create=True), read_only=False)

    def describe(self) -> str:
        """Where it points, for messages: never includes the password."""
        if self.is_sqlite:
            return f"sqlite {self.sqlite_path}"
        return f"mysql {self.user}@{self.host}:{self.port}/{self.database}"

    def explain(self, exc: BaseException) -> DatabaseError:
        """`exc` as one line naming this database: a timeout says which setting to raise."""
        return engines.explain(exc, self.database, self.describe(), self.password,
                               self.connect_timeout_seconds, self.read_timeout_seconds)


def database_resources(config: AppConfig) -> dict[str, Database]:
    """The six Database resources from the guide's environment variables.

    Passwords are `EnvVar`s, resolved by Dagster inside runs; outside a run call
    `resolved_databases` instead.
    """
    resources = {}
    for prefix, (key, _) in DATABASES.items():
        db = config.databases[prefix]
        settings: dict = {
            "database": config.database_name(prefix),
            "sqlite_dir": str(config.data_dir),
            "read_only": prefix != ANALYTICS_PREFIX,
            "connect_timeout_seconds": config.db_connect_timeout_seconds,
            "read_timeout_seconds": config.db_read_timeout_seconds,
        }
        if prefix == ANALYTICS_PREFIX:
            settings["bulk_load_rows"] = config.bulk_load_rows
        else:
            settings["tmp_table_mb"] = config.source_tmp_table_mb
        if db.configured:
            settings.update(host=db.host, port=db.port, user=db.user)
            if db.password.get_secret_value():
                settings["password"] = dg.EnvVar(f"{prefix}PASS")
        resources[key] = Database(**settings)
    return resources


def resolved_databases(config: AppConfig) -> dict[str, Database]:
    """The same resources with their secrets resolved, for use outside a Dagster run (CLI)."""
    return {key: resource.process_config_and_initialize()
            for key, resource in database_resources(config).items()}


class AnomalySettings(dg.ConfigurableResource, SpcSettings, DataQualitySettings):
    """The SPC and data-quality settings (core) as Dagster run config, plus the run's
    allow-list.

    Defaults come from the environment through `config.AppConfig`; a run may override any.
    """

    active_stores: list[int] = Field(default_factory=list, description="Allow-list; empty: all")
    log_retention_days: int = Field(default=90, description="LOG_RETENTION_DAYS")
    store_batch_size: int = Field(default=250, description="STORE_BATCH_SIZE")

    @classmethod
    def from_config(cls, config: AppConfig) -> AnomalySettings:
        return cls(**config.spc.model_dump(), **config.data_quality.model_dump(),
                   active_stores=list(config.active_stores),
                   store_batch_size=config.store_batch_size,
                   log_retention_days=config.log_retention_days)


class ExtractIOManager(dg.ConfigurableIOManager):
    """Keeps source extracts as one parquet file per asset and partition (business day).

    One file per day lets a ranged run write 230 days at once and a later run of any
    sub-range read exactly its days, without a staging table in the analytics database.
    """

    base_dir: str

    def _path(self, asset_key: dg.AssetKey, partition: str | None) -> Path:
        folder = Path(self.base_dir, *asset_key.path)
        return folder / f"{partition}.parquet" if partition else folder.with_suffix(".parquet")

    @staticmethod
    def _write(frame: pl.DataFrame, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.write_parquet(tmp)
        tmp.replace(path)  # atomic: a reader never sees half a file

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if not context.has_asset_partitions:
            self._write(obj, self._path(context.asset_key, None))
            return
        by_day = obj.partition_by("metric_date", as_dict=True) if obj.height else {}
        by_day = {str(k[0]): v for k, v in by_day.items()}
        empty = obj.clear()
        for key in context.asset_partition_keys:
            self._write(by_day.get(key, empty), self._path(context.asset_key, key))

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        if not context.has_asset_partitions:
            return pl.read_parquet(self._path(context.asset_key, None))
        paths = [self._path(context.asset_key, k) for k in context.asset_partition_keys]
        missing = [p.stem for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no extract for partition(s) "
                f"{missing[:5]}{'...' if len(missing) > 5 else ''}: materialize it first"
            )
        try:
            # One call reads the files in parallel: ~7x faster than a loop over 230 days.
            return pl.read_parquet(paths)
        except pl.exceptions.SchemaError:
            # Days written by an older version may differ in a column's type.
            return pl.concat([pl.read_parquet(p) for p in paths], how="vertical_relaxed")


__all__ = ["AnomalySettings", "Database", "DatabaseError", "DatabaseMissingError",
           "ExtractIOManager", "database_resources", "resolved_databases"]
