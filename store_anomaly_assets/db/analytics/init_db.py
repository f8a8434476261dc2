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
    _add_new_columns(engine)
    present = set(sa.inspect(engine).get_table_names())
    return [t for t in metadata.tables if t in present]


def _add_new_columns(engine: sa.Engine) -> None:
    """Add the nullable columns a newer release defines to tables an older one created.

    CREATE TABLE IF NOT EXISTS leaves existing tables alone; their rows are user data
    (acknowledgments), so the schema grows in place instead.
    """
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if not inspector.has_table(table.name):
                continue
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in present or not column.nullable:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                conn.exec_driver_sql(
                    f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind} NULL")
