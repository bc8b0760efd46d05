-- Alerts: rules as data, alerts grouped by key with an audit trail, and an outbox of deliveries
-- (cloud.storage.alerts). Only the alert apps write these tables.
CREATE TABLE alert_rule (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE alert (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_key TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    occurrences BIGINT NOT NULL,
    evidence TEXT NOT NULL
);
CREATE UNIQUE INDEX alert_one_live_per_group ON alert (group_key) WHERE state <> 'resolved';
CREATE TABLE alert_audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id BIGINT NOT NULL REFERENCES alert (id),
    at_ms BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE alert_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id BIGINT NOT NULL REFERENCES alert (id),
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_ms BIGINT NOT NULL,
    sent_ms BIGINT,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_outbox_due ON alert_outbox (next_ms) WHERE sent_ms IS NULL;
