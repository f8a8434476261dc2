"""Moving rows between SQLAlchemy and polars without a second copy of any query."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
import sqlalchemy as sa


def read_frame(
    engine: sa.Engine,
    query: sa.Executable,
    params: Mapping[str, Any] | None = None,
    schema_overrides: Mapping[str, pl.DataType | type[pl.DataType]] | None = None,
) -> pl.DataFrame:
    """Run a Core statement and return its rows as a DataFrame (typed even when empty).

    DECIMAL columns arrive as Decimal objects; `schema_overrides` casts them to floats.
    """
    with engine.connect() as conn:
        result = conn.execute(query, dict(params or {}))
        columns = list(result.keys())
        rows = result.fetchall()
    overrides = dict(schema_overrides or {})
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
