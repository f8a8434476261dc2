"""Steps 1-5: the store master and one daily extract per source database.

Each extract is aggregated inside its source database and kept by the extract IO
manager, one file per business day, for the KPI step.
"""


from collections.abc import Callable
from datetime import date

import dagster as dg
import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.partitions import daily_partitions, partition_dates, run_range
from store_anomaly_assets.resources import AnomalySettings, Database
from store_anomaly_assets.run_lock import RunLock
from store_anomaly_assets.sources import extraction
from store_anomaly_assets.storage.pipeline_log import logged_step

GROUP = "sources"


@dg.asset(
    group_name=GROUP,
    io_manager_key="extract_io_manager",
    kinds={"sql"},
    description="Step 1: stores from t_shop_info with time zone and `is_active` "
    "(operating, not deleted, on the ACTIVE_STORES allow-list).",
)
def store_master(
    context: dg.AssetExecutionContext,
    opshop: Database,
    analytics: Database,
    anomaly_settings: AnomalySettings,
    run_lock: RunLock,
) -> pl.DataFrame:
    # `run_lock` is held from here to the end of the run: see RunLock.
    start, end = run_range(context)
    with logged_step(analytics.engine(), context.run.run_id, start, end, 1) as step:
        try:
            stores = extraction.load_store_master(opshop.engine(),
                                                  anomaly_settings.active_stores)
        except (sa.exc.DBAPIError, OSError) as exc:
            raise opshop.explain(exc) from exc
        step.rows_affected = stores.height
    active = stores.filter(pl.col("is_active"))
    context.add_output_metadata(
        {
            "stores": stores.height,
            "active_stores": active.height,
            "time_zones": ", ".join(sorted(active["time_zone"].unique().to_list())),
        }
    )
    return stores


Extractor = Callable[[sa.Engine, pl.DataFrame, date, date], pl.DataFrame]


def _extract_asset(
    name: str, step_number: int, source_key: str, extractor: Extractor, description: str
) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name=GROUP,
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="extract_io_manager",
        required_resource_keys={source_key, "analytics", "run_lock"},
        kinds={"sql", "polars"},
        description=description,
    )
    def _asset(context: dg.AssetExecutionContext, store_master: pl.DataFrame) -> pl.DataFrame:
        start, end = partition_dates(context)
        source: Database = getattr(context.resources, source_key)
        analytics: Database = context.resources.analytics
        with logged_step(analytics.engine(), context.run.run_id, start, end, step_number) as step:
            try:
                frame = extractor(source.engine(), store_master, start, end)
            # A read timeout can surface as the socket's own TimeoutError (an OSError).
            except (sa.exc.DBAPIError, OSError) as exc:
                raise source.explain(exc) from exc
            step.rows_affected = frame.height
        context.add_output_metadata(
            {"rows": frame.height, "range": f"{start}..{end}", "source": source.describe()}
        )
        return frame

    return _asset


sales_extract = _extract_asset(
    "sales_extract", 2, "sales_order", extraction.extract_sales,
    "Step 2: completed orders and revenue per store and local day (t_order).",
)
production_extract = _extract_asset(
    "production_extract", 3, "opproduction", extraction.extract_production,
    "Step 3: finished production records and mean seconds (t_production_record).",
)
staffing_extract = _extract_asset(
    "staffing_extract", 4, "opempefficiency", extraction.extract_staffing,
    "Step 4: scheduled hours and distinct employees per work date (t_employee_schedule).",
)
quality_extract = _extract_asset(
    "quality_extract", 5, "opqualitycontrol", extraction.extract_quality,
    "Step 5: inspections and mean score per local day (t_inspection_record).",
)
