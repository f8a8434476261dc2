"""`store-anomaly init-db`: create the analytics tables, idempotently."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from store_anomaly_assets.db.analytics.schema import metadata

SCHEMA_SQL = Path(__file__).resolve().parents[3] / "sql" / "02_create_analytics_schema.sql"


def schema_statements(path: Path = SCHEMA_SQL) -> list[str]:
    """The CREATE statements of the schema file, comments stripped."""
    if not path.exists():
        raise FileNotFoundError(
            f"schema file {path} is missing: install the project from its checkout "
            "(pip install -e .)"
        )
    text = re.sub(r"--[^\n]*", "", path.read_text())
    return [s.strip() for s in text.split(";") if s.strip()]


def init_db(engine: sa.Engine) -> list[str]:
    """Apply the schema file on MySQL/MariaDB, or the same tables on SQLite.

    Returns the names of the analytics tables present afterwards.
    """
    if engine.dialect.name == "sqlite":
        metadata.create_all(engine)
    else:
        with engine.begin() as conn:
            for statement in schema_statements():
                conn.exec_driver_sql(statement)
    present = set(sa.inspect(engine).get_table_names())
    return [t for t in metadata.tables if t in present]
