"""Storage behind three narrow interfaces, and its two backends.

- `batches.BatchStore`: key look-up, the batch transaction, the chain head (the receiver);
- `registry.RegistryStore`: tokens, enrolment, rotation, devices, keys, revocation (the receiver);
- `reads.ReadStore`: series, readings, buckets, latest values, events, devices and the figures'
  windows (the apps, and the receiver's admin API);
- `store.Store`: all three plus the schema lifecycle, for the entry points.

Backends: `sqlite.SqliteStore` and `postgres.PostgresStore`, each one class assembled from a
module per interface. SQL lives only here: `queries` (written once for both backends),
`windows`, `postgres_sql`, the backend modules and `migrations/`.
"""
