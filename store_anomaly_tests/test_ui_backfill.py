"""A partition-range backfill launched through dagster-webserver's GraphQL API.

This is what the UI's "Launch backfill" button sends; `dagster dev` serves the
webserver and the daemon that executes backfills, on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
import yaml

from store_anomaly_assets.cli import RunOutcome
from store_anomaly_assets.config import load_config
from store_anomaly_assets.db.frames import read_frame
from store_anomaly_assets.defs.assets import build_assets
from store_anomaly_assets.event_log import sqlite_instance_config

pytestmark = pytest.mark.integration


PROJECT = Path(__file__).resolve().parents[1]
START, END = date(2026, 1, 21), date(2026, 1, 31)

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
  }
}"""
PARTITION_STATS = """
query Stats($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized } }
  }
}
"""

STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numCancelable }
    ... on PythonError { message }
  }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


@pytest.fixture(scope="module")
def webserver(backfill: RunOutcome) -> Iterator[int]:
    port = _free_port()
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
    home = Path(tempfile.mkdtemp(prefix="ui-home-", dir=scratch))
    # The home `store-anomaly` creates: UI-launched runs write through the batched event log.
    (home / "dagster.yaml").write_text(yaml.safe_dump(sqlite_instance_config(home)))
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    process = subprocess.Popen(
        # The venv's own `dagster`: CI runs the venv's python without activating it.
        [str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail("dagster dev exited before serving")
                time.sleep(1)
        else:
            pytest.fail("dagster-webserver did not answer within 180 s")
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def test_ui_partition_range_backfill_fills_the_tables(
    webserver: int, analytics_engine: sa.Engine
) -> None:
    launched_at = time.time()
    keys = [(START + timedelta(days=i)).isoformat() for i in range((END - START).days + 1)]
    params = {
        "assetSelection": [{"path": list(a.key.path)}
                           for a in build_assets(load_config(env_file=None))],
        "partitionNames": keys,
        "title": "UI backfill test",
    }
    result = graphql(webserver, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    backfill_id = result["backfillId"]
    status = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = graphql(webserver, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if status.get("status") in {"COMPLETED", "COMPLETED_SUCCESS", "FAILED",
                                    "COMPLETED_FAILED", "CANCELED"}:
            break
        time.sleep(2)
    assert status and status["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, status

    log = read_frame(
        analytics_engine,
        sa.text("SELECT run_id, step_number, step_name, status, partition_start, partition_end "
                "FROM store_anomaly_pipeline_log WHERE started_at >= FROM_UNIXTIME(:t) - "
                "INTERVAL 5 SECOND AND step_number BETWEEN 2 AND 10"),
        {"t": int(launched_at)},
    )
    assert set(log["step_number"]) == set(range(2, 11))
    assert set(log["status"]) == {"SUCCESS"}
    ranged = log.filter(pl.col("step_name") == "compute_kpis")
    # One ranged run covered all eleven days: single-run backfill policy.
    assert ranged.height == 1
    assert (ranged["partition_start"][0], ranged["partition_end"][0]) == (START, END)
    kpis = read_frame(
        analytics_engine,
        sa.text("SELECT COUNT(DISTINCT metric_date) AS days FROM store_kpi_daily "
                "WHERE run_id = :r"), {"r": ranged["run_id"][0]},
    )
    assert kpis["days"][0] == len(keys)
    # The UI's partition status reads what the batched event log wrote: every asset has
    # each of the eleven partitions materialized (the home is new, so nothing else).
    for path in ("sales_extract", "store_kpi_daily", "store_anomaly_alerts"):
        stats = graphql(webserver, PARTITION_STATS, {"path": [path]})["assetNodeOrError"]
        assert stats["partitionStats"]["numMaterialized"] == len(keys), path
