"""What `wire` exports, pinned: adding, renaming or removing a public name of the contract must
change this file, so that the change is seen in review (both sides of the wire depend on it).

A public name is one a wire module defines at its top level (class, function, constant) without
a leading underscore; names it imports are not its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WIRE = Path(__file__).resolve().parents[2] / "wire"

PINNED: dict[str, set[str]] = {
    "wire": {"PROTOCOL_VERSION"},
    "wire.admin": {
        "DEFAULT_TOKEN_TTL_S",
        "ChainEventRecord",
        "DeviceClock",
        "DeviceDrops",
        "DeviceKeysRevoked",
        "DeviceList",
        "DeviceRecord",
        "DeviceStatusChanged",
        "KeyRevoked",
        "KeyView",
        "TokenIssued",
        "TokenRequest",
    },
    "wire.alerts": {
        "ALERTS_DELIVER_PATH",
        "ALERTS_EVALUATE_PATH",
        "ALERTS_PATH",
        "ALERT_AUDIT_PATH",
        "ALERT_RULES_PATH",
        "ALERT_RULE_PATH",
        "ALERT_STATE_PATH",
        "AlertList",
        "AlertView",
        "AuditList",
        "AuditView",
        "Delivered",
        "Evaluated",
        "RuleList",
        "StateChange",
    },
    "wire.efficiency": {
        "EFFICIENCY_PATH",
        "Efficiency",
        "FindingView",
        "IntensityView",
    },
    "wire.production": {
        "PRODUCTION_PATH",
        "ProductionIn",
        "ProductionList",
        "ProductionView",
    },
    "wire.codec": {
        "MAX_EVENTS",
        "MAX_READINGS",
        "MAX_SCALE",
        "MAX_SERIES",
        "MEDIA_TYPE",
        "batch_digest",
        "decode_batch",
        "encode_batch",
    },
    "wire.compression": {
        "GZIP",
        "GZIP_LEVEL",
        "IDENTITY",
        "ZSTD",
        "ZSTD_LEVEL",
        "available_encodings",
        "choose_encoding",
        "compress",
        "decompress",
        "zstd",
    },
    "wire.extras": {"EXIT_MISSING_EXTRA", "missing_extra_line"},
    "wire.digest": {"CONTENT_DIGEST_MAX_LENGTH", "content_digest", "verify_content_digest"},
    "wire.enrollment": {
        "EnrollmentToken",
        "MAX_TOKEN_LENGTH",
        "ROTATE_POP_PREFIX",
        "TOKEN_PREFIX",
        "TOKEN_SECRET_LENGTH",
        "format_token",
        "parse_token",
        "rotate_pop_message",
        "token_hash",
    },
    "wire.errors": {
        "BodyError",
        "DecodeError",
        "EncodeError",
        "InvalidBatchError",
        "RemoteConfigError",
        "SignatureError",
        "TokenFormatError",
        "TooLargeError",
        "UnsupportedEncodingError",
        "WireError",
    },
    "wire.http": {
        "ADMIN_DEVICES_PATH",
        "ADMIN_DEVICE_ACTION_PATH",
        "ADMIN_DEVICE_PATH",
        "ADMIN_KEY_REVOKE_PATH",
        "ADMIN_TOKENS_PATH",
        "AckStatus",
        "BATCHES_PATH",
        "Backlog",
        "BatchAck",
        "CHAIN_HEAD_PATH",
        "CONSUMPTION_PATH",
        "ChainHead",
        "DEVICES_PATH",
        "DEVICE_BATCHES_PATH",
        "DEVICE_HEALTH_PATH",
        "DeviceHealth",
        "ENROLL_PATH",
        "EVENTS_PATH",
        "EnrollRequest",
        "Enrolled",
        "ErrorBody",
        "ErrorCode",
        "HEALTH_PATH",
        "HEALTH_REPORT_PATH",
        "Health",
        "HealthAck",
        "HealthReport",
        "JSON_MEDIA_TYPE",
        "LATEST_PATH",
        "MATERIALS_PATH",
        "OPENAPI_PATH",
        "READINGS_PATH",
        "READY_PATH",
        "ROTATE_PATH",
        "RotateRequest",
        "Rotated",
        "SERIES_PATH",
        "SourceHealth",
        "admin_device_path",
        "admin_key_revoke_path",
        "device_batches_path",
        "device_health_path",
    },
    "wire.jsonbody": {"decode_json", "duplicate_key"},
    "wire.keys": {
        "ED25519_RAW_LENGTH",
        "b64url_decode",
        "b64url_encode",
        "jwk_thumbprint",
        "key_id",
        "load_private_key_pem",
        "private_key_to_pem",
        "public_key_from_raw",
        "public_key_to_raw",
    },
    "wire.models": {
        "AttrValue",
        "Batch",
        "ClockReport",
        "Problem",
        "Reason",
        "event_problem",
        "key_problem",
        "name_problem",
        "reading_problem",
        "ts_problem",
        "ClockState",
        "Counters",
        "Event",
        "GENESIS",
        "MAX_ATTR_VALUE_LEN",
        "MAX_EVENT_ATTRS",
        "MAX_NAME_LEN",
        "MAX_TS_MS",
        "MIN_TS_MS",
        "Medium",
        "Quality",
        "Reading",
        "SeriesData",
        "SeriesKey",
        "TIME_UNTRUSTED",
        "VALID_QUALITY_CODES",
        "group_readings",
    },
    "wire.query": {
        "BatchList",
        "BatchView",
        "BucketPoint",
        "BucketedReadings",
        "Consumption",
        "EventList",
        "EventView",
        "GapView",
        "GroupFigure",
        "LatestList",
        "LatestView",
        "MaterialFigure",
        "Materials",
        "RawPoint",
        "RawReadings",
        "Rollover",
        "SeriesFigure",
        "SeriesList",
        "SeriesView",
    },
    "wire.remoteconfig": {
        "ADMIN_CONFIG_PATH",
        "ADMIN_CONFIG_STATUS_PATH",
        "CONFIG_CONTEXT",
        "CONFIG_PATH",
        "ConfigPush",
        "ConfigPushed",
        "ConfigRefused",
        "ConfigState",
        "ConfigStatusList",
        "LOCAL_SECTIONS",
        "MAX_CONFIG_BYTES",
        "PushedTarget",
        "SignedConfig",
        "config_message",
        "config_sha256",
        "secret_problems",
        "sign_config",
        "verify_config",
    },
    "wire.signatures": {
        "ALG",
        "BASE_COMPONENTS",
        "CONTENT_ENCODING",
        "ENROLL_TAG",
        "LABEL",
        "MAX_COMPONENTS",
        "MAX_FIELD_LENGTH",
        "ParsedSignature",
        "SIGNATURE_LENGTH",
        "SignatureParams",
        "TAG",
        "default_components",
        "parse_signature",
        "sign_request",
        "signature_base",
        "verify_request",
    },
    "wire.version": {"DISTRIBUTION", "VersionAction", "release", "version_line"},
    "wire.units": {
        "ALIASES",
        "COUNTER_UNITS",
        "NOT_CUMULATIVE_SUFFIXES",
        "PRODUCTION_UNITS",
        "UNITS",
        "Kind",
        "Limits",
        "UnitInfo",
        "default_kind",
        "is_cumulative_name",
        "kind_problem",
        "limits_for",
        "range_problem",
        "unit_problem",
    },
    "wire.structured": {
        "BareItem",
        "Dictionary",
        "InnerList",
        "Item",
        "Member",
        "Params",
        "Token",
        "parse_dictionary",
        "serialize_bare_item",
        "serialize_dictionary",
        "serialize_inner_list",
        "serialize_item",
        "serialize_key",
        "serialize_params",
    },
}


def module_name(path: Path) -> str:
    return "wire" if path.stem == "__init__" else f"wire.{path.stem}"


def public_names(path: Path) -> set[str]:
    """The public names a module defines at its top level (imports excluded)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


MODULES = {module_name(p): p for p in sorted(WIRE.glob("*.py"))}


def test_every_wire_module_is_pinned() -> None:
    assert set(MODULES) == set(PINNED)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_public_names_are_the_pinned_ones(name: str) -> None:
    assert public_names(MODULES[name]) == PINNED[name]


def test_the_pin_can_fail(tmp_path: Path) -> None:
    extra = tmp_path / "digest.py"
    extra.write_text((WIRE / "digest.py").read_text() + "\nNEW_NAME = 1\n")
    assert public_names(extra) != PINNED["wire.digest"]
