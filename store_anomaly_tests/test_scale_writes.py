"""Scale settings: source session limits, bulk range writes, store batches.

The unit tests need no database; the others write a scratch database (`sat_scale`) on the
local MariaDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import polars as pl
import pytest
import sqlalchemy as sa

from store_anomaly_assets.config import SettingsError, load_config
from store_anomaly_assets.db import engines
from store_anomaly_assets.db.analytics import writes
from store_anomaly_assets.db.analytics.init_db import init_db
from store_anomaly_assets.db.analytics.schema import store_anomaly_scores
from store_anomaly_assets.defs.assets.analytics import store_batches

SCRATCH_DB = "sat_scale"
START, END = date(2026, 1, 1), date(2026, 1, 2)
AUDIT = {"run_id": "run-a", "updated_at": datetime(2026, 1, 3, 4, 5, 6)}


def scores(run: str = "a") -> pl.DataFrame:
    """Values that a CSV could get wrong: quotes, commas, a text NULL, NaN, None, booleans."""
    return pl.DataFrame({
        "store_id": [1, 1, 2],
        "metric_date": [START, END, START],
        "metric_name": ["revenue", 'odd "name", with comma', "NULL"],
        "store_name": ["A\\b", None, "Ü 中文"],
        "metric_value": [1.5, float("nan"), 1e-9],
        "z_score": [None, 2.0, -3.25],
        "we_rule_1": [True, False, True],
        "rules_violated": [f"WE1 {run}", None, ""],
    })


# ---------------------------------------------------------------------------- unit


def test_settings_reach_the_resources() -> None:
    from store_anomaly_assets.defs.resources import AnomalySettings, database_resources

    config = load_config(env_file=None, source_tmp_table_mb=64, bulk_load_rows=7,
                         store_batch_size=2)
    resources = database_resources(config)
    assert resources["analytics"].bulk_load_rows == 7
    assert resources["analytics"].tmp_table_mb == 0
    assert {resources[k].tmp_table_mb for k in resources if k != "analytics"} == {64}
    assert AnomalySettings.from_config(config).store_batch_size == 2
    assert store_batches([5, 6, 7], 2) == [[5, 6], [7]]


def test_store_batches_cover_every_store_once() -> None:
    ids = list(range(1, 1002))
    batches = store_batches(ids, 250)
    assert [len(b) for b in batches] == [250, 250, 250, 250, 1]
    assert [i for b in batches for i in b] == ids
    assert store_batches([], 10) == [[]]


def test_config_validates_new_settings() -> None:
    config = load_config(env_file=None, source_tmp_table_mb=0, bulk_load_rows=0,
                         store_batch_size=1)
    assert (config.source_tmp_table_mb, config.bulk_load_rows, config.store_batch_size) == (
        0, 0, 1)
    with pytest.raises(SettingsError, match="setting STORE_BATCH_SIZE"):
        load_config(env_file=None, store_batch_size=0)


# ---------------------------------------------------------------------------- MariaDB


@pytest.fixture(scope="module")
def scratch(server: sa.Engine) -> Iterator[sa.Engine]:
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{SCRATCH_DB}`")
        conn.exec_driver_sql(f"CREATE DATABASE `{SCRATCH_DB}` CHARACTER SET utf8mb4")
    engine = engines.create_engine(server.url.set(database=SCRATCH_DB), read_only=False,
                                   bulk_load_rows=1)
    init_db(engine)
    yield engine
    engine.dispose()
    with server.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{SCRATCH_DB}`")


def stored(engine: sa.Engine) -> pl.DataFrame:
    t = store_anomaly_scores
    query = sa.select(t.c.store_id, t.c.metric_date, t.c.metric_name, t.c.store_name,
                      t.c.metric_value, t.c.z_score, t.c.we_rule_1, t.c.we_rule_2,
                      t.c.rules_violated, t.c.run_id, t.c.updated_at
                      ).order_by(t.c.store_id, t.c.metric_date)
    with engine.connect() as conn:
        return pl.DataFrame([tuple(r) for r in conn.execute(query)], orient="row",
                            schema=[c.name for c in query.selected_columns])


def without_bulk_load(engine: sa.Engine) -> sa.Engine:
    """The same database with BULK_LOAD_ROWS 0: executemany only."""
    return engines.create_engine(engine.url, read_only=False, bulk_load_rows=0)


def write(engine: sa.Engine, frame: pl.DataFrame, audit: dict = AUDIT) -> int:
    return writes.replace_range(engine, store_anomaly_scores, frame, START, END, [1, 2], audit)


def test_bulk_load_matches_executemany(scratch: sa.Engine) -> None:
    assert engines.local_infile_allowed(scratch)
    assert not engines.local_infile_allowed(without_bulk_load(scratch))
    assert write(without_bulk_load(scratch), scores()) == 3
    by_executemany = stored(scratch)
    assert write(scratch, scores()) == 3
    by_load = stored(scratch)
    assert by_load.equals(by_executemany)
    assert by_load["metric_name"].to_list() == ["revenue", 'odd "name", with comma', "NULL"]
    assert by_load["store_name"].to_list() == ["A\\b", None, "Ü 中文"]
    assert by_load["metric_value"].to_list()[1:] == [None, 1e-9]
    assert by_load["we_rule_1"].to_list() == [1, 0, 1]
    assert by_load["we_rule_2"].to_list() == [0, 0, 0]  # the server default


def test_failed_bulk_load_leaves_the_range(scratch: sa.Engine) -> None:
    write(scratch, scores())
    before = stored(scratch)
    # A duplicate key is only a warning under LOCAL: it must still fail the write.
    with pytest.raises(RuntimeError, match="Duplicate entry"):
        write(scratch, pl.concat([scores("b"), scores("b")]), {**AUDIT, "run_id": "run-b"})
    assert stored(scratch).equals(before)


def test_range_writer_is_one_transaction(scratch: sa.Engine) -> None:
    write(scratch, scores())
    before = stored(scratch)
    frame = scores("c")
    with (pytest.raises(RuntimeError, match="later batch"),
          writes.range_writer(scratch, store_anomaly_scores, START, END, [1, 2],
                              {**AUDIT, "run_id": "run-c"}) as writer):
        writer.append(frame.filter(pl.col("store_id") == 1))
        raise RuntimeError("a later batch failed")
    assert stored(scratch).equals(before)
    with writes.range_writer(scratch, store_anomaly_scores, START, END, [1, 2],
                             {**AUDIT, "run_id": "run-c"}) as writer:
        for part in frame.partition_by("store_id"):
            writer.append(part)
    assert writer.rows == 3
    assert set(stored(scratch)["run_id"]) == {"run-c"}


def test_without_local_infile_falls_back(server: sa.Engine, scratch: sa.Engine,
                                         caplog: pytest.LogCaptureFixture) -> None:
    # A server that refuses local files: the write uses executemany and says so once.
    with server.begin() as conn:
        conn.exec_driver_sql("SET GLOBAL local_infile = 0")
    try:
        plain = engines.create_engine(server.url.set(database=SCRATCH_DB), read_only=False,
                                      bulk_load_rows=2)
        assert not engines.local_infile_allowed(plain)
        with caplog.at_level("WARNING"):
            assert write(plain, scores()) == 3
            write(plain, scores())
    finally:
        with server.begin() as conn:
            conn.exec_driver_sql("SET GLOBAL local_infile = 1")
    notices = [r for r in caplog.records if "LOAD DATA LOCAL INFILE" in r.getMessage()]
    assert len(notices) <= 1  # once per database for the life of the process
    assert stored(scratch).height == 3


def test_source_sessions_get_the_temporary_table_limit(server: sa.Engine) -> None:
    url = server.url.set(database="mysql")
    sized = engines.create_engine(url, read_only=True, tmp_table_mb=64)
    default = engines.create_engine(url, read_only=True, tmp_table_mb=0)
    query = "SELECT @@SESSION.tmp_table_size, @@SESSION.max_heap_table_size, @@tx_read_only"
    with sized.connect() as conn:
        assert tuple(conn.exec_driver_sql(query).one()) == (64 << 20, 64 << 20, 1)
    with default.connect() as conn, server.connect() as plain:
        assert (tuple(conn.exec_driver_sql(query).one())[:2]
                == tuple(plain.exec_driver_sql(query).one())[:2])
