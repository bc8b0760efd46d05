-- Tierless receiver, SQLite schema version 5 (issue 15): provenance and remote configuration.
--
-- Provenance: every batch record keeps the agent config version that produced it (the batch's
-- optional tenth element; '' when the agent did not say) and the time range of its readings and
-- events, so a reading can be traced to the config that read it (GET /v1/devices/{id}/batches).
ALTER TABLE batch ADD COLUMN config_version TEXT NOT NULL DEFAULT '';
ALTER TABLE batch ADD COLUMN min_ts_ms INTEGER;
ALTER TABLE batch ADD COLUMN max_ts_ms INTEGER;
