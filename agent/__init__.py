"""The gateway agent: sources -> buffer (SQLite) -> signed batches -> receiver."""
