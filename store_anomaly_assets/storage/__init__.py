"""The analytics database: table definitions and transactional writes."""
