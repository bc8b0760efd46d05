-- Tierless receiver, SQLite schema version 5 (issue 15): provenance and remote configuration.
--
-- Provenance: every batch record keeps the agent config version that produced it (the batch's
-- optional tenth element; '' when the agent did not say) and the time range of its readings and
-- events, so a reading can be traced to the config that read it (GET /v1/devices/{id}/batches).
ALTER TABLE batch ADD COLUMN config_version TEXT NOT NULL DEFAULT '';
ALTER TABLE batch ADD COLUMN min_ts_ms INTEGER;
ALTER TABLE batch ADD COLUMN max_ts_ms INTEGER;

-- Remote configuration (cloud.storage.configs): every config pushed to a device, versioned per
-- device and signed at push time, and the audit of every push (who, when, what, to whom).
CREATE TABLE device_config (
    device_id   TEXT NOT NULL REFERENCES device (id),
    version     INTEGER NOT NULL CHECK (version > 0),
    sha256      TEXT NOT NULL,
    body        BLOB NOT NULL,
    signature   TEXT NOT NULL,
    pushed_ms   INTEGER NOT NULL,
    pushed_by   TEXT NOT NULL,
    PRIMARY KEY (device_id, version)
);
CREATE TABLE config_audit (
    id          INTEGER PRIMARY KEY,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    target      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    devices     INTEGER NOT NULL
);
