"""Benchmark: detection quality of the real asset graph on generated chains.

Usage:  python benchmarks/detection_quality.py [--scale 1.0] [--seed 11]
                                               [--configs guide-plain,guide-masked,...]
                                               [--keep-data]

Needs MariaDB on 127.0.0.1:3306 (root, empty password). It (re)creates, and unless
--keep-data drops at the end, the databases dq_opshop, dq_sales_order, dq_opproduction,
dq_opempefficiency, dq_opqualitycontrol (sources) and dq_analytics (analytics). Dagster
runs on a temporary instance under /dev/shm (or /tmp), removed at the end unless
--keep-data.

What it does
------------
1. Generates ONE synthetic chain (`benchmark_chain`, 2025-07-01..2026-02-15, 24 stores,
   day-to-day demand shocks AR(1) 0.4, the generator's holidays) with two kinds of stores:
   - 10 in-control stores (2001-2010): five weekly shapes, trends from -0.08% to +0.06% a
     day, two openings during the period (with the generator's ramp-up), no anomaly;
   - 14 anomaly stores (3001-3014): 3001-3006 get a single-day sales drop every 21 days
     (25, 40, 60 percent in turn), a production slowdown (+40% preparation time) 7 days
     later, an understaffing day (-40% shifts) 14 days later and two failed inspections;
     3007-3012 get three sustained events 8-9 weeks apart: a 10% and a 20% drop for 14
     days and a decline of 1% a day for 28 days; 3013-3014 drop 30% for good in
     November (a permanent level change: when do the alerts stop?).
2. Loads it into the dq_ sources and, for every configuration, empties dq_analytics and
   materializes the whole asset graph over the full range in one Dagster run with
   `cli.run_pipeline` (the same call `store-anomaly run --backfill-from/--backfill-to`
   makes). Figures are read back from store_anomaly_scores and store_anomaly_alerts.
3. Prints one table per configuration, and PASS/FAIL lines for the targets of "fewer,
   better alerts" (false incidents per in-control store-week, same-day recall, delays,
   incidents per event). `--configs guide-plain,quiet-plain,standard` measures the
   three alert profiles (`PROFILES`) in one run, as docs/detection.md reports them.

Definitions
-----------
- series-day: one store, day and metric with a z (SPC metrics) or an inspection on an
  eligible day, on the in-control stores. False alerts per series-day = alerts on the
  in-control stores / series-days, by severity (every alert there is false). Per
  store-week = alerts / (store-days scored / 7). "of which Z>2 only" counts WARNINGs
  raised by nothing but the single-point 2-sigma threshold. EVENT = known-event alerts
  (INFO, marked expected; they page nobody).
- recall: an injected event is detected when an alert (CRITICAL, or WARNING and above)
  on one of its metrics falls inside the event (single-day: that day only; sustained:
  its 14 days; decline: its 28 days). Delay = days from the first day of the event to
  the first such alert (0 = the same day). Median over detected events; n/d = never.
  Metrics: sales -> revenue or order_count; production -> avg_production_seconds;
  staffing -> scheduled_hours or headcount; inspection -> inspection_score.
- incident: `core.incidents.group_incidents` over the alerts: one store's alerts on the
  same or consecutive days. A false incident is one on an in-control store; its severity
  is the highest of its alerts (INFO only: nothing above INFO); known-event incidents
  (all alerts marked EVENT:) are not counted. Incidents per event: the store's incidents
  (known events left out) that overlap the event's days and hold an alert on one of the
  event's metrics (an unrelated staffing alert during a sales decline is not counted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

SOURCES = {
    "OPSHOP_": "dq_opshop",
    "SALESORDER_": "dq_sales_order",
    "OPPRODUCTION_": "dq_opproduction",
    "OPEMPEFFICIENCY_": "dq_opempefficiency",
    "OPQUALITYCONTROL_": "dq_opqualitycontrol",
}
ANALYTICS = "dq_analytics"
START, END = date(2025, 7, 1), date(2026, 2, 15)

# name -> SpcSettings overrides
CONFIGS: dict[str, dict] = {
    "guide-plain": {"alert_profile": "guide"},  # DESIGN section 5
    "guide-masked": {"alert_profile": "guide", "baseline_masking": "exclude"},
    "guide-clipped": {"alert_profile": "guide", "baseline_masking": "clip"},
    "quiet-plain": {"alert_profile": "quiet"},
    "quiet-clipped": {"alert_profile": "quiet", "baseline_masking": "clip"},
    "quiet-masked": {"alert_profile": "quiet", "baseline_masking": "exclude"},
    # Before the known-events calendar.
    "guide-plain-nocal": {"alert_profile": "guide", "known_events": "none"},
    # Calibrated log-scale limits, exact count tails, robust baselines, CUSUM.
    "standard": {"alert_profile": "standard"},
}
# The three profiles, measured in one run for docs/detection.md.
PROFILES = "guide-plain,quiet-plain,standard"


def _set_env(scratch: Path) -> None:
    """Before the package's settings-reading modules are imported (partitions, sensors)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store_anomaly_tests"))
    from local_env import use_local_databases

    use_local_databases({**SOURCES, "DBATEST_": ANALYTICS}, scratch)
    os.environ["DAGSTER_HOME"] = str(scratch / "dagster_home")


# ------------------------------------------------------------------------ the chain


def benchmark_chain(scale: float = 1.0, seed: int = 11):
    from store_anomaly_assets.demo import synthetic as sy

    ny, chi, la = "America/New_York", "America/Chicago", "America/Los_Angeles"
    shapes = [sy.COMMUTER, sy.FINANCIAL, sy.MALL, sy.NEIGHBORHOOD, sy.BALANCED]
    zones = [ny, chi, la]
    trends = [0.0003, -0.0004, 0.0006, 0.0, -0.0008, 0.0002, 0.0005, -0.0002, 0.0001, 0.0004]
    stores = []
    for i in range(10):  # in-control
        opened = {8: date(2025, 8, 18), 9: date(2025, 10, 6)}.get(i, date(2024, 3, 1))
        stores.append(sy.StoreSpec(
            dept_id=2001 + i, shop_name=f"Control {i + 1}", shop_name_cn=f"对照店{i + 1}",
            city="City", state="NY", district=f"District {i % 3}", region="East",
            time_zone=zones[i % 3], open_date=opened, shop_status=1,
            base_orders=180 + 12 * i, weekday_profile=shapes[i % 5],
            trend_per_day=trends[i], base_production_seconds=150 + 6 * i,
            staff_pool=14, shifts_per_day=7.0 + 0.2 * (i % 5),
        ))
    for i in range(14):  # anomaly stores
        stores.append(sy.StoreSpec(
            dept_id=3001 + i, shop_name=f"Test {i + 1}", shop_name_cn=f"测试店{i + 1}",
            city="City", state="IL", district=f"District {i % 3}", region="Central",
            time_zone=zones[(i + 1) % 3], open_date=date(2024, 3, 1), shop_status=1,
            base_orders=190 + 10 * i, weekday_profile=shapes[(i + 2) % 5],
            trend_per_day=trends[i % 10] / 2, base_production_seconds=160 + 4 * i,
            staff_pool=14, shifts_per_day=7.2 + 0.2 * (i % 4),
        ))
    holidays = sy.DEFAULT_HOLIDAYS
    blocked = {d + timedelta(days=k) for d in holidays for k in (0, 1)}

    def clear(d: date) -> date:
        while d in blocked:
            d += timedelta(days=1)
        return d

    anomalies = []
    sizes = (0.25, 0.40, 0.60)
    for i in range(6):
        dept = 3001 + i
        for k in range(9):
            d = date(2025, 8, 11) + timedelta(days=3 * i + 21 * k)
            if d > END - timedelta(days=2):
                break
            anomalies.append(sy.Anomaly(dept, clear(d), 1, "sales_drop", sizes[(k + i) % 3]))
            p = clear(d + timedelta(days=7))
            if p <= END:
                anomalies.append(sy.Anomaly(dept, p, 1, "production_slowdown", 0.4))
            u = clear(d + timedelta(days=14))
            if u <= END:
                anomalies.append(sy.Anomaly(dept, u, 1, "understaffing", 0.4))
        anomalies.append(sy.Anomaly(dept, clear(date(2025, 10, 2) + timedelta(days=4 * i)), 1,
                                    "failed_inspection", 62.0))
        anomalies.append(sy.Anomaly(dept, clear(date(2026, 1, 5) + timedelta(days=4 * i)), 1,
                                    "failed_inspection", 74.0))
    # A permanent level change: 30% down from early November to the end of the data.
    for i in range(2):
        begin = date(2025, 11, 3) + timedelta(days=2 * i)
        anomalies.append(sy.Anomaly(3013 + i, begin, (END - begin).days + 1, "sales_drop", 0.30))
    sustained = [("sales_drop", 14, 0.10), ("sales_drop", 14, 0.20), ("sales_decline", 28, 0.01)]
    starts = [date(2025, 8, 18), date(2025, 10, 13), date(2026, 1, 12)]
    for i in range(6):
        for k, begin in enumerate(starts):
            kind, days, size = sustained[(k + i) % 3]
            anomalies.append(sy.Anomaly(3007 + i, begin + timedelta(days=i), days, kind, size))
    return sy.ChainSpec(start=START, end=END, seed=seed, scale=scale, stores=tuple(stores),
                        anomalies=tuple(anomalies), holidays=dict(holidays), late_store=None,
                        noise_ar=0.4)


def event_label(a) -> str:
    if a.kind == "sales_drop" and a.days > 60:
        return f"permanent drop {a.magnitude:.0%}"
    if a.kind == "sales_drop" and a.days == 1:
        return f"single-day drop {a.magnitude:.0%}"
    if a.kind == "sales_drop":
        return f"sustained drop {a.magnitude:.0%} x {a.days}d"
    if a.kind == "sales_decline":
        return f"decline {a.magnitude:.0%}/day x {a.days}d"
    if a.kind == "production_slowdown":
        return f"production +{a.magnitude:.0%} time"
    if a.kind == "understaffing":
        return f"understaffing -{a.magnitude:.0%} shifts"
    return f"failed inspection ({a.magnitude:g})"


EVENT_METRICS = {
    "sales_drop": ("revenue", "order_count"),
    "sales_decline": ("revenue", "order_count"),
    "production_slowdown": ("avg_production_seconds",),
    "understaffing": ("scheduled_hours", "headcount"),
    "failed_inspection": ("inspection_score",),
}


# ----------------------------------------------------------------------- evaluation


def evaluate(spec, scores, alerts) -> dict:
    import polars as pl

    from store_anomaly_assets.core.incidents import group_incidents

    control = [s.dept_id for s in spec.stores if s.dept_id < 3000]
    first = {s.dept_id: max(START, s.open_date) for s in spec.stores}
    sc = scores.filter(pl.col("store_id").is_in(control))
    eligible_day = pl.col("metric_date") >= pl.col("store_id").replace_strict(
        {k: v + timedelta(days=28) for k, v in first.items()}, return_dtype=pl.Date)
    scored = sc.filter(pl.col("z_score").is_not_null()
                       | ((pl.col("metric_name") == "inspection_score") & eligible_day))
    series_days = scored.height
    store_days = scored.select("store_id", "metric_date").unique().height
    al = alerts.filter(pl.col("store_id").is_in(control))
    event = pl.col("rules_violated").fill_null("").str.starts_with("EVENT:")
    out = {"series_days": series_days, "store_weeks": store_days / 7}
    for sev in ("CRITICAL", "WARNING", "INFO"):
        out[f"fa_{sev}"] = al.filter(pl.col("severity") == sev).height
    out["fa_event"] = al.filter(event).height
    out["fa_z2only"] = al.filter(pl.col("rules_violated") == "Z>2").height
    out["fa_total"] = al.height
    out["fa_paging"] = al.filter(~event).height

    # Alerts on the anomaly stores on days outside every injected event: the aftermath
    # of anomalies (inflated or dragged baselines) plus noise.
    windows = {(ev.dept_id, ev.start + timedelta(days=k))
               for ev in spec.anomalies for k in range(ev.days)}
    test_scored = scores.filter(pl.col("store_id") > 3000, pl.col("z_score").is_not_null())
    outside = [(s, d) not in windows for s, d in
               test_scored.select("store_id", "metric_date").iter_rows()]
    out["test_series_days"] = int(sum(outside))
    test_alerts = alerts.filter(pl.col("store_id") > 3000, ~event,
                                pl.col("metric_name") != "inspection_score")
    flags = [(s, d) not in windows for s, d in
             test_alerts.select("store_id", "alert_date").iter_rows()]
    kept = test_alerts.filter(pl.Series(flags, dtype=pl.Boolean))
    for sev in ("CRITICAL", "WARNING", "INFO"):
        out[f"tfa_{sev}"] = kept.filter(pl.col("severity") == sev).height

    # Incidents (core/incidents.py): one store's alerts on the same or consecutive days.
    # False incidents: on the in-control stores, known-event incidents left out.
    assigned, incidents = group_incidents(alerts)
    inc = incidents.filter(~pl.col("known_event"))
    ctl = inc.filter(pl.col("store_id").is_in(control))
    out["fi_CRITICAL"] = ctl.filter(pl.col("severity") == "CRITICAL").height
    out["fi_CW"] = ctl.filter(pl.col("severity").is_in(["CRITICAL", "WARNING"])).height
    out["fi_INFO"] = ctl.filter(pl.col("severity") == "INFO").height
    out["fi_all"] = ctl.height
    out["fi_event"] = incidents.filter(pl.col("known_event"),
                                       pl.col("store_id").is_in(control)).height
    out["alerts_per_incident"] = (
        assigned.filter(~pl.col("known_event")).height / max(1, inc.height))
    metrics_of = dict(assigned.filter(~pl.col("known_event")).group_by("incident_key")
                      .agg(pl.col("metric_name").unique()).iter_rows())
    spans = [(s_, f, la, set(metrics_of[k])) for k, s_, f, la in inc.select(
        "incident_key", "store_id", "first_date", "last_date").iter_rows()]

    # Detection of injected events.
    rank = {"CRITICAL": 0, "WARNING": 1, "INFO": 2}
    a = alerts.filter(~event).with_columns(
        rank=pl.col("severity").replace_strict(rank, return_dtype=pl.Int8))
    by_key: dict[tuple[int, str], list[tuple[date, int]]] = {}
    for r in a.select("store_id", "metric_name", "alert_date", "rank").iter_rows():
        by_key.setdefault((r[0], r[1]), []).append((r[2], r[3]))
    rows: dict[str, dict[str, list]] = {}
    for ev in spec.anomalies:
        label = event_label(ev)
        last = ev.start + timedelta(days=(1 if ev.kind == "failed_inspection" else ev.days) - 1)
        found: dict[int, int | None] = {}
        for max_rank in (0, 1, 2):
            hits = [d for m in EVENT_METRICS[ev.kind] for d, rk in by_key.get((ev.dept_id, m), [])
                    if ev.start <= d <= last and rk <= max_rank]
            found[max_rank] = (min(hits) - ev.start).days if hits else None
        slot = rows.setdefault(label, {"crit": [], "warn": [], "any": [], "last": [],
                                       "incidents": []})
        # The incidents it raised: the store's incidents that overlap the event's days
        # and hold an alert on one of its metrics.
        slot["incidents"].append(sum(
            1 for st, f, la, ms in spans if st == ev.dept_id and f <= last
            and la >= ev.start and ms & set(EVENT_METRICS[ev.kind])))
        if ev.days > 60:  # permanent: when do the alerts stop (re-baselining)?
            seen = [((d - ev.start).days, rk) for m in EVENT_METRICS[ev.kind]
                    for d, rk in by_key.get((ev.dept_id, m), []) if ev.start <= d <= last]
            days = sorted({d for d, _ in seen})
            crit = {d for d, rk in seen if rk == 0}
            # The episode ends at the last alert before the first 7 alert-free days; later
            # alerts are the noise any store has.
            end = days[0] if days else None
            for a_day in days[1:]:
                if a_day - end > 7:
                    break
                end = a_day
            slot["last"].append((end, sum(d <= end for d in days), len(crit),
                                 len(days)) if days else None)
        slot["crit"].append(found[0])
        slot["warn"].append(found[1])
        slot["any"].append(found[2])
    out["events"] = rows
    return out


def _median(delays: list) -> str:
    got = [d for d in delays if d is not None]
    if not got:
        return "n/d"
    # Undetected events count as "later than any detection" for the median.
    ordered = sorted(got) + [10**6] * (len(delays) - len(got))
    med = statistics.median_low(ordered)
    return "n/d" if med >= 10**6 else f"{med:g}"


def _delays(res: dict, label: str, key: str) -> list:
    return res["events"].get(label, {}).get(key, [])


def _same_day(res: dict, label: str, key: str) -> float:
    delays = _delays(res, label, key)
    return sum(d == 0 for d in delays) / max(1, len(delays))


def _incidents_per_event(res: dict, *prefixes: str) -> tuple[float, int]:
    counts = [n for label, ev in res["events"].items() if label.startswith(prefixes)
              for n in ev["incidents"]]
    return (sum(counts) / max(1, len(counts)), max(counts, default=0))


def targets(name: str, res: dict) -> list[str]:
    """The targets of "fewer, better alerts", judged on this configuration's figures."""
    sw = res["store_weeks"]
    out = []

    def line(ok: bool, text: str) -> None:
        out.append(f"- {'PASS' if ok else 'FAIL'} {text}")

    crit, cw, info = (res[k] / sw for k in ("fi_CRITICAL", "fi_CW", "fi_INFO"))
    line(crit <= 0.05, f"false CRITICAL incidents {crit:.3f} per in-control store-week (<= 0.05)")
    line(cw <= 0.30, f"false CRITICAL or WARNING incidents {cw:.3f} per store-week (<= 0.30)")
    line(info <= 0.20, f"false INFO-only incidents {info:.3f} per store-week (<= 0.20)")
    r40 = _same_day(res, "single-day drop 40%", "warn")
    c40 = _same_day(res, "single-day drop 40%", "crit")
    line(r40 >= 0.95, f"single-day 40% drops, same day at CRITICAL or WARNING: {100 * r40:.0f}% "
         "(>= 95%)")
    line(c40 >= 0.80, f"single-day 40% drops, same day at CRITICAL: {100 * c40:.0f}% (>= 80%)")
    rp = _same_day(res, "production +40% time", "warn")
    line(rp >= 0.90, f"production +40% time, same day: {100 * rp:.0f}% (>= 90%)")
    ru = _same_day(res, "understaffing -40% shifts", "warn")
    line(ru >= 0.90, f"scheduled hours -40%, same day: {100 * ru:.0f}% (>= 90%)")
    for label, limit in (("sustained drop 20% x 14d", 1), ("sustained drop 10% x 14d", 7)):
        delays = _delays(res, label, "warn")
        found = sum(d is not None for d in delays)
        med = _median(delays)
        line(found == len(delays) and med != "n/d" and float(med) <= limit,
             f"{label}: {found}/{len(delays)} flagged, median delay {med} d (all, <= {limit})")
    delays = _delays(res, "decline 1%/day x 28d", "warn")
    within = sum(d is not None and d < 14 for d in delays)
    med = _median(delays)
    line(within == len(delays) and med != "n/d" and float(med) <= 10,
         f"1%/day declines: {within}/{len(delays)} flagged within 14 days, median delay {med} d "
         "(all, <= 10)")
    mean1, max1 = _incidents_per_event(res, "single-day")
    line(max1 <= 1, f"incidents per single-day event: mean {mean1:.2f}, max {max1} (1)")
    means, maxs = _incidents_per_event(res, "sustained", "decline")
    line(maxs <= 2, f"incidents per sustained event (drops and declines): mean {means:.2f}, "
         f"max {maxs} (<= 2)")
    return out


def print_report(name: str, res: dict, seconds: float) -> None:
    sd, sw = res["series_days"], res["store_weeks"]
    print(f"\n### {name}  (pipeline run {seconds:.0f} s)\n")
    print(f"In-control: {sd} series-days, {sw:.1f} store-weeks (10 stores)\n")
    print("| false alerts | count | per 100 series-days | per store-week |")
    print("|---|---:|---:|---:|")
    for key, label in (("fa_CRITICAL", "CRITICAL"), ("fa_WARNING", "WARNING"),
                       ("fa_z2only", "  of which Z>2 only"), ("fa_INFO", "INFO"),
                       ("fa_event", "  of which EVENT (expected)"),
                       ("fa_total", "all alerts"), ("fa_paging", "all but EVENT")):
        n = res[key]
        print(f"| {label} | {n} | {100 * n / sd:.3f} | {n / sw:.2f} |")
    print("\n| false incidents, in-control (known events left out) | count | per store-week |")
    print("|---|---:|---:|")
    for key, label in (("fi_CRITICAL", "CRITICAL"), ("fi_CW", "CRITICAL or WARNING"),
                       ("fi_INFO", "INFO only"), ("fi_all", "all"),
                       ("fi_event", "known-event incidents (not counted)")):
        print(f"| {label} | {res[key]} | {res[key] / sw:.3f} |")
    print(f"\nAlerts per incident (all stores, known events left out): "
          f"{res['alerts_per_incident']:.2f}")
    td = res["test_series_days"]
    print(f"\nAnomaly stores, days outside every injected event ({td} series-days): "
          + ", ".join(f"{sev} {res[f'tfa_{sev}']} ({100 * res[f'tfa_{sev}'] / td:.3f} per 100)"
                      for sev in ("CRITICAL", "WARNING", "INFO")))
    print("\n| injected event | n | recall CRITICAL | recall >=WARNING | recall any | "
          "same day CRITICAL | same day >=WARNING | median delay CRITICAL (d) | "
          "median delay >=WARNING (d) | incidents per event |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label in sorted(res["events"]):
        ev = res["events"][label]
        n = len(ev["crit"])

        def recall(xs: list, n: int = n) -> str:
            return f"{100 * sum(x is not None for x in xs) / n:.0f}%"

        same = {k: f"{100 * _same_day(res, label, k):.0f}%" for k in ("crit", "warn")}
        print(f"| {label} | {n} | {recall(ev['crit'])} | {recall(ev['warn'])} | "
              f"{recall(ev['any'])} | {same['crit']} | {same['warn']} | "
              f"{_median(ev['crit'])} | {_median(ev['warn'])} | "
              f"{sum(ev['incidents']) / n:.2f} (max {max(ev['incidents'])}) |")
    print()
    for line in targets(name, res):
        print(line)
    for label in sorted(res["events"]):
        for got in res["events"][label]["last"]:
            if got is not None:
                print(f"\n{label}: alerts stop after day {got[0]} of the change (then 7+ "
                      f"quiet days); {got[1]} alerting days in that episode, {got[2]} of them "
                      f"CRITICAL; {got[3]} alerting days on its metrics to the end of the data")
    sys.stdout.flush()


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated names, or 'profiles' for " + PROFILES)
    parser.add_argument("--keep-data", action="store_true")
    args = parser.parse_args()
    if args.configs == "profiles":
        args.configs = PROFILES
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")

    scratch = Path(tempfile.mkdtemp(prefix="dq-bench-",
                                    dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    _set_env(scratch)

    import dagster as dg
    import polars as pl
    import sqlalchemy as sa

    from store_anomaly_assets.cli import run_pipeline
    from store_anomaly_assets.config import load_config
    from store_anomaly_assets.db.analytics.init_db import init_db
    from store_anomaly_assets.db.analytics.schema import ANALYTICS_TABLES
    from store_anomaly_assets.db.engines import create_engine
    from store_anomaly_assets.db.frames import read_frame
    from store_anomaly_assets.demo import loaders, synthetic

    server = sa.create_engine(sa.URL.create("mysql+pymysql", username="root",
                                            host="127.0.0.1", port=3306))
    url = server.url
    with server.begin() as conn:
        for db in [*SOURCES.values(), ANALYTICS]:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{db}`")
            conn.exec_driver_sql(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")

    t0 = time.perf_counter()
    spec = benchmark_chain(args.scale, args.seed)
    chain = synthetic.generate(spec)
    engines = {p: create_engine(url.set(database=db), read_only=False)
               for p, db in SOURCES.items()}
    rows = loaders.load_chain(chain, engines)
    analytics = create_engine(url.set(database=ANALYTICS), read_only=False)
    init_db(analytics)
    print(f"Chain: {len(spec.stores)} stores, {spec.start}..{spec.end}, scale {spec.scale}, "
          f"seed {spec.seed}, noise AR(1) {spec.noise_ar}; {rows['t_order']} orders; "
          f"{len(spec.anomalies)} injected events; generated and loaded in "
          f"{time.perf_counter() - t0:.0f} s")

    base = load_config(env_file=None)
    results = {}
    (scratch / "instance").mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(scratch / "instance")) as instance:
        for name in configs:
            with analytics.begin() as conn:
                for table in ANALYTICS_TABLES:
                    conn.execute(table.delete())
            settings = base.model_copy(update=CONFIGS[name])
            t1 = time.perf_counter()
            outcome = run_pipeline(settings, START, END, instance, log_level="WARNING")
            seconds = time.perf_counter() - t1
            if not outcome.success:
                print(f"{name}: run failed: {outcome.error}", file=sys.stderr)
                return 1
            scores = read_frame(analytics, sa.text(
                "SELECT store_id, metric_date, metric_name, z_score, severity, rules_violated "
                "FROM store_anomaly_scores"))
            alerts = read_frame(analytics, sa.text(
                "SELECT store_id, alert_date, metric_name, severity, rules_violated, impact_usd, "
                "scope FROM store_anomaly_alerts"))
            scores = scores.with_columns(pl.col("metric_date").cast(pl.Date),
                                         pl.col("z_score").cast(pl.Float64))
            alerts = alerts.with_columns(pl.col("alert_date").cast(pl.Date))
            results[name] = evaluate(spec, scores, alerts)
            print_report(name, results[name], seconds)

    if not args.keep_data:
        with server.begin() as conn:
            for db in [*SOURCES.values(), ANALYTICS]:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{db}`")
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nTotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
