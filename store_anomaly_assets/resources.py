"""Dagster resources: the six databases, the SPC settings and the extract store.

Passwords reach Dagster only as `EnvVar`s, so the UI, the run config and the logs show
the variable's name, never its value. Source sessions are read-only at the session
level, whatever the account may do.
"""


import dataclasses
from pathlib import Path

import dagster as dg
import polars as pl
import sqlalchemy as sa
from pydantic import Field

from store_anomaly_assets.settings import DATABASE_PREFIXES, Settings, SpcSettings

# Resource key of each database, by the guide's environment prefix.
RESOURCE_KEYS: dict[str, str] = {
    "OPSHOP_": "opshop",
    "SALESORDER_": "sales_order",
    "OPPRODUCTION_": "opproduction",
    "OPEMPEFFICIENCY_": "opempefficiency",
    "OPQUALITYCONTROL_": "opqualitycontrol",
    "DBATEST_": "analytics",
}


def _make_read_only(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor.execute("PRAGMA query_only = ON")
    else:
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
    cursor.close()


class DatabaseMissingError(RuntimeError):
    """An embedded database file does not exist; the message says how to create it."""


class DatabaseError(RuntimeError):
    """A database failed or did not answer; the message names the database, never a secret."""


_ENGINES: dict[tuple[sa.URL, bool, int, int], sa.Engine] = {}


def create_engine(
    url: sa.URL, read_only: bool, connect_timeout: int = 10, read_timeout: int = 600
) -> sa.Engine:
    """One pooled engine per database, mode and timeouts for the life of the process.

    Every MySQL connection has a connect, read and write timeout, so a server that stops
    answering fails the step instead of hanging the run (and its lock) forever.
    """
    key = (url, read_only, connect_timeout, read_timeout)
    engine = _ENGINES.get(key)
    if engine is not None:
        return engine
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": connect_timeout})
    else:
        engine = sa.create_engine(
            url, pool_pre_ping=True, pool_recycle=3600,
            connect_args={"connect_timeout": connect_timeout, "read_timeout": read_timeout,
                          "write_timeout": read_timeout},
        )
    if read_only:
        sa.event.listen(engine, "connect", _make_read_only)
    return _ENGINES.setdefault(key, engine)


def dispose_engines() -> None:
    """Close every pooled connection, so a process can end without the server seeing drops."""
    for engine in _ENGINES.values():
        engine.dispose()


# MySQL client errors that mean the server did not answer or could not be reached.
_UNREACHABLE = {2002, 2003, 2005, 2006, 2013}


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

    @property
    def sqlite_path(self) -> Path:
        return Path(self.sqlite_dir).absolute() / f"{self.database}.sqlite"

    def sqlite_url(self, create: bool = False) -> sa.URL:
        # URI mode: opening never creates a file unless asked (demo, init-db), so a
        # command run with the wrong data directory fails instead of making empty files.
        mode = "rwc" if create else ("ro" if self.read_only else "rw")
        return sa.URL.create("sqlite", database=f"file:{self.sqlite_path}?mode={mode}",
                             query={"uri": "true"})

    @property
    def url(self) -> sa.URL:
        if not self.host:
            return self.sqlite_url()
        return sa.URL.create(
            "mysql+pymysql",
            username=self.user,
            password=self.password or None,
            host=self.host,
            port=self.port,
            database=self.database,
            query={"charset": "utf8mb4"},
        )

    @property
    def is_sqlite(self) -> bool:
        return not self.host

    def engine(self) -> sa.Engine:
        if self.is_sqlite and not self.sqlite_path.exists():
            raise DatabaseMissingError(
                f"no {self.database} database at {self.sqlite_path}: run `store-anomaly demo` "
                "(embedded demo) or `store-anomaly init-db`, or configure the *_HOST settings"
            )
        return create_engine(self.url, self.read_only, self.connect_timeout_seconds,
                             self.read_timeout_seconds)

    def writable_engine(self) -> sa.Engine:
        """A read-write engine that creates a missing SQLite file (demo loading, init-db)."""
        if self.is_sqlite:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            url = self.sqlite_url(create=True)
        else:
            url = self.url
        return create_engine(url, False, self.connect_timeout_seconds, self.read_timeout_seconds)

    def describe(self) -> str:
        """Where it points, for messages: never includes the password."""
        if self.is_sqlite:
            return f"sqlite {self.sqlite_path}"
        return f"mysql {self.user}@{self.host}:{self.port}/{self.database}"

    def explain(self, exc: BaseException) -> DatabaseError:
        """`exc` as one line naming this database: a timeout says which setting to raise."""
        orig = getattr(exc, "orig", exc)
        code = orig.args[0] if getattr(orig, "args", None) else None
        reason = str(orig.args[1] if code is not None and len(orig.args) > 1 else orig)
        reason = reason.replace(self.password, "***") if self.password else reason
        reason = reason.strip().splitlines()[0] if reason.strip() else type(orig).__name__
        if code == 2013 or "timed out" in reason:
            return DatabaseError(
                f"database {self.database} ({self.describe()}) did not answer within "
                f"{self.read_timeout_seconds} s (DB_READ_TIMEOUT_SECONDS): {reason}"
            )
        if code in _UNREACHABLE:
            return DatabaseError(
                f"cannot reach database {self.database} ({self.describe()}) within "
                f"{self.connect_timeout_seconds} s (DB_CONNECT_TIMEOUT_SECONDS): {reason}"
            )
        return DatabaseError(f"database {self.database} ({self.describe()}): {reason}")


def database_resources(settings: Settings) -> dict[str, Database]:
    """The six Database resources from the guide's environment variables.

    Passwords are `EnvVar`s, resolved by Dagster inside runs; outside a run call
    `resolved_databases` instead.
    """
    resources = {}
    for prefix, key in RESOURCE_KEYS.items():
        db = settings.databases[prefix]
        config: dict = {
            "database": db.database,
            "sqlite_dir": str(settings.data_dir),
            "read_only": prefix != "DBATEST_",
            "connect_timeout_seconds": settings.connect_timeout_seconds,
            "read_timeout_seconds": settings.read_timeout_seconds,
        }
        if db.configured:
            config.update(host=db.host, port=db.port, user=db.user or "root")
            if db.password:
                config["password"] = dg.EnvVar(f"{prefix}PASS")
        resources[key] = Database(**config)
    return resources


def resolved_databases(settings: Settings) -> dict[str, Database]:
    """The same resources with their secrets resolved, for use outside a Dagster run (CLI)."""
    return {key: resource.process_config_and_initialize()
            for key, resource in database_resources(settings).items()}


class AnomalySettings(dg.ConfigurableResource):
    """The guide's tunables; defaults come from the environment (see settings.py)."""

    rolling_window: int = 28
    sigma_warning: float = 2.0
    sigma_critical: float = 3.0
    dow_weeks: int = 8
    active_stores: list[int] = Field(default_factory=list, description="Allow-list; empty: all")
    baseline_masking: str = Field(
        default=SpcSettings.baseline_masking,
        description="off, exclude or clip: days beyond SIGMA_CRITICAL in later baselines",
    )
    rebaseline_days: int = Field(
        default=SpcSettings.rebaseline_days,
        description="Consecutive masked days on one side that re-baseline to the new level",
    )
    alert_profile: str = Field(default=SpcSettings.alert_profile, description="guide or quiet")
    known_events: str = Field(default=SpcSettings.known_events,
                              description="Built-in known-event calendar: us or none")
    known_events_file: str | None = Field(
        default=None, description="CSV of planned closures and promotions"
    )
    known_event_alerts: str = Field(default=SpcSettings.known_event_alerts,
                                    description="mark (INFO, EVENT:) or suppress")
    labor_cost_per_hour: float = Field(default=SpcSettings.labor_cost_per_hour,
                                       description="USD per labor hour, for impact_usd")

    @classmethod
    def _spc_fields(cls) -> list[str]:
        """The SpcSettings fields this resource exposes as Dagster config."""
        return [f.name for f in dataclasses.fields(SpcSettings) if f.name in cls.model_fields]

    @classmethod
    def from_settings(cls, settings: Settings) -> "AnomalySettings":
        values = {name: getattr(settings.spc, name) for name in cls._spc_fields()}
        return cls(**values, active_stores=list(settings.active_stores))

    @property
    def spc(self) -> SpcSettings:
        return SpcSettings(**{name: getattr(self, name) for name in self._spc_fields()})


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


__all__ = ["DATABASE_PREFIXES", "RESOURCE_KEYS", "AnomalySettings", "Database",
           "DatabaseError", "DatabaseMissingError", "ExtractIOManager", "create_engine",
           "database_resources", "resolved_databases"]
