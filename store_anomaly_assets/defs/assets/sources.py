"""Steps 1-5: the store master and one daily extract per source database.

Each extract is aggregated inside its source database and kept by the extract IO
manager, one file per business day, for the KPI step.
"""


from collections.abc import Callable
from datetime import date

import dagster as dg
import polars as pl
import sqlalchemy as sa

from store_anomaly_assets.core.quality import DataQualitySettings
from store_anomaly_assets.db.analytics.pipeline_log import logged_step
from store_anomaly_assets.db.sources import extraction
from store_anomaly_assets.defs.assets.metadata import OWNERS, TAGS, range_metadata
from store_anomaly_assets.defs.partitions import partition_dates, run_range
from store_anomaly_assets.defs.resources import AnomalySettings, Database
from store_anomaly_assets.defs.run_lock import RunLock

GROUP = "sources"


def build_source_assets(
    partitions_def: dg.PartitionsDefinition, storage_kind: str, source_databases: dict[str, str]
) -> list[dg.AssetsDefinition]:
    """Steps 1-5: the store master and the four daily extracts over `partitions_def`.

    `source_databases` names each source resource's database, for the UI.
    """
    master = dg.asset(
        group_name=GROUP,
        io_manager_key="extract_io_manager",
        kinds={storage_kind},
        owners=OWNERS,
        tags=TAGS,
        metadata={"dagster/table_name": f"{source_databases['opshop']}.t_shop_info"},
        description="Step 1: stores from t_shop_info with time zone and `is_active` "
        "(operating, not deleted, on the ACTIVE_STORES allow-list).",
    )(store_master)
    extracts = [
        _extract_asset(partitions_def, storage_kind, source_databases[source_key], *spec)
        for source_key, spec in _EXTRACTS.items()
    ]
    return [master, *extracts]


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
            extraction.require_stores(stores, opshop.describe())
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


Extractor = Callable[[sa.Engine, pl.DataFrame, date, date, DataQualitySettings],
                     pl.DataFrame]


def _extract_asset(
    partitions_def: dg.PartitionsDefinition,
    storage_kind: str,
    database: str,
    name: str,
    step_number: int,
    source_key: str,
    table: str,
    extractor: Extractor,
    description: str,
) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        io_manager_key="extract_io_manager",
        required_resource_keys={source_key, "analytics", "anomaly_settings", "run_lock"},
        kinds={storage_kind, "polars"},
        owners=OWNERS,
        tags=TAGS,
        metadata={"dagster/table_name": f"{database}.{table}"},
        description=description,
    )
    def _asset(context: dg.AssetExecutionContext, store_master: pl.DataFrame) -> pl.DataFrame:
        start, end = partition_dates(context)
        source: Database = getattr(context.resources, source_key)
        analytics: Database = context.resources.analytics
        limits = context.resources.anomaly_settings.data_quality
        with logged_step(analytics.engine(), context.run.run_id, start, end, step_number) as step:
            try:
                frame = extractor(source.engine(), store_master, start, end, limits)
            # A read timeout can surface as the socket's own TimeoutError (an OSError).
            except (sa.exc.DBAPIError, OSError) as exc:
                raise source.explain(exc) from exc
            step.rows_affected = frame.height
        context.add_output_metadata(
            {**range_metadata(frame.height, start, end), "source": source.describe()}
        )
        return frame

    return _asset


# Each extract: its asset name, the guide's step, the source resource and table.
_EXTRACTS: dict[str, tuple[str, int, str, str, Extractor, str]] = {
    "sales_order": (
        "sales_extract", 2, "sales_order", "t_order", extraction.extract_sales,
        "Step 2: valid completed orders and revenue per store and local day (t_order); "
        "orders with a missing, negative or implausible amount are counted, not summed.",
    ),
    "opproduction": (
        "production_extract", 3, "opproduction", "t_production_record",
        extraction.extract_production,
        "Step 3: finished production records and mean seconds (t_production_record).",
    ),
    "opempefficiency": (
        "staffing_extract", 4, "opempefficiency", "t_employee_schedule",
        extraction.extract_staffing,
        "Step 4: scheduled hours and distinct employees per work date (t_employee_schedule).",
    ),
    "opqualitycontrol": (
        "quality_extract", 5, "opqualitycontrol", "t_inspection_record",
        extraction.extract_quality,
        "Step 5: inspections and mean score per local day (t_inspection_record).",
    ),
}
