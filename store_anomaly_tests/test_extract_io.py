"""The extract IO manager: one parquet file per business day, read back for any range."""

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from store_anomaly_assets.config import load_config
from store_anomaly_assets.defs.partitions import daily_partitions as partitions_of
from store_anomaly_assets.defs.resources import ExtractIOManager

PARTITIONS = partitions_of(load_config(env_file=None))
KEY = dg.AssetKey("sales_extract")


def _range(first: str, last: str) -> dg.PartitionKeyRange:
    return dg.PartitionKeyRange(first, last)


def _write(manager: ExtractIOManager, frame: pl.DataFrame, first: str, last: str) -> None:
    context = dg.build_output_context(asset_key=KEY, asset_partitions_def=PARTITIONS,
                                      asset_partition_key_range=_range(first, last))
    manager.handle_output(context, frame)


def _read(manager: ExtractIOManager, first: str, last: str) -> pl.DataFrame:
    context = dg.build_input_context(asset_key=KEY, asset_partitions_def=PARTITIONS,
                                     asset_partition_key_range=_range(first, last))
    return manager.load_input(context)


def _sales(days: list[date], revenue: list) -> pl.DataFrame:
    return pl.DataFrame({"store_id": [1101] * len(days), "metric_date": days,
                         "revenue": revenue})


def test_a_range_reads_back_the_days_written(tmp_path: Path) -> None:
    manager = ExtractIOManager(base_dir=str(tmp_path))
    days = [date(2025, 7, d) for d in (1, 2, 4)]  # nothing on the 3rd: an empty file
    _write(manager, _sales(days, [10.5, 20.25, 40.0]), "2025-07-01", "2025-07-04")
    assert sorted(p.name for p in (tmp_path / "sales_extract").iterdir()) == [
        f"2025-07-0{d}.parquet" for d in (1, 2, 3, 4)]
    back = _read(manager, "2025-07-02", "2025-07-04")
    assert back.sort("metric_date").rows() == [(1101, date(2025, 7, 2), 20.25),
                                               (1101, date(2025, 7, 4), 40.0)]


def test_days_written_with_another_column_type_still_read(tmp_path: Path) -> None:
    # An older version may have written a column with another type: the relaxed path.
    manager = ExtractIOManager(base_dir=str(tmp_path))
    _write(manager, _sales([date(2025, 7, 1)], [10]), "2025-07-01", "2025-07-01")
    _write(manager, _sales([date(2025, 7, 2)], [20.5]), "2025-07-02", "2025-07-02")
    back = _read(manager, "2025-07-01", "2025-07-02")
    assert back.schema["revenue"] == pl.Float64
    assert back.sort("metric_date")["revenue"].to_list() == [10.0, 20.5]


def test_a_missing_day_names_the_asset_and_the_day(tmp_path: Path) -> None:
    manager = ExtractIOManager(base_dir=str(tmp_path))
    _write(manager, _sales([date(2025, 7, 1)], [10.0]), "2025-07-01", "2025-07-01")
    with pytest.raises(FileNotFoundError, match=r"sales_extract .*2025-07-02"):
        _read(manager, "2025-07-01", "2025-07-02")
