-- Tierless receiver, PostgreSQL schema version 1. Times are UTC epoch milliseconds (bigint),
-- the same integers the wire carries, so no conversion can shift a reading.
CREATE TABLE device (
    id                  text PRIMARY KEY,
    status              text NOT NULL CHECK (status IN ('pending', 'active', 'disabled')),
    head_seq            bigint NOT NULL DEFAULT 0,
    head_digest         bytea NOT NULL CHECK (length(head_digest) = 32),
    created_ms          bigint NOT NULL,
    last_seen_ms        bigint,
    last_boot_id        text,
    batches             bigint NOT NULL DEFAULT 0,
    readings            bigint NOT NULL DEFAULT 0,
    dropped_buffer_full bigint NOT NULL DEFAULT 0,
    dropped_damaged     bigint NOT NULL DEFAULT 0,
    rejected_invalid    bigint NOT NULL DEFAULT 0,
    clock_state         smallint,
    clock_offset_ms     bigint,
    created_skew_ms     bigint,
    gaps                bigint NOT NULL DEFAULT 0,
    forks               bigint NOT NULL DEFAULT 0
);

CREATE TABLE device_key (
    keyid        text PRIMARY KEY,
    device_id    text NOT NULL REFERENCES device (id),
    public_key   bytea NOT NULL CHECK (length(public_key) = 32),
    status       text NOT NULL CHECK (status IN ('active', 'retiring', 'revoked')),
    not_after_ms bigint,
    created_ms   bigint NOT NULL,
    revoked_ms   bigint
);
CREATE INDEX device_key_device ON device_key (device_id);

CREATE TABLE enroll_token (
    id              text PRIMARY KEY,
    token_hash      bytea NOT NULL CHECK (length(token_hash) = 32),
    device_id       text NOT NULL REFERENCES device (id),
    created_ms      bigint NOT NULL,
    expires_ms      bigint NOT NULL,
    used_ms         bigint,
    used_by_keyid   text,
    failed_attempts integer NOT NULL DEFAULT 0
);

CREATE TABLE batch (
    device_id        text NOT NULL REFERENCES device (id),
    seq              bigint NOT NULL CHECK (seq > 0),
    digest           bytea NOT NULL CHECK (length(digest) = 32),
    prev             bytea NOT NULL CHECK (length(prev) = 32),
    keyid            text NOT NULL REFERENCES device_key (keyid),
    sig_created      bigint NOT NULL,
    received_ms      bigint NOT NULL,
    content_encoding text,
    wire_bytes       integer NOT NULL,
    boot_id          text NOT NULL,
    reading_count    integer NOT NULL,
    event_count      integer NOT NULL,
    PRIMARY KEY (device_id, seq)
);

CREATE TABLE chain_event (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id    text NOT NULL REFERENCES device (id),
    kind         text NOT NULL CHECK (kind IN ('gap', 'fork')),
    seq          bigint NOT NULL,
    expected_seq bigint NOT NULL,
    digest       bytea NOT NULL,
    reason       text NOT NULL,
    at_ms        bigint NOT NULL,
    UNIQUE (device_id, kind, seq, digest)
);

CREATE TABLE series (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id text NOT NULL REFERENCES device (id),
    metric    text NOT NULL,
    unit      text NOT NULL,
    site      text NOT NULL,
    area      text NOT NULL,
    process   text NOT NULL,
    medium    text NOT NULL,
    UNIQUE (device_id, metric, unit, site, area, process, medium)
);

-- Readings: append-mostly, queried per series over a time range (docs/cloud-storage-choice.md).
-- btree (series_id, ts_ms) serves every per-series query; a BRIN on ts_ms (a few pages for
-- millions of rows) serves cross-series time scans, because rows arrive roughly in time order.
-- No foreign key on series_id: ids come from the same transaction; a per-row check costs.
CREATE TABLE reading (
    series_id bigint NOT NULL,
    ts_ms     bigint NOT NULL,
    value     double precision NOT NULL,
    quality   smallint NOT NULL
);
CREATE INDEX reading_series_ts ON reading (series_id, ts_ms);
CREATE INDEX reading_ts_brin ON reading USING brin (ts_ms) WITH (pages_per_range = 32);

CREATE TABLE event (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id text NOT NULL REFERENCES device (id),
    seq       bigint NOT NULL,
    kind      text NOT NULL,
    ts_ms     bigint NOT NULL,
    quality   smallint NOT NULL,
    attrs     jsonb NOT NULL
);
CREATE INDEX event_device_ts ON event (device_id, ts_ms);
CREATE INDEX event_ts_brin ON event USING brin (ts_ms);
