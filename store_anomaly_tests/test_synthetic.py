"""The synthetic chain: determinism, volumes, calendar rules, DST, ground truth, loaders."""

from __future__ import annotations

import itertools
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import sqlalchemy as sa
from oracle import expected_kpis

from store_anomaly_assets.db.sources.schema import (
    SOURCE_METADATA,
    t_employee_schedule,
    t_inspection_record,
    t_order,
    t_production_record,
    t_shop_info,
)
from store_anomaly_assets.demo.loaders import load_chain, load_late_records, write_ground_truth
from store_anomaly_assets.demo.synthetic import (
    ANOMALY_KINDS,
    ChainSpec,
    SyntheticChain,
    default_chain,
    generate,
    local_to_utc,
    utc_to_local,
)

MARIADB_SERVER = "mysql+pymysql://root@127.0.0.1:3306/"
MARIADB_DB = "sa_synthetic_test"


@pytest.fixture(scope="module")
def chain() -> SyntheticChain:
    return generate(default_chain(scale=0.1))


def _frames(c: SyntheticChain) -> dict[str, pl.DataFrame]:
    return {
        "shop_info": c.shop_info,
        "orders": c.orders,
        "production": c.production,
        "schedules": c.schedules,
        "inspections": c.inspections,
        "late_orders": c.late_orders,
        "late_production": c.late_production,
        "ground_truth": c.ground_truth,
    }


def test_deterministic_for_a_seed(chain: SyntheticChain) -> None:
    again = generate(default_chain(scale=0.1))
    for name, df in _frames(chain).items():
        assert df.equals(_frames(again)[name]), name
    other = generate(default_chain(scale=0.1, seed=8))
    assert not other.orders.equals(chain.orders)


def test_columns_are_the_source_columns(chain: SyntheticChain) -> None:
    expected = {
        "shop_info": t_shop_info,
        "orders": t_order,
        "production": t_production_record,
        "schedules": t_employee_schedule,
        "inspections": t_inspection_record,
        "late_orders": t_order,
        "late_production": t_production_record,
    }
    frames = _frames(chain)
    for name, table in expected.items():
        assert frames[name].columns == [c.name for c in table.columns], name
    ids = pl.concat([chain.orders["id"], chain.late_orders["id"]])
    assert ids.n_unique() == ids.len()
    assert chain.production["order_id"].is_in(chain.orders["id"].implode()).all()


def test_volumes_at_full_scale() -> None:
    started = time.perf_counter()
    full = generate(default_chain())
    assert time.perf_counter() - started < 15
    orders = full.orders.height + full.late_orders.height
    production = full.production.height + full.late_production.height
    assert abs(orders - 520_000) <= 0.15 * 520_000
    assert abs(production - 500_000) <= 0.15 * 500_000
    assert abs(full.schedules.height - 16_000) <= 0.15 * 16_000
    assert abs(full.inspections.height - 120) <= 40


def test_row_values_are_plausible(chain: SyntheticChain) -> None:
    o = chain.orders
    share = o["order_status"].value_counts(normalize=True).sort("order_status")
    assert share["proportion"][0] == pytest.approx(0.95, abs=0.01)
    assert o["pay_amount"].min() >= 1.0
    assert o["pay_amount"].median() == pytest.approx(6.0, abs=1.2)
    assert o["item_count"].is_between(1, 4).all()
    assert (o["complete_time"].is_null() == (o["order_status"] != 1)).all()
    assert (o["complete_time"] > o["create_time"]).fill_null(True).all()
    p = chain.production
    assert p["finish_time"].null_count() / p.height == pytest.approx(0.01, abs=0.005)
    assert (p["finish_time"] > p["start_time"]).fill_null(True).all()
    s = chain.schedules
    assert s["scheduled_hours"].is_between(4.0, 8.0).all()
    assert ((s["scheduled_hours"] * 100).round(6) % 1 == 0).all()
    hours = (s["shift_end"] - s["shift_start"]).dt.total_minutes() / 60
    assert (hours == s["scheduled_hours"]).all()
    assert (s["shift_start"].dt.date() == s["work_date"]).all()
    per_day = s.group_by("dept_id", "work_date").agg(
        pl.len(), pl.col("employee_id").n_unique().alias("distinct")
    )
    assert (per_day["len"] == per_day["distinct"]).all()
    assert per_day["len"].mean() == pytest.approx(7.3, abs=1.0)
    employees = s.group_by("employee_id").agg(pl.col("dept_id").n_unique())
    assert (employees["dept_id"] == 1).all()
    i = chain.inspections
    assert i["total_score"].is_between(0, 100).all()


def test_stores_and_calendar(chain: SyntheticChain) -> None:
    spec = chain.spec
    shops = chain.shop_info
    assert shops.height == 12
    operating = shops.filter(pl.col("shop_status") == 1)
    assert operating.height == 10
    zones = operating["time_zone"].value_counts().sort("time_zone")
    assert dict(zones.iter_rows()) == {
        "America/Chicago": 2,
        "America/Los_Angeles": 2,
        "America/New_York": 6,
    }
    kpis = expected_kpis(chain)
    span = kpis.group_by("store_id").agg(
        pl.col("metric_date").min().alias("first"), pl.col("metric_date").max().alias("last")
    )
    span = span.join(
        shops.select(pl.col("dept_id").alias("store_id"), "open_date", "shop_status"),
        on="store_id",
    )
    assert ((span["first"] >= span["open_date"]) | span["open_date"].is_null()).all()
    assert (span["first"] >= spec.start).all() and (span["last"] <= spec.end).all()
    closed = {d for d, m in spec.holidays.items() if m == 0}
    assert date(2025, 12, 25) in closed
    assert not kpis["metric_date"].is_in(list(closed)).any()
    assert not chain.schedules["work_date"].is_in(list(closed)).any()

    (closed_store,) = [s for s in spec.stores if s.shop_status == 3]
    assert span.filter(pl.col("store_id") == closed_store.dept_id)["last"].item() == (
        closed_store.close_date
    )
    preparing = shops.filter(pl.col("shop_status") == 0)["dept_id"].to_list()
    assert len(preparing) == 1 and not kpis["store_id"].is_in(preparing).any()
    history = span.filter(pl.col("shop_status") == 1).with_columns(
        days=(pl.col("last") - pl.col("first")).dt.total_days() + 1
    )
    assert history["days"].min() < 28  # the newest store is never alerted
    mid = span.filter(pl.col("first").is_between(date(2025, 10, 10), date(2025, 10, 31)))
    assert mid.height == 1  # the store opening mid-period
    ramp = kpis.filter(pl.col("store_id") == mid["store_id"].item()).head(3)
    later = kpis.filter(pl.col("store_id") == mid["store_id"].item()).slice(28, 14)
    assert ramp["order_count"].mean() < 0.75 * later["order_count"].mean()


def test_local_to_utc_across_fall_back() -> None:
    local = pl.Series([datetime(2025, 11, 2, 6, 30), datetime(2025, 11, 1, 6, 30)])
    utc = local_to_utc(local, "America/New_York")
    assert utc.to_list() == [datetime(2025, 11, 2, 11, 30), datetime(2025, 11, 1, 10, 30)]
    assert utc_to_local(utc, "America/New_York").to_list() == local.to_list()

    # Every quarter hour of the opening hours around the change, in the three zones.
    for tz in ("America/New_York", "America/Chicago", "America/Los_Angeles"):
        stamps = [
            datetime(2025, 11, day, 6, 30) + timedelta(minutes=15 * k)
            for day in (1, 2, 3)
            for k in range(59)
        ]
        got = local_to_utc(pl.Series(stamps), tz).to_list()
        want = [
            s.replace(tzinfo=ZoneInfo(tz)).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
            for s in stamps
        ]
        assert got == want, tz


def test_orders_fall_in_local_opening_hours(chain: SyntheticChain) -> None:
    zones = dict(chain.shop_info.select("dept_id", "time_zone").iter_rows())
    for dept_id, tz in zones.items():
        created = chain.orders.filter(pl.col("dept_id") == dept_id)["create_time"]
        if created.len() == 0:
            continue
        local = utc_to_local(created, tz)
        minutes = local.dt.hour().cast(pl.Int32) * 60 + local.dt.minute().cast(pl.Int32)
        assert minutes.min() >= 6 * 60 + 30 and minutes.max() < 21 * 60, dept_id


def test_ground_truth(chain: SyntheticChain) -> None:
    spec = chain.spec
    gt = chain.ground_truth
    assert gt.columns == [
        "store_id",
        "metric_date",
        "metric_name",
        "kind",
        "magnitude",
        "expected_severity",
    ]
    assert set(gt["kind"]) == set(ANOMALY_KINDS)
    assert set(gt["expected_severity"]) <= {"CRITICAL", "WARNING"}
    kpis = expected_kpis(chain)
    first_day = kpis.group_by("store_id").agg(pl.col("metric_date").min().alias("first"))
    checked = gt.join(kpis, on=["store_id", "metric_date"], how="left").join(
        first_day, on="store_id"
    )
    assert checked["order_count"].null_count() == 0  # every ground-truth day has data
    assert ((checked["metric_date"] - checked["first"]).dt.total_days() > 90).all()
    assert not gt["metric_date"].is_in(list(spec.holidays)).any()
    assert (gt["metric_date"] >= date(2025, 10, 1)).all()

    anomalies = sorted(spec.anomalies, key=lambda a: (a.dept_id, a.start))
    assert 6 <= len(anomalies) <= 10
    for a, b in itertools.pairwise(anomalies):
        if a.dept_id == b.dept_id:
            assert (b.start - (a.start + timedelta(days=a.days - 1))).days >= 10
    operating = {s.dept_id for s in spec.stores if s.shop_status == 1}
    assert len(operating - {a.dept_id for a in anomalies}) >= 4

    failed = gt.filter(pl.col("kind") == "failed_inspection").row(0, named=True)
    assert failed["metric_name"] == "inspection_score"
    score = kpis.filter(
        (pl.col("store_id") == failed["store_id"])
        & (pl.col("metric_date") == failed["metric_date"])
    )["inspection_score"].item()
    assert score == 62.0

    drop = gt.filter((pl.col("kind") == "sales_drop") & (pl.col("magnitude") == 0.6))
    assert set(drop["metric_name"]) == {"revenue", "order_count"}
    assert set(drop["expected_severity"]) == {"CRITICAL"}


def test_late_records(chain: SyntheticChain) -> None:
    spec = chain.spec
    tz = chain.shop_info.filter(pl.col("dept_id") == spec.late_store)["time_zone"].item()
    late = chain.late_orders
    assert late.height > 0 and (late["dept_id"] == spec.late_store).all()
    assert (utc_to_local(late["create_time"], tz).dt.date() == spec.late_date).all()
    assert set(chain.late_production["order_id"]) == set(
        late.filter(pl.col("order_status") == 1)["id"]
    )
    assert (late["id"].min() > chain.orders["id"].max()) and spec.late_store not in {
        a.dept_id for a in spec.anomalies
    }
    key = (pl.col("store_id") == spec.late_store) & (pl.col("metric_date") == spec.late_date)
    with_late = expected_kpis(chain).filter(key)
    without = expected_kpis(chain, include_late=False).filter(key)
    assert with_late["order_count"].item() == late.filter(pl.col("order_status") == 1).height
    assert without["order_count"].item() == 0
    assert with_late["scheduled_hours"].item() == without["scheduled_hours"].item() > 0


def test_expected_kpis(chain: SyntheticChain) -> None:
    kpis = expected_kpis(chain)
    assert kpis.select("store_id", "metric_date").is_duplicated().sum() == 0
    all_orders = pl.concat([chain.orders, chain.late_orders])
    completed = all_orders.filter(pl.col("order_status") == 1)
    assert kpis["order_count"].sum() == completed.height
    assert kpis["revenue"].sum() == pytest.approx(completed["pay_amount"].sum(), abs=0.01)
    finished = pl.concat([chain.production, chain.late_production])["finish_time"]
    assert kpis["production_count"].sum() == finished.is_not_null().sum()
    assert kpis["inspection_count"].sum() == chain.inspections.height
    assert kpis["scheduled_hours"].sum() == pytest.approx(chain.schedules["scheduled_hours"].sum())


def _db_counts(engines: dict[str, sa.Engine]) -> dict[str, int]:
    out = {}
    for prefix, metadata in SOURCE_METADATA.items():
        with engines[prefix].connect() as conn:
            for table in metadata.tables.values():
                out[table.name] = conn.execute(
                    sa.select(sa.func.count()).select_from(table)
                ).scalar()
    return out


def _check_load(chain: SyntheticChain, engines: dict[str, sa.Engine]) -> None:
    counts = load_chain(chain, engines)
    assert counts == {
        "t_shop_info": chain.shop_info.height,
        "t_order": chain.orders.height,
        "t_production_record": chain.production.height,
        "t_employee_schedule": chain.schedules.height,
        "t_inspection_record": chain.inspections.height,
    }
    assert _db_counts(engines) == counts
    with engines["SALESORDER_"].connect() as conn:
        revenue, first = conn.execute(
            sa.select(sa.func.sum(t_order.c.pay_amount), sa.func.min(t_order.c.create_time))
        ).one()
    assert float(revenue) == pytest.approx(chain.orders["pay_amount"].sum(), abs=0.005)
    assert first == chain.orders["create_time"].min()
    with engines["OPSHOP_"].connect() as conn:
        names = dict(
            conn.execute(sa.select(t_shop_info.c.dept_id, t_shop_info.c.shop_name_cn)).all()
        )
    assert names == dict(chain.shop_info.select("dept_id", "shop_name_cn").iter_rows())

    late = load_late_records(chain, engines)
    assert late == {
        "t_order": chain.late_orders.height,
        "t_production_record": chain.late_production.height,
    }
    after = _db_counts(engines)
    assert after["t_order"] == counts["t_order"] + late["t_order"]
    assert after["t_production_record"] == (
        counts["t_production_record"] + late["t_production_record"]
    )
    # Reloading recreates the tables, this time with the late rows included.
    again = load_chain(chain, engines, include_late=True)
    assert again["t_order"] == after["t_order"]


def test_load_into_sqlite(chain: SyntheticChain, tmp_path) -> None:
    shared = sa.create_engine(f"sqlite:///{tmp_path / 'ops.db'}")
    engines = {
        "OPSHOP_": shared,
        "SALESORDER_": sa.create_engine(f"sqlite:///{tmp_path / 'sales.db'}"),
        "OPPRODUCTION_": shared,
        "OPEMPEFFICIENCY_": shared,
        "OPQUALITYCONTROL_": sa.create_engine(f"sqlite:///{tmp_path / 'quality.db'}"),
    }
    _check_load(chain, engines)
    path = write_ground_truth(chain, tmp_path / "out" / "ground_truth.csv")
    assert pl.read_csv(path, try_parse_dates=True).equals(chain.ground_truth)


@pytest.fixture
def mariadb_engine(server: sa.Engine):
    with server.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {MARIADB_DB}")
    engine = sa.create_engine(f"{MARIADB_SERVER}{MARIADB_DB}")
    try:
        yield engine
    finally:
        engine.dispose()
        with server.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {MARIADB_DB}")


def test_load_into_mariadb(chain: SyntheticChain, mariadb_engine: sa.Engine) -> None:
    _check_load(chain, dict.fromkeys(SOURCE_METADATA, mariadb_engine))


def test_unknown_anomaly_kind_is_rejected() -> None:
    from store_anomaly_assets.demo.synthetic import Anomaly

    spec = default_chain(scale=0.01)
    bad = ChainSpec(stores=spec.stores, anomalies=(Anomaly(1101, date(2025, 10, 1), 1, "x"),))
    with pytest.raises(ValueError, match="unknown anomaly kind"):
        generate(bad)
