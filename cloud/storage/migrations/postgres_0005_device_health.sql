-- Gateway health (POST /v1/health): the latest report per device and a bounded history.
CREATE TABLE device_health (
    device_id   text PRIMARY KEY REFERENCES device (id),
    received_ms bigint NOT NULL,
    body        bytea NOT NULL
);
CREATE TABLE device_health_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text NOT NULL REFERENCES device (id),
    received_ms bigint NOT NULL,
    body        bytea NOT NULL
);
CREATE INDEX device_health_log_device ON device_health_log (device_id, id);
