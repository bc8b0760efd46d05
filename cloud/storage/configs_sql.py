"""The SQL of the config tables (`cloud.storage.configs`), written once for both backends.

Templates in the style of `cloud.storage.queries`: `{p}` is the placeholder; every value is a
bound parameter; the tag column is chosen from `configs.TAG_COLUMNS`, never from input.
"""

from __future__ import annotations

from cloud.storage.configs import TAG_COLUMNS

NEXT_VERSION = "SELECT coalesce(max(version), 0) + 1 FROM device_config WHERE device_id = {p}"
INSERT = (
    "INSERT INTO device_config (device_id, version, sha256, body, signature, pushed_ms,"
    " pushed_by) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
INSERT_AUDIT = (
    "INSERT INTO config_audit (at_ms, actor, target, sha256, devices)"
    " VALUES ({p}, {p}, {p}, {p}, {p})"
)
_COLUMNS = "c.device_id, c.version, c.sha256, c.body, c.signature, c.pushed_ms, c.pushed_by"
DESIRED_ONE = (
    f"SELECT {_COLUMNS} FROM device_config c WHERE c.device_id = {{p}}"  # noqa: S608
    " ORDER BY c.version DESC LIMIT 1"
)
DESIRED_ALL = (
    f"SELECT {_COLUMNS} FROM device_config c WHERE c.version ="  # noqa: S608
    " (SELECT max(version) FROM device_config m WHERE m.device_id = c.device_id)"
    " ORDER BY c.device_id"
)
AUDIT = "SELECT at_ms, actor, target, sha256, devices FROM config_audit ORDER BY id DESC LIMIT {p}"


def devices_with_tag(tag: str) -> str:
    if tag not in TAG_COLUMNS:
        raise ValueError(f"not a tag column: {tag!r}")
    return f"SELECT DISTINCT device_id FROM series WHERE {tag} = {{p}} ORDER BY device_id"  # noqa: S608
