"""The OpenAPI 3.1 description of the receiver's JSON endpoints, served at /v1/openapi.json.

Hand-written on purpose: the routes are few and the contract (docs/protocol.md, docs/api.md) is
the source of truth. `tests/cloud/test_openapi.py` fails when a route is missing here.
"""

from __future__ import annotations

from typing import Any

_JSON = "application/json"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {_JSON: {"schema": schema or {"type": "object"}}},
    }


_SIGNED: list[dict[str, list[str]]] = [{"httpSignature": []}]
_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
_READ: list[dict[str, list[str]]] = [{"readToken": []}, {"adminToken": []}]
_VIEWER: list[dict[str, list[str]]] = [{"viewerCookie": []}, {"viewerToken": []}]
_DEVICE_AUTH = {
    "401": _error("signature, digest or key not valid (one body for every case)"),
    "403": _error("key revoked or expired, device disabled, or another device's batch"),
    "429": _error("rate limited; see Retry-After"),
}
_OPERATOR_AUTH = {"401": _error("missing or wrong bearer token")}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {}}}


def _param(name: str, where: str = "query", kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": kind},
        **extra,
    }


_FILTERS = [_param(n) for n in ("device", "metric", "site", "area", "process", "medium")]
_RANGE = [_param("from_ms", kind="integer"), _param("to_ms", kind="integer")]


def document(public_url: str) -> dict[str, Any]:
    """The OpenAPI document for a receiver reachable at `public_url`."""
    device_path = {"$ref": "#/components/parameters/device_id"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tierless receiver", "version": "1"},
        "servers": [{"url": public_url}],
        "paths": {
            "/v1/batches": {
                "post": {
                    "summary": "Upload one signed, content-coded batch (docs/protocol.md)",
                    "security": _SIGNED,
                    "requestBody": {"content": {"application/vnd.tierless.batch.v1+msgpack": {}}},
                    "responses": {
                        "200": _ok("stored or duplicate", {"$ref": "#/components/schemas/Ack"}),
                        "400": _error("undecodable body or invalid batch"),
                        **_DEVICE_AUTH,
                        "409": _error("seq_gap or chain_conflict, with expected_seq"),
                        "413": _error("wire or decoded size over the limit"),
                        "415": _error("content type or coding not accepted"),
                        "503": _error("store unavailable; retry"),
                    },
                }
            },
            "/v1/chain/head": {
                "get": {
                    "summary": "Where the receiver's copy of the device's chain ends",
                    "security": _SIGNED,
                    "responses": {"200": _ok("the head"), **_DEVICE_AUTH},
                }
            },
            "/v1/enroll": {
                "post": {
                    "summary": "Enrol a device key with a one-time token (signed by the new key)",
                    "requestBody": {"content": {_JSON: {}}},
                    "responses": {
                        "201": _ok("enrolled"),
                        "400": _error("malformed body"),
                        "401": _error("enrollment_refused, whatever the reason"),
                        "429": _error("rate limited"),
                    },
                }
            },
            "/v1/keys/rotate": {
                "post": {
                    "summary": "Replace the signing key; the old one stays valid for the overlap",
                    "security": _SIGNED,
                    "requestBody": {"content": {_JSON: {}}},
                    "responses": {"200": _ok("rotated"), "400": _error("bad pop"), **_DEVICE_AUTH},
                }
            },
            "/v1/admin/tokens": {
                "post": {
                    "summary": "Issue an enrolment token for a device id (shown once)",
                    "security": _ADMIN,
                    "requestBody": {"content": {_JSON: {}}},
                    "responses": {"201": _ok("token"), "400": _error("bad body"), **_OPERATOR_AUTH},
                }
            },
            "/v1/admin/devices": {
                "get": {
                    "summary": "Devices",
                    "security": _ADMIN,
                    "responses": {"200": _ok("devices"), **_OPERATOR_AUTH},
                }
            },
            "/v1/admin/devices/{device_id}": {
                "get": {
                    "summary": "One device with keys and chain events",
                    "security": _ADMIN,
                    "parameters": [device_path],
                    "responses": {"200": _ok("device"), "404": _error("unknown"), **_OPERATOR_AUTH},
                }
            },
            **{
                f"/v1/admin/devices/{{device_id}}/{action}": {
                    "post": {
                        "summary": summary,
                        "security": _ADMIN,
                        "parameters": [device_path],
                        "responses": {
                            "200": _ok("done"),
                            "404": _error("unknown device"),
                            **_OPERATOR_AUTH,
                        },
                    }
                }
                for action, summary in (
                    ("disable", "Disable a device: its valid requests get 403"),
                    ("enable", "Enable a disabled device"),
                    ("revoke", "Revoke every key of a device"),
                )
            },
            "/v1/admin/keys/{keyid}/revoke": {
                "post": {
                    "summary": "Revoke one key",
                    "security": _ADMIN,
                    "parameters": [_param("keyid", "path")],
                    "responses": {
                        "200": _ok("revoked"),
                        "404": _error("unknown"),
                        **_OPERATOR_AUTH,
                    },
                }
            },
            "/v1/devices": {
                "get": {
                    "summary": "Devices and their sync state",
                    "security": _READ,
                    "responses": {"200": _ok("devices"), **_OPERATOR_AUTH},
                }
            },
            "/v1/series": {
                "get": {
                    "summary": "Series, filtered by device and tags",
                    "security": _READ,
                    "parameters": _FILTERS,
                    "responses": {"200": _ok("series"), **_OPERATOR_AUTH},
                }
            },
            "/v1/series/{series_id}/readings": {
                "get": {
                    "summary": "Readings of one series over [from_ms, to_ms), raw or bucketed",
                    "security": _READ,
                    "parameters": [
                        _param("series_id", "path", "integer"),
                        *_RANGE,
                        _param("bucket_ms", kind="integer"),
                        _param("agg", enum=["avg", "min", "max", "last", "sum", "count"]),
                        _param("limit", kind="integer"),
                    ],
                    "responses": {"200": _ok("points"), "404": _error("unknown"), **_OPERATOR_AUTH},
                }
            },
            "/v1/latest": {
                "get": {
                    "summary": "The newest reading of each matching series",
                    "security": _READ,
                    "parameters": _FILTERS,
                    "responses": {"200": _ok("latest values"), **_OPERATOR_AUTH},
                }
            },
            "/v1/events": {
                "get": {
                    "summary": "Events (weighbridge tickets, ...) over a range",
                    "security": _READ,
                    "parameters": [_param("device"), _param("kind"), *_RANGE],
                    "responses": {"200": _ok("events"), **_OPERATOR_AUTH},
                }
            },
            "/v1/figures/consumption": {
                "get": {
                    "summary": "Consumption per interval from cumulative counters",
                    "security": _READ,
                    "parameters": [
                        *_RANGE,
                        _param("interval", enum=["hour", "day", "month", "total"]),
                        _param("tz", description="IANA time zone, default UTC"),
                        _param(
                            "group_by",
                            description="device, site, area, process, medium (comma list) or none",
                        ),
                        _param("detail", enum=["groups", "series"]),
                        _param("max_step_ms", kind="integer"),
                        *_FILTERS,
                    ],
                    "responses": {
                        "200": _ok("figures", {"$ref": "#/components/schemas/Consumption"}),
                        "400": _error("bad parameter, or too many readings for one request"),
                        **_OPERATOR_AUTH,
                    },
                }
            },
            "/v1/figures/materials": {
                "get": {
                    "summary": "Raw material received per material from weighbridge tickets",
                    "security": _READ,
                    "parameters": [
                        *_RANGE,
                        _param("interval", enum=["hour", "day", "month", "total"]),
                        _param("tz"),
                        _param("device"),
                        _param("kind"),
                    ],
                    "responses": {
                        "200": _ok("materials"),
                        "400": _error("bad parameter, or too many tickets"),
                        **_OPERATOR_AUTH,
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "The plant dashboard (HTML); ?token= once sets the session cookie",
                    "security": _VIEWER,
                    "parameters": [_param("token"), _param("series"), _param("tz")],
                    "responses": {
                        "200": _html("the dashboard"),
                        "303": {"description": "token accepted: cookie set, token removed"},
                        "401": _html("the sign-in page"),
                    },
                }
            },
            "/dashboard/fragment": {
                "get": {
                    "summary": "The refreshing part of the dashboard (HTML)",
                    "security": _VIEWER,
                    "parameters": [_param("series"), _param("tz")],
                    "responses": {"200": _html("content"), "401": _html("sign in")},
                }
            },
            "/login": {
                "post": {
                    "summary": "Sign in to the dashboard with a viewer or read token (form field)",
                    "requestBody": {"content": {"application/x-www-form-urlencoded": {}}},
                    "responses": {
                        "303": {"description": "signed in: cookie set"},
                        "401": _html("token refused"),
                    },
                }
            },
            "/logout": {
                "post": {
                    "summary": "Sign out of the dashboard",
                    "responses": {"303": {"description": "cookie cleared"}},
                }
            },
            "/static/{name}": {
                "get": {
                    "summary": "The dashboard's own script and stylesheet",
                    "parameters": [_param("name", "path")],
                    "responses": {"200": {"description": "the file"}, "404": _html("unknown")},
                }
            },
            "/healthz": {"get": {"summary": "Process is up", "responses": {"200": _ok("ok")}}},
            "/readyz": {
                "get": {
                    "summary": "Store reachable",
                    "responses": {"200": _ok("ready"), "503": _error("store unreachable")},
                }
            },
            "/v1/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _ok("OpenAPI")}}
            },
        },
        "components": {
            "parameters": {"device_id": _param("device_id", "path")},
            "securitySchemes": {
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
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "expected_seq": {"type": "integer"},
                        "reason": {"type": "string"},
                    },
                },
                "Consumption": {
                    "type": "object",
                    "required": ["from_ms", "to_ms", "interval", "tz", "intervals", "groups"],
                    "properties": {
                        "intervals": {"type": "array", "items": {"type": "integer"}},
                        "groups": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "key": {"type": "object"},
                                    "unit": {"type": "string"},
                                    "values": {
                                        "type": "array",
                                        "items": {"type": ["number", "null"]},
                                    },
                                    "status": {
                                        "type": "array",
                                        "items": {"enum": ["complete", "partial", "gap", "future"]},
                                    },
                                    "coverage": {"type": "array", "items": {"type": "number"}},
                                    "total": {"type": "number"},
                                    "unattributed": {"type": "number"},
                                },
                            },
                        },
                    },
                },
                "Ack": {
                    "type": "object",
                    "required": ["status", "seq", "server_time_ms"],
                    "properties": {
                        "status": {"enum": ["stored", "duplicate"]},
                        "seq": {"type": "integer"},
                        "server_time_ms": {"type": "integer"},
                    },
                },
            },
        },
    }
