"""The run lock: one run at a time writes the analytics tables, and every run's end is logged.

The lock is a named server lock (GET_LOCK) on the analytics server, or a file lock beside
the SQLite files. Any account can take any named lock on MySQL, so the name is derived
from the analytics account's password: an account that can only read (Grafana) cannot
compute it, and so cannot block or delay the pipeline. Who holds the lock is recorded in
`store_anomaly_run_lock`, so a waiting run says which run it waits for, and the next run
recognises a run that was killed while holding it (its row was never released).

The resource is torn down at the end of every run, failed or not: that is where step
failures that happened outside a logged step (an IO write, an input load) get their
FAILED row, and where a failed run gets its closing step-11 row.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import socket
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO, Any

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr

from store_anomaly_assets.db.analytics.pipeline_log import (
    STEP_OF_ASSET,
    root_cause,
    step_statuses,
    utcnow,
    write_log_row,
)
from store_anomaly_assets.db.analytics.schema import store_anomaly_run_lock as holders
from store_anomaly_assets.defs.partitions import tag_range
from store_anomaly_assets.defs.resources import Database

_LOCK_WAIT_SLICE = 30  # seconds


class RunLockTimeout(RuntimeError):
    """Another run held the lock for longer than the run was willing to wait."""


@dataclass(frozen=True)
class Holder:
    run_id: str
    acquired_at: datetime
    released_at: datetime | None
    holder: str | None
    partition_start: date | None
    partition_end: date | None

    def describe(self) -> str:
        if self.released_at is not None:
            # The lock is held, but not by a pipeline run that recorded itself.
            return (f"a session that is not a recorded pipeline run holds it (the last run, "
                    f"{self.run_id}, released it at {self.released_at} UTC)")
        return f"run {self.run_id} ({self.holder}) has held it since {self.acquired_at} UTC"


def _run_range(run: dg.DagsterRun | None) -> tuple[date | None, date | None]:
    return tag_range(run.tags if run is not None else {})


class RunLock(dg.ConfigurableResource):
    """Held for a whole run, so two runs never write the analytics tables at once.

    A second run waits up to `timeout_seconds` (RUN_LOCK_TIMEOUT_SECONDS), saying which run
    it waits for, then fails with a FAILED log row. Runs execute in one process, so the
    lock spans every step.
    """

    analytics: Database
    name: str = "store_anomaly_pipeline"
    timeout_seconds: int = 900

    _connection: sa.Connection | None = PrivateAttr(default=None)
    _file: IO | None = PrivateAttr(default=None)

    @property
    def scope(self) -> str:
        """What the lock protects: the analytics database (named locks are server-wide)."""
        return self.analytics.database[:64]

    @property
    def lock_name(self) -> str:
        if not self.analytics.password:
            return f"{self.name}:{self.scope}"[:64]
        digest = hmac.new(self.analytics.password.encode(), f"{self.name}:{self.scope}".encode(),
                          hashlib.sha256).hexdigest()
        return f"{self.name}:{digest}"[:64]

    # -- holder table ---------------------------------------------------------------

    def _holder(self, engine: sa.Engine) -> Holder | None:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(holders.c.run_id, holders.c.acquired_at, holders.c.released_at,
                          holders.c.holder, holders.c.partition_start, holders.c.partition_end)
                .where(holders.c.lock_scope == self.scope)
            ).first()
        return Holder(*row) if row is not None else None

    def _record_holder(self, engine: sa.Engine, run_id: str, start: date | None,
                       end: date | None) -> None:
        values = {"run_id": run_id, "acquired_at": utcnow(), "released_at": None,
                  "holder": f"{socket.gethostname()} pid {os.getpid()}"[:128],
                  "partition_start": start, "partition_end": end}
        with engine.begin() as conn:
            conn.execute(holders.delete().where(holders.c.lock_scope == self.scope))
            conn.execute(holders.insert().values(lock_scope=self.scope, **values))

    def _record_release(self, engine: sa.Engine, run_id: str) -> None:
        with engine.begin() as conn:
            conn.execute(holders.update()
                         .where(holders.c.lock_scope == self.scope, holders.c.run_id == run_id)
                         .values(released_at=utcnow()))

    # -- acquiring ------------------------------------------------------------------

    def _try_server_lock(self, conn: sa.Connection, timeout: int) -> bool:
        # Wait in short slices: one long GET_LOCK would outlast the connection's read
        # timeout (DB_READ_TIMEOUT_SECONDS) and end as a lost connection, not a clear wait.
        deadline = time.monotonic() + timeout
        while True:
            wait = int(max(0, min(_LOCK_WAIT_SLICE, deadline - time.monotonic())))
            got = conn.execute(sa.text("SELECT GET_LOCK(:name, :timeout)"),
                               {"name": self.lock_name, "timeout": wait}).scalar()
            if got == 1:
                return True
            if time.monotonic() >= deadline:
                return False

    def _try_file_lock(self, handle: IO, timeout: int) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.2)

    def _acquire(self, engine: sa.Engine, log: Any) -> None:
        if self.analytics.is_sqlite:
            path = self.analytics.sqlite_path.with_name(f"{self.name}.lock")
            handle = path.open("w")
            attempt = lambda timeout: self._try_file_lock(handle, timeout)  # noqa: E731
        else:
            conn = engine.connect()
            attempt = lambda timeout: self._try_server_lock(conn, timeout)  # noqa: E731
        got = attempt(0)
        if not got:
            holder = self._holder(engine)
            waiting_for = holder.describe() if holder else "another session holds it"
            if log is not None:
                log.warning(f"waiting up to {self.timeout_seconds} s for the pipeline lock on "
                            f"{self.scope}: {waiting_for}")
            got = attempt(self.timeout_seconds)
        if not got:
            holder = self._holder(engine)
            (handle if self.analytics.is_sqlite else conn).close()
            raise RunLockTimeout(
                f"the pipeline lock on {self.scope} is taken: "
                f"{holder.describe() if holder else 'another session holds it'}; waited "
                f"{self.timeout_seconds} s (RUN_LOCK_TIMEOUT_SECONDS)"
            )
        if self.analytics.is_sqlite:
            self._file = handle
        else:
            self._connection = conn

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        engine = self.analytics.engine()
        run_id = context.run.run_id if context.run is not None else "unknown"
        start, end = _run_range(context.run)
        clock = time.perf_counter()
        try:
            self._acquire(engine, context.log)
        except Exception as exc:
            write_log_row(engine, run_id, start, end, 1, "FAILED",
                          duration_seconds=round(time.perf_counter() - clock, 3),
                          error_message=f"{type(exc).__name__}: {exc}",
                          step_name="acquire_run_lock")
            raise
        previous = self._holder(engine)
        if previous is not None and previous.released_at is None and previous.run_id != run_id:
            self._mark_interrupted(engine, context.instance, previous, run_id)
        self._record_holder(engine, run_id, start, end)

    def _mark_interrupted(self, engine: sa.Engine, instance: dg.DagsterInstance | None,
                          previous: Holder, found_by: str) -> None:
        """The previous holder never released the lock: it was killed or its host died."""
        message = (f"run {previous.run_id} ended without finishing: it took the pipeline lock "
                   f"at {previous.acquired_at} UTC ({previous.holder}) and never released it "
                   f"(killed or crashed); found by run {found_by}")
        write_log_row(engine, previous.run_id, previous.partition_start, previous.partition_end,
                      11, "FAILED", error_message=message, step_name="run_interrupted")
        run = instance.get_run_by_id(previous.run_id) if instance is not None else None
        if run is not None and not run.is_finished:
            instance.report_run_failed(run, message)

    # -- releasing ------------------------------------------------------------------

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        run_id = context.run.run_id if context.run is not None else "unknown"
        try:
            engine = self.analytics.engine()
            self._log_unlogged_failures(engine, context.instance, run_id,
                                        *_run_range(context.run))
            self._record_release(engine, run_id)
        finally:
            if self._connection is not None:
                self._connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"),
                                         {"name": self.lock_name})
                self._connection.close()
                self._connection = None
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
                self._file.close()
                self._file = None

    def _log_unlogged_failures(self, engine: sa.Engine, instance: dg.DagsterInstance | None,
                               run_id: str, start: date | None, end: date | None) -> None:
        """FAILED rows for step failures no logged step recorded, then the run's closing row."""
        if instance is None:
            return
        statuses = step_statuses(engine, run_id)
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
            event = entry.dagster_event
            step = STEP_OF_ASSET.get(event.step_key or "")
            if step is None or "FAILED" in statuses.get(step, ()):
                continue
            write_log_row(engine, run_id, start, end, step, "FAILED",
                          error_message=root_cause(event.step_failure_data.error))
            statuses.setdefault(step, set()).add("FAILED")
        failed = sorted(step for step, found in statuses.items() if "FAILED" in found)
        if failed and 11 not in statuses:
            write_log_row(engine, run_id, start, end, 11, "FAILED",
                          error_message="the run failed at step(s) "
                          + ", ".join(str(step) for step in failed))
