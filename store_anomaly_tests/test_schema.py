"""`sql/02_create_analytics_schema.sql` and the code's table definitions must agree."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from conftest import database_url, recreate_database

from store_anomaly_assets.db.analytics.init_db import init_db, schema_statements
from store_anomaly_assets.db.analytics.schema import metadata

SCRATCH = "sat_schema_check"


def _describe(engine: sa.Engine) -> dict[str, dict]:
    """Columns (type, nullability, default), keys and indexes as the server reports them."""
    inspector = sa.inspect(engine)
    tables = {}
    for name in inspector.get_table_names():
        tables[name] = {
            "columns": {
                c["name"]: (str(c["type"]).split(" ")[0], c["nullable"],
                            str(c["default"]).strip("'") if c["default"] is not None else None)
                for c in inspector.get_columns(name)
            },
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "unique": sorted(tuple(u["column_names"]) for u in
                             inspector.get_unique_constraints(name)),
            "indexes": sorted((tuple(i["column_names"]), bool(i["unique"]))
                              for i in inspector.get_indexes(name)),
        }
    return tables


@pytest.fixture(scope="module")
def scratch(server: sa.Engine) -> sa.Engine:
    recreate_database(server, SCRATCH)
    yield sa.create_engine(database_url(SCRATCH))
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {SCRATCH}")


def test_sql_file_and_code_define_the_same_tables(scratch: sa.Engine) -> None:
    with scratch.begin() as conn:
        for statement in schema_statements():
            conn.exec_driver_sql(statement)
    from_file = _describe(scratch)
    with scratch.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.exec_driver_sql(f"DROP TABLE {table.name}")
    metadata.create_all(scratch)
    from_code = _describe(scratch)
    assert set(from_file) == set(metadata.tables)
    for name in from_file:
        assert from_file[name] == from_code[name], name


def test_init_db_is_idempotent_and_keeps_data(scratch: sa.Engine) -> None:
    init_db(scratch)
    with scratch.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO store_anomaly_pipeline_log (run_id, run_date, step_number, step_name,"
            " status) VALUES ('r', '2026-01-01', 1, 'load_store_master', 'SUCCESS')"
        )
    assert init_db(scratch) == list(metadata.tables)
    with scratch.connect() as conn:
        assert conn.exec_driver_sql(
            "SELECT COUNT(*) FROM store_anomaly_pipeline_log").scalar_one() == 1


def test_the_same_tables_create_on_sqlite(tmp_path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'analytics.sqlite'}")
    assert init_db(engine) == list(metadata.tables)
