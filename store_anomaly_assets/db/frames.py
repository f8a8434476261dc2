"""Moving rows between SQLAlchemy and polars without a second copy of any query."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import polars as pl
import sqlalchemy as sa


def polars_type(sa_type: sa.types.TypeEngine) -> pl.DataType | None:
    """The polars type of a SQL column type, so frames keep their types when empty or NULL."""
    if isinstance(sa_type, sa.Boolean):
        return pl.Boolean()
    if isinstance(sa_type, sa.Integer):
        return pl.Int64()
    if isinstance(sa_type, sa.Numeric | sa.Float):
        return pl.Float64()
    if isinstance(sa_type, sa.DateTime):
        return pl.Datetime("us")
    if isinstance(sa_type, sa.Date):
        return pl.Date()
    if isinstance(sa_type, sa.String):
        return pl.String()
    return None


def table_schema(table: sa.Table) -> dict[str, pl.DataType]:
    """The polars schema of a table's rows."""
    return {c.name: polars_type(c.type) for c in table.columns}


def _declared_types(query: sa.Executable) -> dict[str, pl.DataType]:
    columns = getattr(query, "selected_columns", None)
    if columns is None:
        return {}
    types = {c.key: polars_type(c.type) for c in columns}
    return {name: t for name, t in types.items() if t is not None}


def read_frame(
    engine: sa.Engine | sa.Connection,
    query: sa.Executable,
    params: Mapping[str, Any] | None = None,
    schema_overrides: Mapping[str, pl.DataType | type[pl.DataType]] | None = None,
) -> pl.DataFrame:
    """Run a Core statement and return its rows as a DataFrame, typed even when empty.

    Column types come from the statement (a SELECT of typed columns), then
    `schema_overrides`: an empty result or an all-NULL column keeps its type instead of
    polars' Null, and DECIMALs arrive as floats. Given a connection, it reads inside that
    connection's transaction.
    """
    opened = engine.connect() if isinstance(engine, sa.Engine) else nullcontext(engine)
    with opened as conn:
        result = conn.execute(query, dict(params or {}))
        columns = list(result.keys())
        rows = result.fetchall()
    overrides = {**_declared_types(query), **dict(schema_overrides or {})}
    if not rows:
        return pl.DataFrame(
            schema={c: overrides.get(c, pl.Null) for c in columns}
        )
    frame = pl.DataFrame(
        [tuple(r) for r in rows], schema=columns, orient="row", infer_schema_length=None
    )
    return frame.with_columns(
        [pl.col(c).cast(t, strict=False) for c, t in overrides.items() if c in frame.columns]
    )


def frame_rows(frame: pl.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Rows as dicts for executemany, with NaN turned into NULL."""
    subset = frame.select(columns).with_columns(
        [pl.col(c).fill_nan(None) for c, t in frame.select(columns).schema.items() if t.is_float()]
    )
    return subset.to_dicts()
