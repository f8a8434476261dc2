"""`python -m store_anomaly_assets.cli`: the `store-anomaly` command."""

from store_anomaly_assets.cli import entrypoint

entrypoint()
