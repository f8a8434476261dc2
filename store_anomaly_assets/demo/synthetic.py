"""A deterministic synthetic coffee chain (DESIGN sections 3 and 6).

`generate` turns a `ChainSpec` into source rows shaped exactly like the reference
schemas of `db/sources/schema.py`: stores in three US time zones, weekly seasonality,
a mild trend, openings with a ramp-up, a closed and a preparing store, holidays,
late-arriving records and injected anomalies with a ground-truth list.
`loaders.load_chain` bulk-loads it into the five source databases; the tests' oracle
(store_anomaly_tests/oracle.py) computes its daily KPIs independently of the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import polars as pl

from store_anomaly_assets.db.frames import table_schema
from store_anomaly_assets.db.sources.schema import (
    t_employee_schedule,
    t_inspection_record,
    t_order,
    t_production_record,
    t_shop_info,
)

ANOMALY_KINDS = (
    "sales_drop",
    "production_slowdown",
    "understaffing",
    "failed_inspection",
    "sales_decline",
)

# Multiplier of the day's order volume; 0 closes every store (no rows at all).
DEFAULT_HOLIDAYS: dict[date, float] = {
    date(2025, 7, 4): 0.7,  # Independence Day
    date(2025, 9, 1): 0.75,  # Labor Day
    date(2025, 11, 27): 0.35,  # Thanksgiving
    date(2025, 11, 28): 0.8,  # Black Friday: commuters stay home
    date(2025, 12, 24): 0.75,  # Christmas Eve
    date(2025, 12, 25): 0.0,  # Christmas: closed
    date(2025, 12, 31): 0.85,  # New Year's Eve
    date(2026, 1, 1): 0.6,  # New Year's Day
}

# Weekly shapes Mon..Sun (normalised to mean 1 by the generator).
COMMUTER = (1.14, 1.17, 1.17, 1.14, 1.06, 0.72, 0.60)
FINANCIAL = (1.22, 1.25, 1.25, 1.20, 1.08, 0.55, 0.45)
MALL = (0.85, 0.82, 0.86, 0.92, 1.08, 1.32, 1.15)
NEIGHBORHOOD = (0.92, 0.92, 0.95, 0.96, 1.02, 1.18, 1.05)
BALANCED = (0.97, 0.98, 1.00, 1.00, 1.05, 1.03, 0.97)

MENU = (
    "Coconut Latte",
    "Velvet Latte",
    "Iced Americano",
    "Americano",
    "Caramel Latte",
    "Matcha Latte",
    "Cold Brew",
    "Orange Americano",
    "Cappuccino",
    "Jasmine Tea Latte",
)
_MENU_P = np.array([0.18, 0.12, 0.14, 0.10, 0.10, 0.09, 0.09, 0.07, 0.06, 0.05])

_OPEN_S = 6.5 * 3600  # 06:30 local
_CLOSE_S = 21.0 * 3600  # 21:00 local, last order before
_US = 1_000_000
_STATUS_P = (0.95, 0.03, 0.02)  # completed, cancelled, refunded
_RAMP_DAYS = 14
# The store's shift template by slot (local start hour, planned hours): openers first,
# then mid and closing shifts. Days differ by how many slots are filled and by small
# adjustments of the hours, as real rosters do.
_SHIFT_SLOTS = np.array(
    [6.0, 6.0, 7.0, 10.0, 11.0, 14.0, 15.0, 8.0, 12.0, 16.0,
     9.0, 13.0, 6.5, 15.5, 10.5, 12.5, 7.5, 14.5, 11.5, 16.5]
)  # fmt: skip
_SHIFT_HOURS = np.array(
    [8.0, 8.0, 7.5, 6.0, 6.5, 7.5, 6.5, 5.0, 6.0, 5.5,
     5.0, 6.0, 4.5, 6.0, 4.0, 5.0, 4.5, 6.0, 4.0, 5.0]
)  # fmt: skip
_LAST_SHIFT_END_H = 21.5

_DAY_NOISE_SIGMA = 0.05  # day-to-day demand noise (weather, events) on top of Poisson
_PROD_SHAPE = 4.0  # gamma shape of one drink's preparation time (CV 0.5)
_PROD_DAY_SIGMA = 0.03
_SURPRISE_RATE = 1 / 90  # unannounced inspections per store-day


@dataclass(frozen=True)
class StoreSpec:
    """One store of the chain and the parameters of its demand, production and staff."""

    dept_id: int
    shop_name: str
    shop_name_cn: str
    city: str
    state: str
    district: str
    region: str
    time_zone: str
    open_date: date | None
    shop_status: int  # 1 operating, 2 temporarily closed, 3 closed, 0 preparing
    base_orders: float  # mean completed orders per day at maturity, before seasonality
    weekday_profile: tuple[float, ...]  # Mon..Sun multipliers
    trend_per_day: float  # fractional growth per day since the period start
    base_production_seconds: float
    staff_pool: int  # employees; ids dept_id * 1000 + 1..staff_pool
    close_date: date | None = None  # last trading day of a closed store
    shifts_per_day: float = 7.0


@dataclass(frozen=True)
class Anomaly:
    """An injected incident on one store, starting on a store-local business day."""

    dept_id: int
    start: date
    days: int = 1
    kind: str = "sales_drop"
    magnitude: float = 0.6


@dataclass(frozen=True)
class ChainSpec:
    """Everything `generate` needs; the same spec and seed always give the same rows."""

    start: date = date(2025, 7, 1)
    end: date = date(2026, 2, 15)  # inclusive, store-local
    seed: int = 7
    scale: float = 1.0
    stores: tuple[StoreSpec, ...] = ()
    anomalies: tuple[Anomaly, ...] = ()
    holidays: dict[date, float] = field(default_factory=lambda: dict(DEFAULT_HOLIDAYS))
    late_fraction: float = 1.0
    late_store: int | None = None  # None: no late records
    late_date: date = date(2026, 2, 10)
    # In-control options for detection benchmarks (defaults leave the draws unchanged):
    # AR(1) coefficient of the day-to-day demand shock (0: independent days) and its
    # log-scale standard deviation (None: the generator's 5%).
    noise_ar: float = 0.0
    noise_sigma: float | None = None


@dataclass
class SyntheticChain:
    """Generated source rows (columns exactly as in `sources/schema.py`) and ground truth."""

    spec: ChainSpec
    shop_info: pl.DataFrame
    orders: pl.DataFrame
    production: pl.DataFrame
    schedules: pl.DataFrame
    inspections: pl.DataFrame
    late_orders: pl.DataFrame
    late_production: pl.DataFrame
    ground_truth: pl.DataFrame


def _store(
    dept_id: int,
    name: str,
    name_cn: str,
    city: str,
    state: str,
    district: str,
    region: str,
    tz: str,
    open_date: date | None,
    base: float,
    profile: tuple[float, ...],
    trend: float,
    prod_s: float,
    pool: int,
    shifts: float,
    status: int = 1,
    close_date: date | None = None,
) -> StoreSpec:
    return StoreSpec(
        dept_id=dept_id,
        shop_name=name,
        shop_name_cn=name_cn,
        city=city,
        state=state,
        district=district,
        region=region,
        time_zone=tz,
        open_date=open_date,
        shop_status=status,
        base_orders=base,
        weekday_profile=profile,
        trend_per_day=trend,
        base_production_seconds=prod_s,
        staff_pool=pool,
        close_date=close_date,
        shifts_per_day=shifts,
    )


def default_chain(scale: float = 1.0, seed: int = 7) -> ChainSpec:
    """The demo chain: 10 operating stores in three time zones, a closed and a preparing one.

    Stores 1105, 1108, 1109 and 1110 carry no anomaly (1105 gets the late records);
    1109 opens 2025-10-20 and 1110 opens 2026-01-25 (under 28 days of history at the end).
    """
    ny, chi, la = "America/New_York", "America/Chicago", "America/Los_Angeles"
    stores = (
        _store(1101, "Midtown Manhattan", "曼哈顿中城店", "New York", "NY", "District A",
               "East", ny, date(2023, 5, 12), 297, COMMUTER, 0.0003, 165, 16, 8.4),
        _store(1102, "Wall Street", "华尔街店", "New York", "NY", "District A",
               "East", ny, date(2023, 9, 1), 270, FINANCIAL, 0.0002, 150, 15, 8.0),
        _store(1103, "Brooklyn Heights", "布鲁克林高地店", "Brooklyn", "NY", "District B",
               "East", ny, date(2024, 2, 20), 218, NEIGHBORHOOD, 0.0004, 185, 13, 7.3),
        _store(1104, "Newport Centre", "泽西城纽波特店", "Jersey City", "NJ", "District B",
               "East", ny, date(2024, 4, 8), 237, MALL, 0.0001, 175, 14, 7.6),
        _store(1105, "Back Bay", "波士顿后湾店", "Boston", "MA", "District C",
               "East", ny, date(2024, 6, 15), 228, COMMUTER, 0.0003, 160, 14, 7.5),
        _store(1106, "Chicago Loop", "芝加哥卢普店", "Chicago", "IL", "District A",
               "Central", chi, date(2024, 8, 30), 251, COMMUTER, 0.0002, 170, 15, 7.8),
        _store(1107, "Oakbrook Center", "橡树溪购物中心店", "Oak Brook", "IL", "District B",
               "Central", chi, date(2024, 11, 1), 200, MALL, -0.0001, 190, 13, 7.1),
        _store(1108, "Santa Monica Place", "圣莫尼卡广场店", "Santa Monica", "CA",
               "District A", "West", la, date(2025, 1, 18), 209, MALL, 0.0005, 180, 13, 7.2),
        _store(1109, "Center City", "费城中心城店", "Philadelphia", "PA", "District C",
               "East", ny, date(2025, 10, 20), 204, BALANCED, 0.0002, 200, 13, 7.1),
        _store(1110, "Irvine Spectrum", "尔湾光谱中心店", "Irvine", "CA", "District B",
               "West", la, date(2026, 1, 25), 180, MALL, 0.0, 210, 12, 6.8),
        _store(1111, "Hoboken Washington St", "霍博肯华盛顿街店", "Hoboken", "NJ",
               "District B", "East", ny, date(2023, 3, 4), 166, NEIGHBORHOOD, -0.0008, 195,
               12, 6.6, status=3, close_date=date(2025, 12, 1)),
        _store(1112, "Flushing Main St", "法拉盛缅街店", "Queens", "NY", "District A",
               "East", ny, date(2026, 3, 20), 190, BALANCED, 0.0, 180, 12, 6.5, status=0),
    )  # fmt: skip
    anomalies = (
        Anomaly(1101, date(2025, 10, 8), 1, "sales_drop", 0.6),
        Anomaly(1102, date(2025, 10, 14), 1, "sales_drop", 0.45),
        Anomaly(1103, date(2025, 10, 22), 1, "production_slowdown", 0.8),
        Anomaly(1104, date(2025, 11, 5), 1, "understaffing", 0.5),
        Anomaly(1107, date(2025, 11, 12), 1, "failed_inspection", 62.0),
        Anomaly(1106, date(2025, 10, 27), 5, "sales_drop", 0.4),
        Anomaly(1103, date(2025, 11, 10), 7, "sales_decline", 0.08),
        Anomaly(1102, date(2026, 2, 3), 1, "understaffing", 0.5),
    )
    return ChainSpec(seed=seed, scale=scale, stores=stores, anomalies=anomalies, late_store=1105)


# ---------------------------------------------------------------------------- time zones


def local_to_utc(local: pl.Series, time_zone: str) -> pl.Series:
    """Naive local datetimes of `time_zone` -> naive UTC datetimes, DST-correct per value.

    Each value uses the offset valid at that local instant, so a 06:30 on the day clocks
    fall back gets the standard-time offset. Ambiguous times (the repeated hour) take the
    first occurrence; stores are closed then anyway.
    """
    return (
        local.cast(pl.Datetime("us"))
        .dt.replace_time_zone(time_zone, ambiguous="earliest")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )


def utc_to_local(utc: pl.Series, time_zone: str) -> pl.Series:
    """Naive UTC datetimes -> naive local datetimes of `time_zone`."""
    return (
        utc.cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(time_zone)
        .dt.replace_time_zone(None)
    )


def _us_to_datetime(values: np.ndarray) -> pl.Series:
    return pl.Series(values.astype(np.int64)).cast(pl.Datetime("us"))


# ---------------------------------------------------------------------------- generation


def _open_days(store: StoreSpec, spec: ChainSpec) -> list[date]:
    """Local business days the store trades: after opening, before closing, not on closures."""
    if store.shop_status == 0:
        return []
    first = max(spec.start, store.open_date) if store.open_date else spec.start
    last = min(spec.end, store.close_date) if store.close_date else spec.end
    days = []
    d = first
    while d <= last:
        if spec.holidays.get(d, 1.0) > 0:
            days.append(d)
        d += timedelta(days=1)
    return days


@dataclass
class _Effects:
    sales: np.ndarray
    production: np.ndarray
    staff: np.ndarray
    scores: dict[date, float]


def _effects(store: StoreSpec, days: list[date], anomalies: tuple[Anomaly, ...]) -> _Effects:
    index = {d: i for i, d in enumerate(days)}
    eff = _Effects(np.ones(len(days)), np.ones(len(days)), np.ones(len(days)), {})
    for a in anomalies:
        if a.dept_id != store.dept_id:
            continue
        for k in range(a.days):
            day = a.start + timedelta(days=k)
            i = index.get(day)
            if i is None:
                continue
            if a.kind == "sales_drop":
                eff.sales[i] *= 1 - a.magnitude
            elif a.kind == "sales_decline":
                eff.sales[i] *= (1 - a.magnitude) ** (k + 1)
            elif a.kind == "production_slowdown":
                eff.production[i] *= 1 + a.magnitude
            elif a.kind == "understaffing":
                eff.staff[i] *= 1 - a.magnitude
            elif a.kind == "failed_inspection" and k == 0:
                eff.scores[day] = a.magnitude
    return eff


def _epoch_days(days: list[date]) -> np.ndarray:
    return np.array(days, dtype="datetime64[D]").astype(np.int64)


def _store_orders(
    store: StoreSpec,
    spec: ChainSpec,
    days: list[date],
    eff: _Effects,
    rng: Callable[[int], np.random.Generator],
    key_offset: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Orders and production records of one store (temporary `_okey`/`_late` columns)."""
    day_num = _epoch_days(days)
    weekday = (day_num + 3) % 7  # 1970-01-01 was a Thursday
    profile = np.asarray(store.weekday_profile, dtype=float)
    profile = profile / profile.mean()
    t = (day_num - _epoch_days([spec.start])[0]).astype(float)
    trend = np.maximum(0.2, 1 + store.trend_per_day * t)
    if store.open_date is not None:
        age = (day_num - _epoch_days([store.open_date])[0]).astype(float)
        ramp = np.clip(0.4 + 0.6 * age / _RAMP_DAYS, 0.4, 1.0)
    else:
        ramp = np.ones(len(days))
    holiday = np.array([spec.holidays.get(d, 1.0) for d in days])

    r_days = rng(1)
    noise = r_days.lognormal(-(_DAY_NOISE_SIGMA**2) / 2, _DAY_NOISE_SIGMA, len(days))
    if spec.noise_ar or spec.noise_sigma is not None:
        noise = _shape_noise(noise, spec.noise_ar, spec.noise_sigma)
    # An incident replaces the day's ordinary demand shock, so the injected drop is the
    # size the ground truth states (up to Poisson noise), not masked by a lucky day.
    noise = np.where(eff.sales < 1.0, 1.0, noise)
    # base_orders counts completed orders; cancelled and refunded ones come on top.
    lam = (
        store.base_orders / _STATUS_P[0] * profile[weekday] * trend * ramp * holiday
        * eff.sales * noise * spec.scale
    )  # fmt: skip
    counts = r_days.poisson(lam)
    prod_day_factor = r_days.lognormal(-(_PROD_DAY_SIGMA**2) / 2, _PROD_DAY_SIGMA, len(days))

    r = rng(2)
    n = int(counts.sum())
    day_of = np.repeat(np.arange(len(days)), counts)
    # Morning commute peak, a lunch bump and a flat afternoon/evening floor.
    comp = r.choice(3, n, p=[0.45, 0.25, 0.30])
    tod = np.where(
        comp == 0,
        r.normal(8.25 * 3600, 3600, n),
        np.where(comp == 1, r.normal(12.75 * 3600, 1.2 * 3600, n), r.uniform(0, 1, n)),
    )
    outside = (comp == 2) | (tod < _OPEN_S) | (tod >= _CLOSE_S)
    tod[outside] = r.uniform(_OPEN_S, _CLOSE_S, int(outside.sum()))
    local_us = (day_num[day_of] * 86400 + np.floor(tod).astype(np.int64)) * _US
    create_us = local_to_utc(_us_to_datetime(local_us), store.time_zone).cast(pl.Int64).to_numpy()

    status = r.choice(np.array([1, 2, 3], dtype=np.int16), n, p=_STATUS_P)
    items = r.choice(np.array([1, 2, 3, 4], dtype=np.int32), n, p=[0.62, 0.25, 0.09, 0.04])
    per_item = r.lognormal(np.log(4.4) - 0.3**2 / 2, 0.3, n)
    pay = np.maximum(1.0, np.round(items * per_item, 2))

    # One production record per completed order; an abandoned one (1%) is remade.
    done = np.flatnonzero(status == 1)
    m = len(done)
    mean_s = store.base_production_seconds * eff.production * prod_day_factor
    p_start = create_us[done] + r.integers(0, 61, m) * _US
    p_dur = np.maximum(15, np.rint(r.gamma(_PROD_SHAPE, 1.0, m) / _PROD_SHAPE
                                   * mean_s[day_of[done]]))  # fmt: skip
    abandoned = r.random(m) < 0.01
    p_finish = p_start + p_dur.astype(np.int64) * _US
    remake_idx = np.flatnonzero(abandoned)
    k = len(remake_idx)
    re_start = p_start[remake_idx] + r.integers(60, 241, k) * _US
    re_dur = np.maximum(
        15, np.rint(r.gamma(_PROD_SHAPE, 1.0, k) / _PROD_SHAPE * mean_s[day_of[done][remake_idx]])
    )
    re_finish = re_start + re_dur.astype(np.int64) * _US
    final_finish = p_finish.copy()
    final_finish[remake_idx] = re_finish
    complete_us = np.full(n, -1, dtype=np.int64)
    complete_us[done] = final_finish + r.integers(20, 241, m) * _US
    menu_idx = r.choice(len(MENU), m, p=_MENU_P)

    late = np.zeros(n, dtype=bool)
    if store.dept_id == spec.late_store and spec.late_date in days:
        on_day = day_of == days.index(spec.late_date)
        late = on_day & (rng(3).random(n) < spec.late_fraction)

    okey = key_offset + np.arange(n, dtype=np.int64)
    complete = _us_to_datetime(complete_us)
    orders = pl.DataFrame(
        {
            "dept_id": pl.Series(np.full(n, store.dept_id, dtype=np.int64)),
            "order_status": pl.Series(status),
            "pay_amount": pl.Series(pay),
            "item_count": pl.Series(items),
            "create_time": _us_to_datetime(create_us),
            "complete_time": pl.Series(complete).set(pl.Series(complete_us < 0), None),
            "_okey": okey,
            "_late": late,
        }
    )
    menu = pl.Series(MENU, dtype=pl.String)
    prod_okey = np.concatenate([okey[done], okey[done][remake_idx]])
    production = pl.DataFrame(
        {
            "dept_id": pl.Series(np.full(m + k, store.dept_id, dtype=np.int64)),
            "_okey": prod_okey,
            "product_name": pl.concat([menu.gather(menu_idx), menu.gather(menu_idx[remake_idx])]),
            "start_time": _us_to_datetime(np.concatenate([p_start, re_start])),
            "finish_time": pl.Series(_us_to_datetime(np.concatenate([p_finish, re_finish]))).set(
                pl.Series(np.concatenate([abandoned, np.zeros(k, dtype=bool)])), None
            ),
            "_late": np.concatenate([late[done], late[done][remake_idx]]),
        }
    )
    return orders, production


def _shape_noise(noise: np.ndarray, ar: float, sigma: float | None) -> np.ndarray:
    """The same lognormal shocks, made AR(1)-correlated and/or rescaled.

    The standardised log shocks e_t are filtered as y_t = ar*y_(t-1) + sqrt(1-ar^2)*e_t,
    which keeps each day's marginal distribution (mean 1, log-sd `sigma`).
    """
    if not -1 < ar < 1:
        raise ValueError("noise_ar must be in (-1, 1)")
    sd = _DAY_NOISE_SIGMA if sigma is None else sigma
    e = (np.log(noise) + _DAY_NOISE_SIGMA**2 / 2) / _DAY_NOISE_SIGMA
    y = np.empty_like(e)
    prev = 0.0
    for i, ei in enumerate(e):
        prev = ar * prev + np.sqrt(1 - ar * ar) * ei if i else ei
        y[i] = prev
    return np.exp(-(sd**2) / 2 + sd * y)


def _store_schedules(
    store: StoreSpec, days: list[date], eff: _Effects, r: np.random.Generator
) -> pl.DataFrame:
    """Shifts of one store: distinct employees per day, local naive times."""
    day_num = _epoch_days(days)
    weekday = (day_num + 3) % 7
    profile = np.asarray(store.weekday_profile, dtype=float)
    profile = profile / profile.mean()
    # Staffing follows the weekly shape only partly: a store never runs below a core crew.
    planned = store.shifts_per_day * (0.75 + 0.25 * profile[weekday])
    jitter = r.choice(np.array([-1, 0, 1]), len(days), p=[0.2, 0.6, 0.2])
    shifts = np.rint((np.rint(planned) + jitter) * eff.staff).astype(np.int64)
    shifts = np.clip(shifts, 1, store.staff_pool)

    pool = store.staff_pool
    order = np.argsort(r.random((len(days), pool)), axis=1)
    slot = np.broadcast_to(np.arange(pool), (len(days), pool))
    mask = slot < shifts[:, None]
    employee = store.dept_id * 1000 + 1 + order[mask]
    slot_m = slot[mask]
    day_m = np.broadcast_to(day_num[:, None], (len(days), pool))[mask]
    total = int(mask.sum())
    template = slot_m % len(_SHIFT_SLOTS)
    adjust = r.choice(np.array([-0.5, -0.25, 0.0, 0.25, 0.5]), total, p=[0.1, 0.15, 0.5, 0.15, 0.1])
    hours = np.clip(_SHIFT_HOURS[template] + adjust, 4.0, 8.0)  # quarter hours, 4.00..8.00
    start_h = np.minimum(_SHIFT_SLOTS[template], _LAST_SHIFT_END_H - hours)
    start_us = (day_m * 86400 + np.rint(start_h * 3600).astype(np.int64)) * _US
    end_us = start_us + np.rint(hours * 3600).astype(np.int64) * _US
    position = np.where(slot_m % 4 == 0, "shift_lead", np.where(slot_m % 4 == 3, "cashier",
                                                                 "barista"))  # fmt: skip
    return pl.DataFrame(
        {
            "dept_id": np.full(total, store.dept_id, dtype=np.int64),
            "employee_id": employee.astype(np.int64),
            "work_date": pl.Series(day_m.astype(np.int32)).cast(pl.Date),
            "shift_start": _us_to_datetime(start_us),
            "shift_end": _us_to_datetime(end_us),
            "scheduled_hours": hours,
            "position": pl.Series(position, dtype=pl.String),
        }
    )


def _store_inspections(
    store: StoreSpec, days: list[date], eff: _Effects, r: np.random.Generator
) -> pl.DataFrame:
    """Inspections of one store at a local midday time, stored as naive UTC.

    Routine visits every 18-25 days, occasional unannounced ones, and a follow-up within
    about a week of any score below 80. A failed_inspection anomaly takes the place of the
    visits within a week of its day, so its score is the only one around it.
    """
    open_set = set(days)
    last = days[-1]

    def next_open(d: date) -> date:
        while d not in open_set and d <= last:
            d += timedelta(days=1)
        return d

    visits: list[tuple[date, str]] = []
    d = days[0] + timedelta(days=int(r.integers(3, 20)))
    while (d := next_open(d)) <= last:
        visits.append((d, "routine"))
        d += timedelta(days=int(r.integers(18, 26)))
    for i in np.flatnonzero(r.random(len(days)) < _SURPRISE_RATE):
        visits.append((days[i], "surprise"))
    for forced in eff.scores:
        visits = [v for v in visits if abs((v[0] - forced).days) > 6]
        visits.append((forced, "routine"))
    visits = sorted(set(visits))

    rows: list[tuple[date, str, float]] = []
    seen: set[date] = set()
    for day, kind in visits:
        if day in seen:
            continue
        seen.add(day)
        score = eff.scores.get(day, float(np.clip(r.normal(88, 5), 72, 100)))
        rows.append((day, kind, round(score, 2)))
        if score < 80:
            follow = next_open(day + timedelta(days=int(r.integers(5, 10))))
            if follow <= last and follow not in seen:
                seen.add(follow)
                follow_score = float(np.clip(r.normal(91, 3), 80, 100))
                rows.append((follow, "follow_up", round(follow_score, 2)))
    rows.sort()
    n = len(rows)
    score = np.array([row[2] for row in rows], dtype=float)
    failed = r.poisson(np.maximum(0.3, (100 - score) / 5)).astype(np.int32)
    minute = r.integers(10 * 60 + 30, 14 * 60 + 30, n)
    local_us = (_epoch_days([row[0] for row in rows]) * 86400 + minute * 60) * _US
    return pl.DataFrame(
        {
            "dept_id": np.full(n, store.dept_id, dtype=np.int64),
            "inspection_time": local_to_utc(_us_to_datetime(local_us), store.time_zone),
            "total_score": score,
            "inspection_type": pl.Series([row[1] for row in rows], dtype=pl.String),
            "failed_items": failed,
        }
    )


# Metrics an anomaly must alert on, and the minimum severity expected there.
_GT_METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "sales_drop": (("revenue", "order_count"), "CRITICAL"),
    "production_slowdown": (("avg_production_seconds",), "CRITICAL"),
    "understaffing": (("scheduled_hours", "headcount"), "CRITICAL"),
    "failed_inspection": (("inspection_score",), "CRITICAL"),
    "sales_decline": (("revenue",), "WARNING"),
}
# A decline is only expected to alert once the cumulative drop is clearly outside noise.
_DECLINE_ALERT_FROM = 0.30


def _ground_truth(spec: ChainSpec) -> pl.DataFrame:
    """One row per store, day and metric an anomaly should alert on.

    `expected_severity` is the minimum severity. From the second day of a multi-day
    sales_drop the 28-day baseline already holds the earlier drop days (wider limits), so
    only WARNING is guaranteed there (|z| > 2 or the 2-of-3 / 4-of-5 rules). Calibrated for
    scale 1.0: at scale 0.1 Poisson noise is about three times larger.
    """
    open_days = {s.dept_id: set(_open_days(s, spec)) for s in spec.stores}
    rows = []
    for a in spec.anomalies:
        metrics, severity = _GT_METRICS[a.kind]
        n_days = 1 if a.kind == "failed_inspection" else a.days
        for k in range(n_days):
            day = a.start + timedelta(days=k)
            if day not in open_days.get(a.dept_id, set()):
                continue
            cumulative = 1 - (1 - a.magnitude) ** (k + 1)
            if a.kind == "sales_decline" and cumulative < _DECLINE_ALERT_FROM:
                continue
            day_severity = "WARNING" if a.kind == "sales_drop" and k > 0 else severity
            for metric in metrics:
                rows.append((a.dept_id, day, metric, a.kind, float(a.magnitude), day_severity))
    return pl.DataFrame(
        rows,
        schema={
            "store_id": pl.Int64,
            "metric_date": pl.Date,
            "metric_name": pl.String,
            "kind": pl.String,
            "magnitude": pl.Float64,
            "expected_severity": pl.String,
        },
        orient="row",
    ).sort("store_id", "metric_date", "metric_name")


def _validate(spec: ChainSpec) -> None:
    ids = [s.dept_id for s in spec.stores]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate dept_id in ChainSpec.stores")
    for s in spec.stores:
        if len(s.weekday_profile) != 7:
            raise ValueError(f"store {s.dept_id}: weekday_profile needs 7 values (Mon..Sun)")
        if s.shop_status not in (0, 1, 2, 3):
            raise ValueError(f"store {s.dept_id}: shop_status must be 0, 1, 2 or 3")
    for a in spec.anomalies:
        if a.kind not in ANOMALY_KINDS:
            raise ValueError(f"unknown anomaly kind {a.kind!r}; expected one of {ANOMALY_KINDS}")
        if a.dept_id not in ids:
            raise ValueError(f"anomaly on unknown store {a.dept_id}")
        if a.days < 1:
            raise ValueError("anomaly days must be >= 1")


def _shop_info(spec: ChainSpec) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "dept_id": s.dept_id,
                "shop_name": s.shop_name,
                "shop_name_cn": s.shop_name_cn,
                "city": s.city,
                "state": s.state,
                "district": s.district,
                "region": s.region,
                "time_zone": s.time_zone,
                "open_date": s.open_date,
                "shop_status": s.shop_status,
                "is_deleted": 0,
            }
            for s in spec.stores
        ],
        schema=table_schema(t_shop_info),
    )


_ORDER_COLS = [c.name for c in t_order.columns]
_PRODUCTION_COLS = [c.name for c in t_production_record.columns]
_SCHEDULE_COLS = [c.name for c in t_employee_schedule.columns]
_INSPECTION_COLS = [c.name for c in t_inspection_record.columns]


def _with_ids(df: pl.DataFrame, sort_by: list[str]) -> pl.DataFrame:
    """Ids in insertion order: by time, late rows last (they were inserted later)."""
    return (
        df.sort(sort_by, maintain_order=True)
        .with_row_index("id", offset=1)
        .with_columns(pl.col("id").cast(pl.Int64))
    )


def generate(spec: ChainSpec) -> SyntheticChain:
    """Generate the chain's source rows; deterministic for a given spec (and its seed)."""
    _validate(spec)
    orders_parts, prod_parts, sched_parts, insp_parts = [], [], [], []
    key_offset = 0
    for store in spec.stores:
        days = _open_days(store, spec)
        if not days:
            continue

        # Streams per store and purpose: one store's parameters never shift another's draws.
        def rng(stream: int, dept_id: int = store.dept_id) -> np.random.Generator:
            return np.random.default_rng([spec.seed, dept_id, stream])

        eff = _effects(store, days, spec.anomalies)
        o, p = _store_orders(store, spec, days, eff, rng, key_offset)
        key_offset += o.height
        orders_parts.append(o)
        prod_parts.append(p)
        sched_parts.append(_store_schedules(store, days, eff, rng(4)))
        insp_parts.append(_store_inspections(store, days, eff, rng(5)))

    orders = _with_ids(pl.concat(orders_parts), ["_late", "create_time", "dept_id", "_okey"])
    production = _with_ids(pl.concat(prod_parts), ["_late", "start_time", "dept_id", "_okey"])
    production = production.join(
        orders.select("_okey", pl.col("id").alias("order_id")), on="_okey", how="left"
    )
    schedules = _with_ids(pl.concat(sched_parts), ["work_date", "dept_id", "shift_start"])
    inspections = _with_ids(pl.concat(insp_parts), ["inspection_time", "dept_id"])

    def split(df: pl.DataFrame, cols: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
        df = df.sort("id")
        return df.filter(~pl.col("_late")).select(cols), df.filter(pl.col("_late")).select(cols)

    orders, late_orders = split(orders, _ORDER_COLS)
    production, late_production = split(production, _PRODUCTION_COLS)
    return SyntheticChain(
        spec=spec,
        shop_info=_shop_info(spec),
        orders=orders,
        production=production,
        schedules=schedules.select(_SCHEDULE_COLS),
        inspections=inspections.select(_INSPECTION_COLS),
        late_orders=late_orders,
        late_production=late_production,
        ground_truth=_ground_truth(spec),
    )


# ---------------------------------------------------------------------- reference KPIs
