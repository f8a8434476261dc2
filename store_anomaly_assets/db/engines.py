"""SQLAlchemy engines for the six databases: pooled, with timeouts, read-only for sources.

Every MySQL connection has a connect, read and write timeout, so a server that stops
answering fails the step instead of hanging the run (and its lock) forever. Embedded
SQLite files are opened in URI mode, which never creates a file unless asked (demo,
init-db): a command run against the wrong data directory fails instead of making empty
databases.

Read-only MySQL source sessions can raise `tmp_table_size` and `max_heap_table_size`
(SOURCE_TMP_TABLE_MB): a backfill's bucketed GROUP BY over a chain's year outgrows the
server's default in-memory temporary table (16 MiB), and the table that spills to disk
makes the same query several times slower. A read-write engine created with
`bulk_load_rows` above 0 allows LOAD DATA LOCAL INFILE for range writes of at least that
many rows (db/analytics/writes.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa


class DatabaseMissingError(RuntimeError):
    """An embedded database file does not exist; the message says how to create it."""


class DatabaseError(RuntimeError):
    """A database failed or did not answer; the message names the database, never a secret."""


def _read_only_session(tmp_table_mb: int) -> Callable[[object, object], None]:
    def configure(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            cursor.execute("PRAGMA query_only = ON")
        else:
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            if tmp_table_mb > 0:
                size = tmp_table_mb * 1024 * 1024
                cursor.execute(f"SET SESSION tmp_table_size = {size}, "
                               f"max_heap_table_size = {size}")
        cursor.close()
    return configure


_ENGINES: dict[tuple, sa.Engine] = {}
# Each read-write engine's BULK_LOAD_ROWS, for the range writes (0: never LOAD DATA).
_BULK_LOAD_ROWS: dict[int, int] = {}


def create_engine(
    url: sa.URL, read_only: bool, connect_timeout: int = 10, read_timeout: int = 600,
    tmp_table_mb: int = 0, bulk_load_rows: int = 0,
) -> sa.Engine:
    """One pooled engine per database, mode, timeouts and session settings for the life
    of the process.

    `tmp_table_mb` sizes read-only MySQL sessions' in-memory temporary tables (0: the
    server's own); `bulk_load_rows` above 0 lets a read-write MySQL engine send LOAD DATA
    LOCAL INFILE for range writes of at least that many rows.
    """
    local_infile = not read_only and bulk_load_rows > 0
    key = (url, read_only, connect_timeout, read_timeout, tmp_table_mb, bulk_load_rows)
    engine = _ENGINES.get(key)
    if engine is not None:
        return engine
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": connect_timeout})
    else:
        engine = sa.create_engine(
            url, pool_pre_ping=True, pool_recycle=3600,
            connect_args={"connect_timeout": connect_timeout, "read_timeout": read_timeout,
                          "write_timeout": read_timeout,
                          **({"local_infile": True} if local_infile else {})},
        )
    if read_only:
        sa.event.listen(engine, "connect", _read_only_session(tmp_table_mb))
    engine = _ENGINES.setdefault(key, engine)
    _BULK_LOAD_ROWS[id(engine)] = bulk_load_rows if local_infile else 0
    return engine


def bulk_load_rows(engine: sa.Engine) -> int:
    """The engine's BULK_LOAD_ROWS: range writes this large use LOAD DATA (0: never)."""
    return _BULK_LOAD_ROWS.get(id(engine), 0)


@functools.cache
def local_infile_allowed(engine: sa.Engine) -> bool:
    """Whether LOAD DATA LOCAL INFILE works on this engine: the client enabled it and the
    server's `local_infile` is on. Asked once per engine."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        return False
    if bulk_load_rows(engine) <= 0:
        return False
    with engine.connect() as conn:
        return bool(conn.exec_driver_sql("SELECT @@GLOBAL.local_infile").scalar())


def dispose_engines() -> None:
    """Close every pooled connection, so a process can end without the server seeing drops."""
    for engine in _ENGINES.values():
        engine.dispose()
    local_infile_allowed.cache_clear()


def sqlite_url(path: Path, mode: str) -> sa.URL:
    """`mode`: ro (sources), rw (analytics) or rwc (create: demo loading, init-db)."""
    return sa.URL.create("sqlite", database=f"file:{path}?mode={mode}", query={"uri": "true"})


def mysql_url(host: str, port: int, user: str, password: str, database: str) -> sa.URL:
    return sa.URL.create("mysql+pymysql", username=user, password=password or None, host=host,
                         port=port, database=database, query={"charset": "utf8mb4"})


# MySQL/MariaDB errors that mean no session: the server could not be reached, the
# session was lost (a read timeout among them), or the account or database was refused.
UNREACHABLE = frozenset({2002, 2003, 2005, 2006})
LOST = 2013
REFUSED = frozenset({1044, 1045, 1049})
NO_SESSION = UNREACHABLE | REFUSED | {LOST}


def driver_error(exc: BaseException) -> tuple[int | None, str]:
    """The driver's error code (None when it has none) and the first line of its reason."""
    orig = getattr(exc, "orig", exc)
    args = getattr(orig, "args", ())
    code = args[0] if args and isinstance(args[0], int) else None
    reason = str(args[1] if code is not None and len(args) > 1 else orig).strip()
    return code, reason.splitlines()[0] if reason else type(orig).__name__


def explain(exc: BaseException, database: str, where: str, secret: str,
            connect_timeout: int, read_timeout: int) -> DatabaseError:
    """`exc` as one line naming the database; a timeout says which setting to raise."""
    code, reason = driver_error(exc)
    if secret:
        reason = reason.replace(secret, "***")
    if code == LOST or "timed out" in reason:
        return DatabaseError(f"database {database} ({where}) did not answer within "
                             f"{read_timeout} s (DB_READ_TIMEOUT_SECONDS): {reason}")
    if code in UNREACHABLE:
        return DatabaseError(f"cannot reach database {database} ({where}) within "
                             f"{connect_timeout} s (DB_CONNECT_TIMEOUT_SECONDS): {reason}")
    return DatabaseError(f"database {database} ({where}): {reason}")
