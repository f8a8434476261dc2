"""Pure polars statistics: KPIs, SPC, health and alerts. No Dagster, no database."""
