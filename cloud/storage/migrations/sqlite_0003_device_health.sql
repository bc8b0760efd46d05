-- Gateway health (POST /v1/health): the latest report per device and a bounded history.
CREATE TABLE device_health (
    device_id   TEXT PRIMARY KEY REFERENCES device (id),
    received_ms INTEGER NOT NULL,
    body        BLOB NOT NULL
);
CREATE TABLE device_health_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT NOT NULL REFERENCES device (id),
    received_ms INTEGER NOT NULL,
    body        BLOB NOT NULL
);
CREATE INDEX device_health_log_device ON device_health_log (device_id, id);
