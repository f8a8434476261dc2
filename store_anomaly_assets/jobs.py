"""The one job: the whole graph over a partition range, in a single process.

In-process execution matters here: each step of a multiprocess run would pay Dagster's
import and start-up again, several seconds each on this class of machine.
"""

from __future__ import annotations

import dagster as dg

from store_anomaly_assets.assets import ALL_ASSETS

store_anomaly_job = dg.define_asset_job(
    "store_anomaly_job",
    selection=dg.AssetSelection.assets(*ALL_ASSETS),
    executor_def=dg.in_process_executor,
    description="Steps 1-12 of the guide over a range of business days, in one run.",
)
