-- Tierless receiver, SQLite schema version 1. Times are UTC epoch milliseconds.
CREATE TABLE device (
    id                  TEXT PRIMARY KEY,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'active', 'disabled')),
    head_seq            INTEGER NOT NULL DEFAULT 0,
    head_digest         BLOB NOT NULL CHECK (length(head_digest) = 32),
    created_ms          INTEGER NOT NULL,
    last_seen_ms        INTEGER,
    last_boot_id        TEXT,
    batches             INTEGER NOT NULL DEFAULT 0,
    readings            INTEGER NOT NULL DEFAULT 0,
    dropped_buffer_full INTEGER NOT NULL DEFAULT 0,
    dropped_damaged     INTEGER NOT NULL DEFAULT 0,
    rejected_invalid    INTEGER NOT NULL DEFAULT 0,
    clock_state         INTEGER,
    clock_offset_ms     INTEGER,
    created_skew_ms     INTEGER,
    gaps                INTEGER NOT NULL DEFAULT 0,
    forks               INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE device_key (
    keyid        TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES device (id),
    public_key   BLOB NOT NULL CHECK (length(public_key) = 32),
    status       TEXT NOT NULL CHECK (status IN ('active', 'retiring', 'revoked')),
    not_after_ms INTEGER,
    created_ms   INTEGER NOT NULL,
    revoked_ms   INTEGER
);
CREATE INDEX device_key_device ON device_key (device_id);

CREATE TABLE enroll_token (
    id              TEXT PRIMARY KEY,
    token_hash      BLOB NOT NULL CHECK (length(token_hash) = 32),
    device_id       TEXT NOT NULL REFERENCES device (id),
    created_ms      INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,
    used_ms         INTEGER,
    used_by_keyid   TEXT,
    failed_attempts INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE batch (
    device_id        TEXT NOT NULL REFERENCES device (id),
    seq              INTEGER NOT NULL CHECK (seq > 0),
    digest           BLOB NOT NULL CHECK (length(digest) = 32),
    prev             BLOB NOT NULL CHECK (length(prev) = 32),
    keyid            TEXT NOT NULL REFERENCES device_key (keyid),
    sig_created      INTEGER NOT NULL,
    received_ms      INTEGER NOT NULL,
    content_encoding TEXT,
    wire_bytes       INTEGER NOT NULL,
    boot_id          TEXT NOT NULL,
    reading_count    INTEGER NOT NULL,
    event_count      INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;

CREATE TABLE chain_event (
    id           INTEGER PRIMARY KEY,
    device_id    TEXT NOT NULL REFERENCES device (id),
    kind         TEXT NOT NULL CHECK (kind IN ('gap', 'fork')),
    seq          INTEGER NOT NULL,
    expected_seq INTEGER NOT NULL,
    digest       BLOB NOT NULL,
    reason       TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    UNIQUE (device_id, kind, seq, digest)
);

CREATE TABLE series (
    id        INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES device (id),
    metric    TEXT NOT NULL,
    unit      TEXT NOT NULL,
    site      TEXT NOT NULL,
    area      TEXT NOT NULL,
    process   TEXT NOT NULL,
    medium    TEXT NOT NULL,
    UNIQUE (device_id, metric, unit, site, area, process, medium)
);

-- No foreign key on series_id: the ids come from the same transaction, and a per-row check
-- would cost on every reading.
CREATE TABLE reading (
    series_id INTEGER NOT NULL,
    ts_ms     INTEGER NOT NULL,
    value     REAL NOT NULL,
    quality   INTEGER NOT NULL
);
CREATE INDEX reading_series_ts ON reading (series_id, ts_ms);

CREATE TABLE event (
    id        INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES device (id),
    seq       INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    ts_ms     INTEGER NOT NULL,
    quality   INTEGER NOT NULL,
    attrs     TEXT NOT NULL
);
CREATE INDEX event_device_ts ON event (device_id, ts_ms);
CREATE INDEX event_ts ON event (ts_ms);
