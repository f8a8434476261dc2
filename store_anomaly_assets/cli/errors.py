"""The CLI's error contract: every expected failure as one line and an exit status.

2: the user can fix the input (an argument, a setting, a table, a database); 1: a run
failed, and the line is its cause. Passwords never reach the line: every configured
password, as given and URL-encoded, is replaced by `***`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

import sqlalchemy as sa
from typer import Abort

try:  # recent Typer releases carry their own copy of Click: its usage errors are these
    from typer._click.exceptions import (
        BadParameter,
        ClickException,
        MissingParameter,
        UsageError,
    )
except ModuleNotFoundError:  # pragma: no cover - an older Typer, on the click package
    from click.exceptions import BadParameter, ClickException, MissingParameter, UsageError

from store_anomaly_assets.config import DATABASES, SettingsError
from store_anomaly_assets.db.engines import (
    NO_SESSION,
    DatabaseError,
    DatabaseMissingError,
    driver_error,
)
from store_anomaly_assets.defs.resources import Database


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


class UsageProblem(UsageError):
    """Arguments that do not go together: printed after the command's usage line.

    Raised inside a command, Click attaches the command's context (for its usage).
    """


class RunFailed(Exception):
    """A Dagster run that failed; the message is its cause. Exit status 1."""


class DatabaseProblem(Exception):
    """A driver error on a known database; `database_error_message` words it."""

    def __init__(self, where: str, error: sa.exc.DBAPIError) -> None:
        super().__init__(where, error)
        self.where = where
        self.error = error


# ---------------------------------------------------------------------------- databases


@contextmanager
def on_database(db: Database, writable: bool = False) -> Iterator[sa.Engine]:
    """The database's engine; a driver error in the block is reported naming the database."""
    try:
        yield db.writable_engine() if writable else db.engine()
    except sa.exc.DBAPIError as exc:
        raise DatabaseProblem(db.describe(), exc) from exc


def require_tables(db: Database, engine: sa.Engine, tables: Collection[str]) -> None:
    """Refuse to go on when analytics tables are missing: say how to create them."""
    missing = sorted(set(tables) - set(sa.inspect(engine).get_table_names()))
    if missing:
        what = (f"table {missing[0]} is" if len(missing) == 1
                else f"tables {', '.join(missing)} are")
        raise CliError(f"analytics {what} missing in {db.describe()}: run `store-anomaly "
                       "init-db` (or `store-anomaly demo` for the embedded demo)")


_TABLE_IN_MESSAGE = re.compile(r"(?:Table '(?:[^'.]+\.)?([^']+)'|no such table: (\w+))")
_TABLE_IN_STATEMENT = re.compile(
    r"\b(?:FROM|JOIN|UPDATE|INTO)\s+[`\"]?(?:\w+[`\"]?\.[`\"]?)?(\w+)", re.IGNORECASE
)


def database_error_message(error: sa.exc.DBAPIError, where: str) -> str:
    """One line for a driver error: a failed connection, or a table that does not fit.

    A missing table or column (1146, 1054) is a schema problem in a reachable database,
    never "cannot connect"; the line names the table and the database.
    """
    code, reason = driver_error(error)
    if code in NO_SESSION or (code is None and "unable to open database" in reason):
        return f"cannot connect to {where}: {reason}"
    found = _TABLE_IN_MESSAGE.search(reason) or _TABLE_IN_STATEMENT.search(error.statement or "")
    table = next((g for g in found.groups() if g), None) if found else None
    if table is None:
        return f"database error in {where}: {reason}"
    if code == 1146 or reason.startswith("no such table"):
        return f"table {table} is missing in {where}: {reason}"
    if code == 1054 or reason.startswith("no such column"):
        return f"table {table} in {where} lacks a column: {reason}"
    return f"table {table} in {where}: {reason}"


# ---------------------------------------------------------------------------- secrets


def secrets() -> list[str]:
    """Every configured password, as given and URL-encoded, longest first."""
    passwords = {os.environ.get(f"{prefix}PASS", "").strip() for prefix in DATABASES}
    forms = {form for p in passwords if p for form in (p, quote_plus(p), quote(p, safe=""))}
    return sorted(forms, key=len, reverse=True)


def scrub(message: str, hidden: Sequence[str] | None = None) -> str:
    """The message's first line with every secret replaced by ***."""
    for secret in secrets() if hidden is None else hidden:
        if secret:
            message = message.replace(secret, "***")
    message = message.strip()
    return message.splitlines()[0] if message else message


# ---------------------------------------------------------------------------- usage


def usage_line(exc: UsageError, prog: str) -> str:
    """The refused command's usage on one line: `Usage: store-anomaly alerts [OPTIONS]`."""
    usage = exc.ctx.get_usage() if exc.ctx is not None else (
        f"Usage: {prog} [OPTIONS] COMMAND [ARGS]...")
    return " ".join(usage.split())


def usage_message(exc: UsageError) -> str:
    """What the parser refused, naming the option: `--limit: 0 is not between ...`."""
    param = getattr(exc, "param", None)
    if isinstance(exc, MissingParameter) and param is not None:
        is_option = any(o.startswith("-") for o in getattr(param, "opts", ()))
        return f"missing {'option' if is_option else 'argument'} {_param_name(param)}"
    if isinstance(exc, BadParameter) and param is not None:
        return f"{_param_name(param)}: {exc.message}"
    message = exc.format_message().strip() or "a command is needed (--help lists them)"
    return message[:1].lower() + message[1:]


def _param_name(param: object) -> str:
    opts = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
    if opts:
        return opts[0]
    return getattr(param, "metavar", None) or str(getattr(param, "name", "?")).upper()


# ---------------------------------------------------------------------------- the table


# Every error the CLI expects, mapped to its one line and exit status (2: fix the input,
# 1: a run failed). Anything else is a bug and keeps its traceback. A usage error's line
# follows the command's usage line.
ERRORS: tuple[tuple[type[BaseException], Callable[[Any], str], int], ...] = (
    (UsageError, usage_message, 2),
    (ClickException, lambda exc: exc.format_message(), 2),
    (Abort, lambda exc: "aborted", 1),
    (RunFailed, str, 1),
    (DatabaseProblem, lambda exc: database_error_message(exc.error, exc.where), 2),
    (sa.exc.DBAPIError, lambda exc: database_error_message(exc, "a database"), 2),
    (CliError, str, 2),
    (SettingsError, str, 2),
    (DatabaseMissingError, str, 2),
    (DatabaseError, str, 2),
    (KeyboardInterrupt, lambda exc: "interrupted", 130),
)
EXPECTED = tuple(kind for kind, _, _ in ERRORS)


def explain(exc: BaseException) -> tuple[str, int]:
    """An expected error's one line (secrets scrubbed) and exit status."""
    say, code = next((say, code) for kind, say, code in ERRORS if isinstance(exc, kind))
    return scrub(say(exc)), code


def error_lines(exc: BaseException, prog: str) -> tuple[list[str], int]:
    """What stderr shows for an expected error (the `error:` line last), and the status."""
    message, code = explain(exc)
    usage = [usage_line(exc, prog)] if isinstance(exc, UsageError) else []
    return [*usage, f"error: {message}"], code
