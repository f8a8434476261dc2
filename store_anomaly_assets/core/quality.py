"""Source data quality: which rows count, which store-days are complete, and the gate.

Three layers protect the analytics history from bad source data:

1. Row validity. An order whose amount is missing, negative or above
   `max_order_amount`, a production record that lasted less than nothing or more than
   `max_production_seconds`, a shift outside 0-16 hours and an inspection score outside
   0-100 are left out of every KPI (the extraction queries apply the rules). Each
   store-day with excluded rows gets a WARN finding with the count.
2. Store-day completeness. The activity sources (orders, production, shifts) move
   together: a store-day with rows in some of them and none in another has lost an
   export, not its customers. That source's KPIs are unknown (NULL) for the day, which
   the statistics neither score nor learn from, and the day gets an ERROR finding. A
   store-day with no activity at all is a closure: no KPIs, a WARN finding unless the
   known-events calendar lists it.
3. The gate. Before anything is overwritten, a source with no valid rows for the whole
   range while the others have rows, or with fewer than `source_drop_ratio` of the
   rows the analytics tables already hold for the range, stops the run. An empty store
   master stops it too (see `extraction.require_stores`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from store_anomaly_assets.core.contracts import FINDING_COLUMNS, FINDING_SCHEMA, SOURCE_TABLES

# Fixed by what the numbers mean, unlike the amount and duration limits, which depend on
# the menu and the bar: a shift cannot be negative and no store schedules a double
# shift, and inspections are scored out of 100.
MAX_SHIFT_HOURS = 16.0
INSPECTION_SCORE_RANGE = (0.0, 100.0)

# Below this many rows already held for a range, a lower count is not evidence of a lost
# source (a daily range holds a handful of inspections), so the drop-ratio test waits.
MIN_ROWS_FOR_DROP_RATIO = 20


class DataQualitySettings(BaseModel):
    """The row-validity limits and the gate's threshold (inherited by config and Dagster)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    max_order_amount: float = Field(
        1000.0, gt=0, allow_inf_nan=False,
        description="MAX_ORDER_AMOUNT: USD; a completed order above it is left out")
    max_production_seconds: int = Field(
        3600, gt=0, description="MAX_PRODUCTION_SECONDS: a drink that took longer is left out")
    source_drop_ratio: float = Field(
        0.5, ge=0, le=1, allow_inf_nan=False,
        description="SOURCE_DROP_RATIO: a source with fewer rows than this share of what "
        "the analytics tables hold for the range stops the run")

    @property
    def data_quality(self) -> DataQualitySettings:
        """Just these settings, from a model that extends them (config, Dagster resource)."""
        return DataQualitySettings.model_validate(
            {name: getattr(self, name) for name in DataQualitySettings.model_fields})


@dataclass(frozen=True)
class Source:
    """An extract as data quality sees it: its valid-row count column and its KPIs."""

    name: str
    # The extract's column counting the store-day's valid rows, which is also a KPI, so
    # the gate can compare it with what the analytics tables hold.
    rows: str
    noun: tuple[str, str]  # what a row is, in English and Chinese
    kpis: tuple[str, ...]  # KPI columns that are unknown when the source is missing
    excluded_because: tuple[str, str]  # why rows were left out, in both languages
    row_noun: tuple[str, str] | None = None  # what a source row is, when not `noun`

    @property
    def rows_noun(self) -> tuple[str, str]:
        return self.row_noun or self.noun


SALES = Source(
    "salesorder", "order_count", ("orders", "笔订单"),
    ("revenue", "order_count", "aov", "orders_per_labor_hour", "revenue_per_labor_hour"),
    ("amount missing, negative or above {max_order_amount:,.2f} (MAX_ORDER_AMOUNT)",
     "金额缺失、为负或超过 {max_order_amount:,.2f}（MAX_ORDER_AMOUNT）"),
)
PRODUCTION = Source(
    "opproduction", "production_count", ("production records", "条出品记录"),
    ("production_count", "avg_production_seconds", "production_per_labor_hour"),
    ("duration negative or above {max_production_seconds} s (MAX_PRODUCTION_SECONDS)",
     "时长为负或超过 {max_production_seconds} 秒（MAX_PRODUCTION_SECONDS）"),
)
STAFFING = Source(
    "opempefficiency", "headcount", ("employees on shift", "名排班员工"),
    ("scheduled_hours", "headcount", "orders_per_labor_hour", "revenue_per_labor_hour",
     "production_per_labor_hour"),
    (f"scheduled hours outside 0-{MAX_SHIFT_HOURS:g}", f"排班工时不在 0-{MAX_SHIFT_HOURS:g} 之间"),
    ("shifts", "个班次"),
)
QUALITY = Source(
    "opqualitycontrol", "inspection_count", ("inspections", "次质检"),
    ("inspection_count", "inspection_score"),
    ("score outside 0-100", "得分不在 0-100 之间"),
)
# Orders, production and shifts happen on every day a store trades; inspections do not.
ACTIVITY_SOURCES = (SALES, PRODUCTION, STAFFING)
EXTRACT_SOURCES = (*ACTIVITY_SOURCES, QUALITY)

_KEY = ["store_id", "metric_date"]


class SourceGapError(ValueError):
    """The gate refused the run: a source lost rows the analytics tables still hold."""


def _findings(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in FINDING_SCHEMA.items()
         if c not in frame.columns]
    ).select([pl.col(c).cast(t) for c, t in FINDING_SCHEMA.items()])


def empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema=FINDING_SCHEMA)


def excluded_row_findings(
    extracts: dict[str, pl.DataFrame], settings: DataQualitySettings
) -> pl.DataFrame:
    """WARN per store-day and source that had rows left out by the validity rules.

    `extracts` maps each source name to its extract (with `rows_excluded`).
    """
    parts = []
    for source in EXTRACT_SOURCES:
        why_en, why_zh = (w.format(**settings.model_dump()) for w in source.excluded_because)
        n = pl.col("rows_excluded").cast(pl.String)
        parts.append(_findings(
            extracts[source.name].filter(pl.col("rows_excluded") > 0).select(
                *_KEY,
                source=pl.lit(source.name),
                check_name=pl.lit("invalid_rows"),
                severity=pl.lit("WARN"),
                rows_affected=pl.col("rows_excluded"),
                detail=pl.format("{} {} left out of the KPIs: {}", n,
                                 pl.lit(source.rows_noun[0]), pl.lit(why_en)),
                detail_zh=pl.format("{}{}未计入指标：{}", n, pl.lit(source.rows_noun[1]),
                                    pl.lit(why_zh)),
            )
        ))
    return pl.concat(parts)


def source_rows(extracts: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Per store-day, each source's valid rows (0 when it has none) and `active`.

    `active`: any activity source has valid rows, so the store traded that day.
    """
    days = pl.concat([extracts[s.name].select(_KEY) for s in EXTRACT_SOURCES]).unique()
    for source in EXTRACT_SOURCES:
        days = days.join(
            extracts[source.name].select(*_KEY, pl.col(source.rows).alias(source.name)),
            on=_KEY, how="left",
        )
    counts = [pl.col(s.name).fill_null(0).cast(pl.Int64) for s in EXTRACT_SOURCES]
    return days.with_columns(counts).with_columns(
        active=pl.any_horizontal([pl.col(s.name) > 0 for s in ACTIVITY_SOURCES])
    ).sort(_KEY)


def missing_source_findings(rows: pl.DataFrame) -> pl.DataFrame:
    """ERROR per store-day that traded but has no valid rows in one activity source.

    The detail names what the other sources had, which is how a reader tells a lost
    export from a business event.
    """
    parts = []
    for source in ACTIVITY_SOURCES:
        others = [s for s in ACTIVITY_SOURCES if s is not source]

        def had(language: int, others: list[Source] = others) -> pl.Expr:
            words = [
                pl.when(pl.col(o.name) > 0).then(
                    pl.format("{} had {} {}" if language == 0 else "{} 有 {}{}",
                              pl.lit(o.name), pl.col(o.name), pl.lit(o.noun[language]))
                )
                for o in others
            ]
            return pl.concat_str(words, separator=" and " if language == 0 else "、",
                                 ignore_nulls=True)

        parts.append(_findings(
            rows.filter(pl.col("active") & (pl.col(source.name) == 0)).select(
                *_KEY,
                source=pl.lit(source.name),
                check_name=pl.lit("missing_rows"),
                severity=pl.lit("ERROR"),
                rows_affected=pl.lit(0),
                detail=pl.format("{} had no valid rows for this store-day while {}",
                                 pl.lit(source.name), had(0)),
                detail_zh=pl.format("{} 当日无有效数据，而 {}", pl.lit(source.name), had(1)),
            )
        ))
    return pl.concat(parts)


def closure_findings(
    rows: pl.DataFrame,
    first_dates: pl.DataFrame,
    start: date,
    end: date,
    events: pl.DataFrame,
) -> pl.DataFrame:
    """WARN per store-day without any activity, from each store's first day on.

    `first_dates` (store_id, first_date) lists the stores to expect, from the day their
    history starts. Days in `events` (store_id, metric_date) are expected closures. A
    day on which no store traded is one chain-wide finding (store_id NULL): a chain
    holiday, or sources not loaded yet.
    """
    expected = (
        first_dates.filter(pl.col("first_date") <= end)
        .with_columns(metric_date=pl.date_ranges(pl.max_horizontal("first_date", pl.lit(start)),
                                                 pl.lit(end)))
        .explode("metric_date")
        .select(*_KEY)
    )
    traded = rows.filter(pl.col("active")).select(_KEY)
    closed = (
        expected.join(traded, on=_KEY, how="anti")
        .join(events.select(_KEY), on=_KEY, how="anti")
    )
    chain_quiet = expected.join(traded, on="metric_date", how="anti").select("metric_date").unique()
    per_store = closed.join(chain_quiet, on="metric_date", how="anti")
    return _findings(pl.concat([
        per_store.select(
            *_KEY, detail=pl.lit("no orders, production or shifts: the store did not trade, "
                                 "although t_shop_info lists it as operating"),
            detail_zh=pl.lit("无订单、出品和排班记录：门店当日未营业，"
                             "但 t_shop_info 显示其正常营业"),
        ),
        closed.join(chain_quiet, on="metric_date", how="semi").select("metric_date").unique()
        .select(
            pl.lit(None, dtype=pl.Int64).alias("store_id"), "metric_date",
            detail=pl.lit("no store had orders, production or shifts: a chain-wide closure, "
                          "or the sources are not loaded yet"),
            detail_zh=pl.lit("所有门店均无订单、出品和排班记录：全链停业，或源数据尚未导入"),
        ),
    ]).with_columns(source=pl.lit("opshop"), check_name=pl.lit("no_activity"),
                    severity=pl.lit("WARN"), rows_affected=pl.lit(0)))


@dataclass(frozen=True)
class SourceGap:
    source: str
    message: str


def source_gaps(
    totals: dict[str, int], held: dict[str, int], start: date, end: date,
    settings: DataQualitySettings,
) -> list[SourceGap]:
    """The gate: sources whose rows for start..end would erase history if written.

    `totals` are the valid rows each extract source has for the range; `held` what the
    analytics tables hold for it (KPI sums: orders, drinks, employee-days, inspections).
    """
    gaps = []
    span = f"{start}..{end}" if start != end else str(start)
    with_rows = [s for s in ACTIVITY_SOURCES if totals.get(s.name, 0) > 0]
    for source in ACTIVITY_SOURCES:
        if totals.get(source.name, 0) == 0 and with_rows:
            other = with_rows[0]
            gaps.append(SourceGap(source.name, (
                f"{source.name} ({SOURCE_TABLES[source.name]}) has no valid rows for {span} "
                f"while {other.name} has {totals[other.name]:,} {other.noun[0]}")))
    for source in EXTRACT_SOURCES:
        total, before = totals.get(source.name, 0), held.get(source.name, 0)
        if any(g.source == source.name for g in gaps) or before < MIN_ROWS_FOR_DROP_RATIO:
            continue
        if total < settings.source_drop_ratio * before:
            gaps.append(SourceGap(source.name, (
                f"{source.name} ({SOURCE_TABLES[source.name]}) has {total:,} valid "
                f"{source.noun[0]} for {span}, {total / before:.0%} of the {before:,} the "
                f"analytics tables hold (SOURCE_DROP_RATIO={settings.source_drop_ratio:g})")))
    return gaps


def accepted_gap_findings(gaps: list[SourceGap], end: date) -> pl.DataFrame:
    """What a deliberate rewrite over the gate leaves on record: WARN per source."""
    return _findings(pl.DataFrame(
        {
            "metric_date": [end] * len(gaps),
            "source": [g.source for g in gaps],
            "detail": [f"{g.message}; written anyway (--accept-source-gaps)" for g in gaps],
            "detail_zh": [f"{g.message}；已按 --accept-source-gaps 强制写入" for g in gaps],
        },
        schema={"metric_date": pl.Date, "source": pl.String, "detail": pl.String,
                "detail_zh": pl.String},
    ).with_columns(check_name=pl.lit("source_gap_accepted"), severity=pl.lit("WARN"),
                   rows_affected=pl.lit(None, dtype=pl.Int64)))


def all_findings(*parts: pl.DataFrame) -> pl.DataFrame:
    """The findings of a run, in one frame ordered for reading."""
    frames = [p for p in parts if not p.is_empty()]
    if not frames:
        return empty_findings()
    return pl.concat(frames).select(FINDING_COLUMNS).sort(
        "metric_date", "store_id", "source", "check_name", nulls_last=True)


def unknown_kpis(rows: pl.DataFrame) -> pl.DataFrame:
    """Per traded store-day, the KPI columns to leave unknown: `missing_<source>` flags."""
    return rows.filter(pl.col("active")).select(
        *_KEY, *[(pl.col(s.name) == 0).alias(f"missing_{s.name}") for s in ACTIVITY_SOURCES]
    )
