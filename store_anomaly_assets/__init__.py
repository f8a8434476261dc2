"""Daily store performance anomaly detection for a coffee chain, as Dagster assets."""

import warnings

import dagster as dg

# BackfillPolicy is "beta" in Dagster 1.13; single-run backfills are the design, so the
# warning on every import would only hide real ones.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
