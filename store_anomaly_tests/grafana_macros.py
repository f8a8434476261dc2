"""Expand Grafana 11 MySQL-datasource SQL the way Grafana does, so tests can run panel queries.

Grafana turns a panel's ``rawSql`` into the statement it sends to MySQL in two stages, and
:func:`expand` does the same, in the same order:

1. **Template variables** (browser side, ``TemplateSrv.replace`` called with the SQL
   datasource's ``interpolateVariable``). Recognised forms: ``$var``, ``${var}``,
   ``[[var]]``, ``${var:fmt}`` and ``[[var:fmt]]``.

   - A variable given as a ``str`` is a single-valued variable (neither *multi* nor
     *include All*): the value is inserted **unquoted**, single quotes doubled
     (``O'Brien`` -> ``O''Brien``); write ``'$var'`` in SQL to get a string literal.
   - A variable given as a ``list`` is a multi-value / include-All variable: every value is
     quoted and the values are comma-joined (``['1127', '1128']`` -> ``'1127','1128'``),
     also when only one value is selected. This is what ``store_id IN ($store)`` needs.
   - ``ALL`` (``"$__all"``, alone or as ``[ALL]``) selects *All*: without a custom "all
     value" Grafana substitutes every option of the variable, so pass those options in
     ``all_values={"store": [...]}``.
   - Explicit formats bypass the datasource quoting: ``csv`` (``a,b``), ``sqlstring``
     (``'a','b'``, quotes doubled), ``singlequote`` (``'a','b'``, quotes backslash-escaped),
     ``doublequote``, ``pipe``, ``raw``, ``json``, ``text``. Other formats raise ValueError.
   - Built-ins ``$__from`` / ``$__to`` give epoch milliseconds (``${__from:date}`` gives
     ISO 8601, ``${__from:date:seconds}`` epoch seconds). Unknown names are left as they
     are, like Grafana does (``$__timeFilter`` is not a variable, so it survives stage 1).

2. **Macros** (server side, ``pkg/tsdb/mysql/macros.go``), matched by Grafana's own
   pattern ``\\$(\\w+)\\(([^)]*)\\)`` (so macro arguments cannot contain ``)``)::

       $__time(c) / $__timeEpoch(c)  UNIX_TIMESTAMP(c) as time_sec
       $__timeFilter(c)              c BETWEEN FROM_UNIXTIME(<from>) AND FROM_UNIXTIME(<to>)
       $__timeFrom() / $__timeTo()   FROM_UNIXTIME(<from>) / FROM_UNIXTIME(<to>)
       $__timeGroup(c, 1d[, fill])   UNIX_TIMESTAMP(c) DIV 86400 * 86400
       $__timeGroupAlias(c, 1d)      UNIX_TIMESTAMP(c) DIV 86400 * 86400 AS "time"
       $__unixEpochFilter(c)         c >= <from> AND c <= <to>
       $__unixEpochFrom() / To()     <from> / <to>   (epoch seconds)
       $__unixEpochNanoFilter(c), $__unixEpochNanoFrom(), $__unixEpochNanoTo()
       $__unixEpochGroup(c, 1h)      c DIV 3600 * 3600     (and ...GroupAlias: + AS "time")

   ``AS "time"`` is valid MySQL and MariaDB (a quoted alias) as long as ``ANSI_QUOTES`` is
   off, which is the default on both. Refer to the alias unquoted (``ORDER BY time``):
   ``ORDER BY "time"`` would sort by a constant string.

Time handling follows Grafana: ``time_from`` / ``time_to`` become whole epoch seconds
(floored); naive datetimes are taken as UTC. ``FROM_UNIXTIME`` and ``UNIX_TIMESTAMP`` use the
session time zone, so run the expanded SQL with ``SET time_zone = '+00:00'`` to match the
provisioned datasource (``jsonData.timezone: "+00:00"``). Interval units ``d``/``w`` are
86400/604800 s (Grafana computes them with the server's local calendar; a Grafana server in
UTC, as in the official image, gives exactly these); ``M``/``y`` are computed from now like
Grafana; anything else is a Go duration (``30s``, ``5m``, ``1h30m``, ``100ms``).

Stricter than Grafana in two places, on purpose: a macro that needs a column raises
ValueError when the column is empty, and so does an unknown ``${var:format}``. The check
Grafana applies before expanding macros (no ``user()``, ``current_user``, ``session_user()``,
``system_user()`` or ``SHOW GRANTS``) raises ValueError too.
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

__all__ = ["ALL", "expand", "expand_macros", "interpolate_variables", "parse_interval"]

ALL = "$__all"
"""The value Grafana stores for a variable set to *All*."""

VariableValue = str | Sequence[str]

# public/app/features/variables/utils.ts: variableRegex (JavaScript \w is ASCII-only).
_VARIABLE_RE = re.compile(
    r"\$(\w+)"
    r"|\[\[(\w+?)(?::(\w+))?\]\]"
    r"|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}",
    re.ASCII,
)

# pkg/tsdb/mysql/macros.go: sExpr and restrictedRegExp.
_MACRO_RE = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_RESTRICTED_RE = re.compile(
    r"([\s]*show[\s]+grants|[\s,]session_user\([^\)]*\)|[\s,]current_user(\([^\)]*\))?"
    r"|[\s,]system_user\([^\)]*\)|[\s,]user\([^\)]*\))([\s,;]|$)",
    re.IGNORECASE | re.MULTILINE,
)

# Go time.ParseDuration units, in seconds.
_GO_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "\u00b5s": Decimal("1e-6"),
    "\u03bcs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DATE_UNIT = re.compile(r"^(\d+)([dwMy])$")


def expand(
    sql: str,
    variables: Mapping[str, VariableValue],
    time_from: datetime,
    time_to: datetime,
    *,
    all_values: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Return ``sql`` as Grafana 11 would send it to MySQL: variables first, then macros.

    ``variables`` maps a variable name (without ``$``) to its current value: a ``str`` for a
    single-valued variable, a ``list`` for a multi-value / include-All variable, or
    :data:`ALL`, for which ``all_values[name]`` lists every option value.
    """
    interpolated = interpolate_variables(
        sql, variables, time_from=time_from, time_to=time_to, all_values=all_values
    )
    return expand_macros(interpolated, time_from, time_to)


# --------------------------------------------------------------------------- variables


def interpolate_variables(
    sql: str,
    variables: Mapping[str, VariableValue],
    *,
    time_from: datetime | None = None,
    time_to: datetime | None = None,
    all_values: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Stage 1: replace template variables as Grafana's MySQL datasource does."""
    all_values = all_values or {}

    def replace(match: re.Match[str]) -> str:
        simple, bracket, bracket_fmt, braced, field_path, braced_fmt = match.groups()
        name = simple or bracket or braced
        fmt = bracket_fmt or braced_fmt
        if name in ("__from", "__to") and name not in variables:
            moment = time_from if name == "__from" else time_to
            if moment is None:
                return match.group(0)
            return _format_builtin_time(moment, fmt)
        if name not in variables:
            return match.group(0)
        if field_path:
            raise ValueError(f"field paths are not supported: {match.group(0)}")
        if fmt == "text" and _is_all(variables[name]):
            return "All"
        value = _resolve(name, variables[name], all_values)
        if fmt is None:
            return _mysql_interpolate(value)
        return _format(value, fmt, name)

    return _VARIABLE_RE.sub(replace, sql)


def _is_all(value: VariableValue) -> bool:
    return value == ALL or (not isinstance(value, str) and list(value) == [ALL])


def _resolve(
    name: str, value: VariableValue, all_values: Mapping[str, Sequence[str]]
) -> str | list[str]:
    if _is_all(value):
        if name not in all_values:
            raise ValueError(f"variable {name!r} is All: pass its options in all_values")
        return [str(v) for v in all_values[name]]
    if isinstance(value, str):
        return value
    return [str(v) for v in value]


def _quote_literal(value: str) -> str:
    # public/app/plugins/datasource/mysql/MySqlQueryModel.ts: quoteLiteral
    return "'" + value.replace("'", "''") + "'"


def _mysql_interpolate(value: str | list[str]) -> str:
    # SqlDatasource.interpolateVariable: a string of a single-valued variable is escaped but
    # not quoted; an array (multi-value or All) is quoted value by value and comma-joined.
    if isinstance(value, str):
        return value.replace("'", "''")
    return ",".join(_quote_literal(v) for v in value)


def _format(value: str | list[str], fmt: str, name: str) -> str:
    # packages/grafana-data/.../formatRegistry (the subset that makes sense in SQL).
    values = [value] if isinstance(value, str) else value
    if fmt in ("csv", "raw"):
        return ",".join(values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "json":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if fmt == "text":
        return " + ".join(values)
    raise ValueError(f"unsupported variable format {fmt!r} in ${{{name}:{fmt}}}")


def _format_builtin_time(moment: datetime, fmt: str | None) -> str:
    millis = _epoch_seconds(moment) * 1000 + _as_utc(moment).microsecond // 1000
    if fmt is None:
        return str(millis)
    if fmt in ("date", "date:iso"):
        utc = datetime.fromtimestamp(millis / 1000, tz=UTC)
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"
    if fmt == "date:seconds":
        return str(millis // 1000)
    raise ValueError(f"unsupported time format {fmt!r}")


# ------------------------------------------------------------------------------ macros


def expand_macros(sql: str, time_from: datetime, time_to: datetime) -> str:
    """Stage 2: expand ``$__macro(...)`` as Grafana's MySQL backend does."""
    if _RESTRICTED_RE.search(sql):
        raise ValueError(
            "Show grants, session_user(), current_user(), system_user() or user() "
            "not allowed in query"
        )
    start, end = _as_utc(time_from), _as_utc(time_to)

    def replace(match: re.Match[str]) -> str:
        args = [arg.strip(" ") for arg in match.group(2).split(",")]
        return _evaluate(match.group(1), args, start, end)

    return _MACRO_RE.sub(replace, sql)


def _evaluate(name: str, args: list[str], start: datetime, end: datetime) -> str:
    frm, to = _epoch_seconds(start), _epoch_seconds(end)
    if name in ("__timeEpoch", "__time"):
        return f"UNIX_TIMESTAMP({_column(name, args)}) as time_sec"
    if name == "__timeFilter":
        col = _column(name, args)
        if frm < 0:
            return (
                f"{col} BETWEEN DATE_ADD(FROM_UNIXTIME(0), INTERVAL {frm} SECOND) "
                f"AND FROM_UNIXTIME({to})"
            )
        return f"{col} BETWEEN FROM_UNIXTIME({frm}) AND FROM_UNIXTIME({to})"
    if name == "__timeFrom":
        return f"FROM_UNIXTIME({frm})"
    if name == "__timeTo":
        return f"FROM_UNIXTIME({to})"
    if name == "__timeGroup":
        seconds = _group_interval(name, args, "'\"")
        return f"UNIX_TIMESTAMP({_column(name, args)}) DIV {seconds:.0f} * {seconds:.0f}"
    if name == "__timeGroupAlias":
        return _evaluate("__timeGroup", args, start, end) + ' AS "time"'
    if name == "__unixEpochFilter":
        col = _column(name, args)
        return f"{col} >= {frm} AND {col} <= {to}"
    if name == "__unixEpochNanoFilter":
        col = _column(name, args)
        return f"{col} >= {_epoch_nanos(start)} AND {col} <= {_epoch_nanos(end)}"
    if name == "__unixEpochFrom":
        return str(frm)
    if name == "__unixEpochTo":
        return str(to)
    if name == "__unixEpochNanoFrom":
        return str(_epoch_nanos(start))
    if name == "__unixEpochNanoTo":
        return str(_epoch_nanos(end))
    if name == "__unixEpochGroup":
        seconds = _group_interval(name, args, "'")
        text = _go_float_v(seconds)
        return f"{_column(name, args)} DIV {text} * {text}"
    if name == "__unixEpochGroupAlias":
        return _evaluate("__unixEpochGroup", args, start, end) + ' AS "time"'
    raise ValueError(f"unknown macro {name}")


def _column(name: str, args: list[str]) -> str:
    if not args or not args[0]:
        raise ValueError(f"missing time column argument for macro {name}")
    return args[0]


def _group_interval(name: str, args: list[str], trim: str) -> float:
    if len(args) < 2:
        raise ValueError(f"macro {name} needs time column and interval")
    try:
        seconds = parse_interval(args[1].strip(trim)).total_seconds()
    except ValueError as exc:
        raise ValueError(f"error parsing interval {args[1]}") from exc
    if len(args) == 3:
        _check_fill(args[2])
    return seconds


def _check_fill(fill: str) -> None:
    # sqleng.SetupFillmode: NULL, previous, or a number. Filling happens after the query
    # ran, so it does not change the SQL; an invalid value is an error in Grafana.
    if fill in ("NULL", "previous"):
        return
    try:
        float(fill)
    except ValueError as exc:
        raise ValueError(f"error parsing fill value {fill}") from exc


def parse_interval(text: str) -> timedelta:
    """Grafana's ``gtime.ParseInterval``: ``1d``, ``2w``, ``1M``, ``1y`` or a Go duration."""
    match = _DATE_UNIT.match(text)
    if match:
        count, unit = int(match.group(1)), match.group(2)
        if unit == "d":
            return timedelta(days=count)
        if unit == "w":
            return timedelta(weeks=count)
        now = datetime.now(UTC)
        months = count if unit == "M" else 12 * count
        return _add_months(now, months) - now
    return _parse_go_duration(text)


def _parse_go_duration(text: str) -> timedelta:
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if body == "0":
        return timedelta(0)
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total = Decimal(0)
    pos = 0
    while pos < len(body):
        part = _GO_DURATION_PART.match(body, pos)
        if not part:
            raise ValueError(f"invalid duration {text!r}")
        total += Decimal(part.group(1)) * _GO_UNITS[part.group(2)]
        pos = part.end()
    return timedelta(seconds=float(sign * total))


def _add_months(moment: datetime, months: int) -> datetime:
    # Go's AddDate normalises overflowing days (Jan 31 + 1 month = Mar 3 or 2).
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    first = moment.replace(year=year, month=month, day=1)
    return first + timedelta(days=moment.day - 1)


def _go_float_v(value: float) -> str:
    """Format a float like Go's ``%v`` (shortest digits, exponent from 1e+06 up)."""
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    digits = Decimal(repr(value))
    exponent = digits.adjusted()
    if exponent < -4 or exponent >= 6:
        sign, mantissa_digits, _ = digits.as_tuple()
        mantissa = "".join(str(d) for d in mantissa_digits).rstrip("0") or "0"
        head = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
        return f"{'-' if sign else ''}{head}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return format(digits.normalize(), "f")


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _epoch_seconds(moment: datetime) -> int:
    return calendar.timegm(_as_utc(moment).utctimetuple())


def _epoch_nanos(moment: datetime) -> int:
    return _epoch_seconds(moment) * 1_000_000_000 + _as_utc(moment).microsecond * 1000
