"""Source databases: their reference schemas, the extraction queries, a synthetic chain."""
