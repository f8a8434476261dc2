"""Running the real CLI the way a deployment does: a subprocess in a clean environment.

Shared by the modules that test the product end to end against MariaDB with their own
databases and least-privilege accounts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import pytest

from store_anomaly_assets.config import DATABASES, setting_names

HOST, PORT = "127.0.0.1", 3306

# Everything that could configure the product from the developer's shell.
_CLEARED_PREFIXES = (*DATABASES, "DB_", "RUN_LOCK_", "NOTIFY_", "STORE_ANOMALY_", "DAGSTER_")
_CLEARED_NAMES = {
    "ACTIVE_STORES", "ALERT_PROFILE", "BASELINE_MASKING", "BUSINESS_TIMEZONE",
    "DAILY_SCHEDULE_ENABLED", "DOW_WEEKS", "KNOWN_EVENTS", "KNOWN_EVENTS_FILE",
    "KNOWN_EVENT_ALERTS", "LABOR_COST_PER_HOUR", "LOG_LEVEL", "LOG_RETENTION_DAYS",
    "LOOKBACK_DAYS", "PARTITION_START_DATE", "REBASELINE_DAYS", "ROLLING_WINDOW",
    "SIGMA_CRITICAL", "SIGMA_WARNING",
    *setting_names(),
}


@dataclass(frozen=True)
class Captured:
    """One CLI invocation's output, kept for the password grep."""

    args: tuple[str, ...]
    stdout: str
    stderr: str


# Every output of every CLI invocation of this module.
CAPTURED: list[Captured] = []


def clean_environment() -> dict[str, str]:
    """os.environ without any database, behaviour or location setting."""
    return {
        k: v for k, v in os.environ.items()
        if k not in _CLEARED_NAMES and not k.startswith(_CLEARED_PREFIXES)
    }


def describe(args: Sequence[str]) -> str:
    return "store-anomaly " + " ".join(args)


def one_line_error(stderr: str) -> str:
    """The single `error: ...` line a refused command prints; fails otherwise."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("error:"), lines[0]
    return lines[0]


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


@dataclass
class Background:
    """A CLI process running in its own session, its output going to files."""

    args: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def finish(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"`{describe(self.args)}` did not finish within {timeout} s")
        self.record()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.record()

    def record(self) -> None:
        CAPTURED.append(Captured(self.args, self.stdout_path.read_text(errors="replace"),
                                 self.stderr_path.read_text(errors="replace")))

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@dataclass
class Cli:
    """`python -m store_anomaly_assets.cli` from `cwd` with exactly `env`."""

    cwd: Path
    env: dict[str, str]
    log_dir: Path
    background: list[Background] = field(default_factory=list)

    def command(self, args: Sequence[str]) -> list[str]:
        return [sys.executable, "-m", "store_anomaly_assets.cli", *args]

    def environment(self, env_overrides: dict[str, str] | None) -> dict[str, str]:
        return {**self.env, **(env_overrides or {})}

    def __call__(self, *args: str, env_overrides: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.Popen(self.command(args), cwd=self.cwd,
                                env=self.environment(env_overrides), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            CAPTURED.append(Captured(tuple(args), stdout, stderr))
            pytest.fail(f"`{describe(args)}` did not finish within {timeout} s; "
                        f"stderr ends with: {last_line(stderr)!r}")
        CAPTURED.append(Captured(tuple(args), stdout, stderr))
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    def start(self, name: str, *args: str,
              env_overrides: dict[str, str] | None = None) -> Background:
        """Start the CLI in the background (its own process group)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out, err = self.log_dir / f"{name}.out", self.log_dir / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(self.command(args), cwd=self.cwd,
                                    env=self.environment(env_overrides), stdout=stdout,
                                    stderr=stderr, start_new_session=True)
        job = Background(tuple(args), proc, out, err)
        self.background.append(job)
        return job

    def kill_background(self) -> None:
        for job in self.background:
            if job.proc.poll() is None:
                job.kill()


def expect_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"`{describe(result.args[3:])}` exited {result.returncode}: {last_line(result.stderr)}"
    )


def root_connection(database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(host=HOST, port=PORT, user="root", password="", database=database,
                           autocommit=True, charset="utf8mb4")


def execute_admin(statements: Sequence[str]) -> None:
    """Run statements as root without parameter substitution (the passwords have `%`)."""
    conn = root_connection()
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        conn.close()


