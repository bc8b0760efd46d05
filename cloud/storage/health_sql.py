"""The SQL of the health tables, written once for both backends.

Templates in the style of `cloud.storage.queries`: `{p}` is the placeholder ("?" for SQLite,
"%s" for psycopg), filled with `.format(p=PH)`; every value is a bound parameter.
"""

from __future__ import annotations

UPSERT_LATEST = (
    "INSERT INTO device_health (device_id, received_ms, body) VALUES ({p}, {p}, {p})"
    " ON CONFLICT (device_id) DO UPDATE"
    " SET received_ms = excluded.received_ms, body = excluded.body"
)
APPEND_LOG = "INSERT INTO device_health_log (device_id, received_ms, body) VALUES ({p}, {p}, {p})"
# The device's reports beyond the newest `keep` (params: device, device, keep).
TRIM_LOG = (
    "DELETE FROM device_health_log WHERE device_id = {p} AND id <= ("
    "SELECT id FROM device_health_log WHERE device_id = {p} ORDER BY id DESC LIMIT 1 OFFSET {p})"
)
LATEST_ALL = "SELECT device_id, received_ms, body FROM device_health ORDER BY device_id"
LATEST_ONE = "SELECT device_id, received_ms, body FROM device_health WHERE device_id = {p}"
HISTORY = (
    "SELECT device_id, received_ms, body FROM device_health_log"
    " WHERE device_id = {p} ORDER BY id DESC LIMIT {p}"
)
