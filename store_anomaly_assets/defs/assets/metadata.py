"""What every asset tells the Dagster UI: its table, columns, owner, kinds and row counts."""

from __future__ import annotations

from datetime import date

import dagster as dg
import sqlalchemy as sa

OWNERS = ["team:data-analytics"]
TAGS = {"domain": "store_operations", "use_case": "uc-op-02"}


def column_schema(table: sa.Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(column.name, str(column.type), description=column.comment)
        for column in table.columns
    ])


def asset_attributes(
    table: sa.Table,
    database: str,
    group_name: str,
    storage_kind: str,
    partitions_def: dg.PartitionsDefinition | None,
) -> dict:
    """Decorator arguments shared by the assets that write or read one table."""
    attributes: dict = {
        "group_name": group_name,
        "kinds": {storage_kind, "polars"},
        "owners": OWNERS,
        "tags": TAGS,
        "metadata": {
            "dagster/table_name": f"{database}.{table.name}",
            "dagster/column_schema": column_schema(table),
        },
    }
    if partitions_def is not None:
        attributes["partitions_def"] = partitions_def
        attributes["backfill_policy"] = dg.BackfillPolicy.single_run()
    return attributes


def range_metadata(rows: int | None, start: date, end: date) -> dict:
    """Row counts that are true for what they describe.

    Dagster copies a ranged run's metadata onto every partition of the range, so a count
    is `dagster/row_count` only when the run covers one partition; otherwise it is named
    for the run's range.
    """
    if start == end:
        return {"dagster/row_count": rows or 0, "range": str(start)}
    return {"rows_in_run_range": rows or 0, "range": f"{start}..{end} (the whole run)"}
