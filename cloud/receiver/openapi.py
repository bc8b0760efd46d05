"""The OpenAPI 3.1 description of the receiver, served at /v1/openapi.json: generated, not written.

Schemas come from the structs of the HTTP contract (`wire.http`, `wire.admin`, `wire.query`) via
`msgspec.json.schema_components`; paths, methods, parameters and statuses come from `OPERATIONS`,
the route table below. A body shape is therefore described once, where it is encoded and decoded.
`tests/cloud/test_openapi.py` fails when a served route is missing here or a documented one is not
served, and checks real answers against the schemas of this document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from wire import admin, alerts, efficiency, production, query, remoteconfig
from wire.codec import MEDIA_TYPE
from wire.http import (
    ADMIN_DEVICE_ACTION_PATH,
    ADMIN_DEVICE_PATH,
    ADMIN_DEVICES_PATH,
    ADMIN_KEY_REVOKE_PATH,
    ADMIN_TOKENS_PATH,
    BATCHES_PATH,
    CHAIN_HEAD_PATH,
    CONSUMPTION_PATH,
    DEVICE_BATCHES_PATH,
    DEVICE_HEALTH_PATH,
    DEVICES_PATH,
    ENROLL_PATH,
    EVENTS_PATH,
    HEALTH_PATH,
    HEALTH_REPORT_PATH,
    JSON_MEDIA_TYPE,
    LATEST_PATH,
    MATERIALS_PATH,
    OPENAPI_PATH,
    READINGS_PATH,
    READY_PATH,
    ROTATE_PATH,
    SERIES_PATH,
    BatchAck,
    ChainHead,
    DeviceHealth,
    Enrolled,
    EnrollRequest,
    ErrorBody,
    Health,
    HealthAck,
    HealthReport,
    Rotated,
    RotateRequest,
)

_REF = "#/components/schemas/{name}"
_HTML = "text/html"


@dataclass(frozen=True, slots=True)
class Answer:
    """One status of an operation: JSON of `bodies` (one struct, or any of several), an HTML
    page, or no content."""

    description: str
    bodies: tuple[type[msgspec.Struct], ...] = ()
    html: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # an OpenAPI template from wire.http
    summary: str
    answers: Mapping[int, Answer]
    security: str = ""  # a key of _SECURITY, "" for none
    parameters: Sequence[Mapping[str, Any]] = ()
    request: type[msgspec.Struct] | str | None = None  # a struct (JSON), or a media type


def ok(description: str, *bodies: type[msgspec.Struct]) -> Answer:
    return Answer(description, bodies)


def error(description: str) -> Answer:
    return Answer(description, (ErrorBody,))


def page(description: str) -> Answer:
    return Answer(description, html=True)


def bare(description: str) -> Answer:
    return Answer(description)


def param(name: str, where: str = "query", kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": kind},
        **extra,
    }


_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "device": [{"httpSignature": []}],
    "admin": [{"adminToken": []}],
    "read": [{"readToken": []}, {"adminToken": []}],
    "viewer": [{"viewerCookie": []}, {"viewerToken": []}],
}
_SCHEMES: dict[str, dict[str, str]] = {
    "httpSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": "RFC 9421 Ed25519 signature, see docs/protocol.md section 4",
    },
    "adminToken": {"type": "http", "scheme": "bearer"},
    "readToken": {"type": "http", "scheme": "bearer"},
    "viewerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "a viewer token or the read token (not the admin token)",
    },
    "viewerCookie": {"type": "apiKey", "in": "cookie", "name": "tierless_view"},
}

_DEVICE_AUTH = {
    401: error("signature, digest or key not valid (one body for every case)"),
    403: error("key revoked or expired, device disabled, or another device's batch"),
    429: error("rate limited; see Retry-After"),
}
_OPERATOR_AUTH = {401: error("missing or wrong bearer token")}
_FILTERS = [param(n) for n in ("device", "metric", "site", "area", "process", "medium")]
_RANGE = [param("from_ms", kind="integer"), param("to_ms", kind="integer")]
_INTERVAL = param("interval", enum=["hour", "day", "month", "total"])
_DEVICE_ID = param("device_id", "path")

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        BATCHES_PATH,
        "Upload one signed, content-coded batch (docs/protocol.md)",
        {
            200: ok("stored or duplicate", BatchAck),
            400: error("undecodable body or invalid batch"),
            **_DEVICE_AUTH,
            409: error("seq_gap or chain_conflict, with expected_seq"),
            413: error("wire or decoded size over the limit"),
            415: error("content type or coding not accepted"),
            503: error("store unavailable; retry"),
        },
        security="device",
        request=MEDIA_TYPE,
    ),
    Operation(
        "get",
        CHAIN_HEAD_PATH,
        "Where the receiver's copy of the device's chain ends",
        {200: ok("the head", ChainHead), **_DEVICE_AUTH},
        security="device",
    ),
    Operation(
        "post",
        HEALTH_REPORT_PATH,
        "A gateway's health report (signed like a batch); the newest replaces the last",
        {
            200: ok("stored", HealthAck),
            400: error("not a health report"),
            413: error("too large"),
            415: error("not JSON"),
            **_DEVICE_AUTH,
        },
        security="device",
        request=HealthReport,
    ),
    Operation(
        "post",
        ENROLL_PATH,
        "Enrol a device key with a one-time token (signed by the new key)",
        {
            201: ok("enrolled", Enrolled),
            400: error("malformed body"),
            401: error("enrollment_refused, whatever the reason"),
            429: error("rate limited"),
        },
        request=EnrollRequest,
    ),
    Operation(
        "post",
        ROTATE_PATH,
        "Replace the signing key; the old one stays valid for the overlap",
        {200: ok("rotated", Rotated), 400: error("bad pop"), **_DEVICE_AUTH},
        security="device",
        request=RotateRequest,
    ),
    Operation(
        "post",
        ADMIN_TOKENS_PATH,
        "Issue an enrolment token for a device id (shown once)",
        {201: ok("token", admin.TokenIssued), 400: error("bad body"), **_OPERATOR_AUTH},
        security="admin",
        request=admin.TokenRequest,
    ),
    Operation(
        "post",
        remoteconfig.ADMIN_CONFIG_PATH,
        "Push an agent config to one device or to every device with a tag (checked, signed)",
        {
            201: ok("stored as each target's next version", remoteconfig.ConfigPushed),
            400: ok("refused, with every problem the checker found", remoteconfig.ConfigRefused),
            404: error("no such device, or none with that tag"),
            409: error("the receiver has no config-signing key"),
            503: error("the config checker could not run"),
            **_OPERATOR_AUTH,
        },
        security="admin",
        request=remoteconfig.ConfigPush,
    ),
    Operation(
        "get",
        remoteconfig.CONFIG_PATH,
        "The gateway's newest pushed config, signed by the cloud (signed request, empty body)",
        {
            200: ok("the config", remoteconfig.SignedConfig),
            404: error("no config pushed to this gateway"),
            **_DEVICE_AUTH,
        },
        security="device",
    ),
    Operation(
        "get",
        remoteconfig.ADMIN_CONFIG_STATUS_PATH,
        "Every gateway's desired (pushed) config and the one it runs",
        {200: ok("status", remoteconfig.ConfigStatusList), **_OPERATOR_AUTH},
        security="admin",
    ),
    Operation(
        "get",
        ADMIN_DEVICES_PATH,
        "Devices",
        {200: ok("devices", admin.DeviceList), **_OPERATOR_AUTH},
        security="admin",
    ),
    Operation(
        "get",
        ADMIN_DEVICE_PATH,
        "One device with keys and chain events",
        {200: ok("device", admin.DeviceRecord), 404: error("unknown"), **_OPERATOR_AUTH},
        security="admin",
        parameters=[_DEVICE_ID],
    ),
    *(
        Operation(
            "post",
            ADMIN_DEVICE_ACTION_PATH.replace("{action}", action),
            summary,
            {200: ok("done", body), 404: error("unknown device"), **_OPERATOR_AUTH, **more},
            security="admin",
            parameters=[_DEVICE_ID],
        )
        for action, summary, body, more in (
            (
                "disable",
                "Disable a device: its valid requests get 403",
                admin.DeviceStatusChanged,
                {409: error("still pending")},
            ),
            (
                "enable",
                "Enable a disabled device",
                admin.DeviceStatusChanged,
                {409: error("still pending")},
            ),
            ("revoke", "Revoke every key of a device", admin.DeviceKeysRevoked, {}),
        )
    ),
    Operation(
        "post",
        ADMIN_KEY_REVOKE_PATH,
        "Revoke one key",
        {200: ok("revoked", admin.KeyRevoked), 404: error("unknown"), **_OPERATOR_AUTH},
        security="admin",
        parameters=[param("keyid", "path")],
    ),
    Operation(
        "get",
        DEVICES_PATH,
        "Devices, their sync state and their latest health report",
        {200: ok("devices", admin.DeviceList), **_OPERATOR_AUTH},
        security="read",
    ),
    Operation(
        "get",
        DEVICE_HEALTH_PATH,
        "A gateway's latest health report and its history, newest first",
        {
            200: ok("health", DeviceHealth),
            400: error("bad limit"),
            404: error("no report from this device"),
            **_OPERATOR_AUTH,
        },
        security="read",
        parameters=[param("device_id", "path"), param("limit", kind="integer")],
    ),
    Operation(
        "get",
        DEVICE_BATCHES_PATH,
        "A gateway's stored batches over [from_ms, to_ms): the config version that produced each",
        {
            200: ok("batches", query.BatchList),
            400: error("bad parameter"),
            **_OPERATOR_AUTH,
        },
        security="read",
        parameters=[param("device_id", "path"), *_RANGE, param("limit", kind="integer")],
    ),
    Operation(
        "get",
        SERIES_PATH,
        "Series, filtered by device and tags",
        {200: ok("series", query.SeriesList), 400: error("unknown filter"), **_OPERATOR_AUTH},
        security="read",
        parameters=_FILTERS,
    ),
    Operation(
        "get",
        READINGS_PATH,
        "Readings of one series over [from_ms, to_ms), raw or bucketed",
        {
            200: ok("points", query.RawReadings, query.BucketedReadings),
            400: error("bad parameter"),
            404: error("unknown"),
            **_OPERATOR_AUTH,
        },
        security="read",
        parameters=[
            param("series_id", "path", "integer"),
            *_RANGE,
            param("bucket_ms", kind="integer"),
            param("agg", enum=["avg", "min", "max", "last", "sum", "count"]),
            param("limit", kind="integer"),
        ],
    ),
    Operation(
        "get",
        LATEST_PATH,
        "The newest reading of each matching series",
        {200: ok("latest values", query.LatestList), **_OPERATOR_AUTH},
        security="read",
        parameters=_FILTERS,
    ),
    Operation(
        "get",
        EVENTS_PATH,
        "Events (weighbridge tickets, ...) over a range",
        {200: ok("events", query.EventList), **_OPERATOR_AUTH},
        security="read",
        parameters=[param("device"), param("kind"), *_RANGE, param("limit", kind="integer")],
    ),
    Operation(
        "get",
        CONSUMPTION_PATH,
        "Consumption per interval from cumulative counters",
        {
            200: ok("figures", query.Consumption),
            400: error("bad parameter, or too many readings for one request"),
            **_OPERATOR_AUTH,
        },
        security="read",
        parameters=[
            *_RANGE,
            _INTERVAL,
            param("tz", description="IANA time zone, default UTC"),
            param(
                "group_by", description="device, site, area, process, medium (comma list) or none"
            ),
            param("detail", enum=["groups", "series"]),
            param("max_step_ms", kind="integer"),
            *_FILTERS,
        ],
    ),
    Operation(
        "get",
        MATERIALS_PATH,
        "Raw material received per material from weighbridge tickets",
        {
            200: ok("materials", query.Materials),
            400: error("bad parameter, or too many tickets"),
            **_OPERATOR_AUTH,
        },
        security="read",
        parameters=[*_RANGE, _INTERVAL, param("tz"), param("device"), param("kind")],
    ),
    Operation(
        "get",
        alerts.ALERTS_PATH,
        "Alerts with their evidence, oldest first",
        {200: ok("alerts", alerts.AlertList), 400: error("bad state"), **_OPERATOR_AUTH},
        security="read",
        parameters=[param("state", enum=["open", "acknowledged", "resolved"])],
    ),
    Operation(
        "get",
        alerts.ALERT_AUDIT_PATH,
        "An alert's audit trail",
        {200: ok("audit", alerts.AuditList), 404: error("unknown alert"), **_OPERATOR_AUTH},
        security="read",
        parameters=[param("alert_id", "path", "integer")],
    ),
    *(
        Operation(
            "post",
            alerts.ALERT_STATE_PATH.replace("{action}", action),
            summary,
            {
                200: ok("the alert", alerts.AlertView),
                400: error("bad body"),
                404: error("no live alert with that id"),
                **_OPERATOR_AUTH,
            },
            security="admin",
            parameters=[param("alert_id", "path", "integer")],
            request=alerts.StateChange,
        )
        for action, summary in (
            ("acknowledge", "Acknowledge a live alert"),
            ("resolve", "Resolve a live alert"),
        )
    ),
    Operation(
        "get",
        alerts.ALERT_RULES_PATH,
        "Alert rules",
        {200: ok("rules", alerts.RuleList), **_OPERATOR_AUTH},
        security="read",
    ),
    Operation(
        "put",
        alerts.ALERT_RULE_PATH,
        "Create or replace an alert rule (docs/alerts.md)",
        {200: ok("the rule", alerts.RuleList), 400: error("bad rule"), **_OPERATOR_AUTH},
        security="admin",
        parameters=[param("rule_id", "path")],
        request=JSON_MEDIA_TYPE,
    ),
    Operation(
        "post",
        alerts.ALERTS_EVALUATE_PATH,
        "Raise alerts from the efficiency findings of the last 30 days",
        {200: ok("evaluated", alerts.Evaluated), **_OPERATOR_AUTH},
        security="admin",
    ),
    Operation(
        "post",
        alerts.ALERTS_DELIVER_PATH,
        "Deliver the due alerts of the outbox once",
        {200: ok("delivered", alerts.Delivered), **_OPERATOR_AUTH},
        security="admin",
    ),
    Operation(
        "get",
        efficiency.EFFICIENCY_PATH,
        "Production, energy intensity (kWh/t, m³/t) and anomalies with evidence",
        {
            200: ok("efficiency figures", efficiency.Efficiency),
            400: error("bad parameter, or too many readings for one request"),
            **_OPERATOR_AUTH,
        },
        security="read",
        parameters=[
            *_RANGE,
            param("tz"),
            param("processes", description="comma list; default: the processes tickets name"),
            param("direction", enum=["out", "in"]),
            param("shifts", description="name:start-end,... in local hours"),
        ],
    ),
    Operation(
        "post",
        production.PRODUCTION_PATH,
        "Enter production (tonnes of a process over a window), or correct an entry",
        {
            201: ok("the entry", production.ProductionView),
            400: error("bad body"),
            409: error("the entry to supersede is unknown or already superseded"),
            **_OPERATOR_AUTH,
        },
        security="admin",
        request=production.ProductionIn,
    ),
    Operation(
        "get",
        production.PRODUCTION_PATH,
        "Operators' production entries overlapping a window, corrections included",
        {
            200: ok("entries", production.ProductionList),
            400: error("bad parameter"),
            **_OPERATOR_AUTH,
        },
        security="read",
        parameters=[*_RANGE, param("process")],
    ),
    Operation(
        "get",
        "/",
        "The plant dashboard (HTML); ?token= once sets the session cookie",
        {
            200: page("the dashboard"),
            303: bare("token accepted: cookie set, token removed"),
            401: page("the sign-in page"),
        },
        security="viewer",
        parameters=[param("token"), param("series"), param("tz")],
    ),
    Operation(
        "get",
        "/efficiency",
        "The efficiency page (HTML): energy per tonne, findings, live alerts",
        {200: page("the page"), 401: page("the sign-in page")},
        security="viewer",
    ),
    Operation(
        "get",
        "/dashboard/fragment",
        "The refreshing part of the dashboard (HTML)",
        {200: page("content"), 401: page("sign in")},
        security="viewer",
        parameters=[param("series"), param("tz")],
    ),
    Operation(
        "get",
        "/fleet",
        "The fleet page: every gateway's health, flagged (HTML)",
        {200: page("the fleet"), 401: page("the sign-in page")},
        security="viewer",
    ),
    Operation(
        "post",
        "/login",
        "Sign in to the dashboard with a viewer or read token (form field)",
        {303: bare("signed in: cookie set"), 401: page("token refused")},
        request="application/x-www-form-urlencoded",
    ),
    Operation("post", "/logout", "Sign out of the dashboard", {303: bare("cookie cleared")}),
    Operation(
        "get",
        "/static/{name}",
        "The dashboard's own script and stylesheet",
        {200: bare("the file"), 404: page("unknown")},
        parameters=[param("name", "path")],
    ),
    Operation("get", HEALTH_PATH, "Process is up", {200: ok("ok", Health)}),
    Operation(
        "get",
        READY_PATH,
        "Store reachable",
        {200: ok("ready", Health), 503: error("store unreachable")},
    ),
    Operation("get", OPENAPI_PATH, "This document", {200: bare("OpenAPI")}),
)


def _content(media_type: str, bodies: Sequence[type[msgspec.Struct]]) -> dict[str, Any]:
    refs = [{"$ref": _REF.format(name=b.__name__)} for b in bodies]
    if not refs:
        return {media_type: {}}
    return {media_type: {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}}


def _answer(a: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": a.description}
    if a.bodies:
        out["content"] = _content(JSON_MEDIA_TYPE, a.bodies)
    elif a.html:
        out["content"] = {_HTML: {}}
    return out


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": op.summary}
    if op.security:
        out["security"] = _SECURITY[op.security]
    if op.parameters:
        out["parameters"] = list(op.parameters)
    if isinstance(op.request, str):
        out["requestBody"] = {"content": {op.request: {}}}
    elif op.request is not None:
        out["requestBody"] = {"content": _content(JSON_MEDIA_TYPE, [op.request])}
    out["responses"] = {str(status): _answer(a) for status, a in sorted(op.answers.items())}
    return out


def _schemas() -> dict[str, Any]:
    types: dict[str, type[msgspec.Struct]] = {}
    for op in OPERATIONS:
        bodies = [b for a in op.answers.values() for b in a.bodies]
        if op.request is not None and not isinstance(op.request, str):
            bodies.append(op.request)
        types.update((b.__name__, b) for b in bodies)
    _, components = msgspec.json.schema_components(list(types.values()), ref_template=_REF)
    return dict(sorted(components.items()))


def document(public_url: str) -> dict[str, Any]:
    """The OpenAPI document for a receiver reachable at `public_url`."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tierless receiver", "version": "1"},
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": {"securitySchemes": _SCHEMES, "schemas": _schemas()},
    }
