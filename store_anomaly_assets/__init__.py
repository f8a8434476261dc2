"""Daily store performance anomaly detection for a coffee chain, as Dagster assets."""
