"""Loading a generated chain into the five source databases (MySQL/MariaDB or SQLite)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.db.sources.schema import (
    SOURCE_METADATA,
    t_employee_schedule,
    t_inspection_record,
    t_order,
    t_production_record,
    t_shop_info,
)
from store_anomaly_assets.demo.synthetic import SyntheticChain

_CHUNK_ROWS = 20_000


def create_source_schemas(engines: Mapping[str, sa.Engine]) -> None:
    """Drop and create each prefix's source tables (`SOURCE_METADATA`) in its engine."""
    for prefix, engine in engines.items():
        if prefix not in SOURCE_METADATA:
            raise KeyError(f"unknown source prefix {prefix!r}; expected {list(SOURCE_METADATA)}")
        metadata = SOURCE_METADATA[prefix]
        metadata.drop_all(engine)
        metadata.create_all(engine)


def _insert(engine: sa.Engine, table: sa.Table, df: pl.DataFrame) -> int:
    """Bulk insert in chunks, in one transaction; returns the rows inserted.

    On MySQL/MariaDB, PyMySQL rewrites executemany into multi-row INSERTs but escapes every
    value in Python, which dominates the load: positional rows with datetimes pre-rendered
    by polars halve that cost. Elsewhere the Core insert with dicts keeps SQLAlchemy's type
    handling (SQLite needs datetimes).
    """
    if df.height == 0:
        return 0
    native = engine.dialect.name in ("mysql", "mariadb")
    if native:
        df = df.select([c.name for c in table.columns]).with_columns(
            pl.col(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M:%S"),
            pl.col(pl.Date).dt.strftime("%Y-%m-%d"),
        )
        quote = engine.dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in df.columns)}) "
            f"VALUES ({', '.join(['%s'] * df.width)})"
        )
    with engine.begin() as conn:
        for offset in range(0, df.height, _CHUNK_ROWS):
            chunk = df.slice(offset, _CHUNK_ROWS)
            if native:
                conn.exec_driver_sql(sql, chunk.rows())
            else:
                conn.execute(table.insert(), chunk.to_dicts())
    return df.height


def _engine(engines: Mapping[str, sa.Engine], prefix: str) -> sa.Engine:
    try:
        return engines[prefix]
    except KeyError:
        raise KeyError(f"no engine for source prefix {prefix!r}") from None


def load_chain(
    chain: SyntheticChain, engines: Mapping[str, sa.Engine], include_late: bool = False
) -> dict[str, int]:
    """(Re)create the five source schemas and load every table; returns rows per table."""
    missing = [p for p in SOURCE_METADATA if p not in engines]
    if missing:
        raise KeyError(f"no engine for source prefixes {missing}")
    create_source_schemas(engines)
    orders, production = chain.orders, chain.production
    if include_late:
        orders = pl.concat([orders, chain.late_orders])
        production = pl.concat([production, chain.late_production])
    plan = (
        ("OPSHOP_", t_shop_info, chain.shop_info),
        ("SALESORDER_", t_order, orders),
        ("OPPRODUCTION_", t_production_record, production),
        ("OPEMPEFFICIENCY_", t_employee_schedule, chain.schedules),
        ("OPQUALITYCONTROL_", t_inspection_record, chain.inspections),
    )
    return {table.name: _insert(_engine(engines, p), table, df) for p, table, df in plan}


def load_late_records(chain: SyntheticChain, engines: Mapping[str, sa.Engine]) -> dict[str, int]:
    """Insert the held-back orders and production records, as late-arriving rows."""
    return {
        t_order.name: _insert(_engine(engines, "SALESORDER_"), t_order, chain.late_orders),
        t_production_record.name: _insert(
            _engine(engines, "OPPRODUCTION_"), t_production_record, chain.late_production
        ),
    }


def write_ground_truth(chain: SyntheticChain, path: Path) -> Path:
    """Write the ground-truth anomaly list as CSV (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chain.ground_truth.write_csv(path)
    return path
