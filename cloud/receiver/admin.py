"""Operator API under `/v1/admin/`, behind the admin bearer token.

    POST /v1/admin/tokens                       {"device_id","ttl_s"}
                                                -> 201 {"token","device_id","expires_ms"}
    GET  /v1/admin/devices                      devices with sync state
    GET  /v1/admin/devices/{id}                 one device with its keys and chain events
    POST /v1/admin/devices/{id}/disable|enable  device status
    POST /v1/admin/devices/{id}/revoke          revoke every key of the device
    POST /v1/admin/keys/{keyid}/revoke          revoke one key

A token is shown once, in the 201 answer; only its hash is stored. Every action that changes
something writes an audit line (`cloud.receiver.audit`). Issuing a token for a device
that already exists (re-enrolment after a lost or revoked key) keeps its chain.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.apps.query import device_list
from cloud.apps.views import device_view, health_view
from cloud.bearer import require_bearer
from cloud.errors import RejectedError
from cloud.receiver.batches import require_content_type
from cloud.receiver.context import Context
from cloud.receiver.enroll import JSON, decode_body, valid_device_id
from cloud.receiver.limits import read_body
from cloud.receiver.tokens import issue_token
from cloud.storage.devices import DeviceStatus, KeyStatus
from wire.admin import (
    DeviceKeysRevoked,
    DeviceStatusChanged,
    KeyRevoked,
    TokenIssued,
    TokenRequest,
)
from wire.http import (
    ADMIN_DEVICE_PATH,
    ADMIN_DEVICES_PATH,
    ADMIN_KEY_REVOKE_PATH,
    ADMIN_TOKENS_PATH,
)

_KEYID = re.compile(r"[A-Za-z0-9_\-]{1,128}")


def _bad(message: str) -> RejectedError:
    return RejectedError(400, responses.bad_request(message), reason=message)


def device_id_param(request: Request) -> str:
    """The `{device_id}` of the path; 400 for one the receiver could never have issued (not
    UTF-8, control characters, too long), before it reaches the store."""
    # The server decodes the path leniently (a bad byte becomes U+FFFD); the raw path tells.
    try:
        unquote_to_bytes(request.scope.get("raw_path") or b"").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("device_id is not UTF-8") from exc
    device_id: str = request.path_params["device_id"]
    if not valid_device_id(device_id):
        raise _bad("device_id must be 1-128 printable characters")
    return device_id


def keyid_param(request: Request) -> str:
    keyid: str = request.path_params["keyid"]
    if _KEYID.fullmatch(keyid) is None:
        raise _bad("keyid must be 1-128 base64url characters")
    return keyid


def _not_found(what: str) -> RejectedError:
    return RejectedError(404, responses.not_found(what), reason=f"{what} not found")


class AdminHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _auth(self, request: Request) -> None:
        require_bearer(request, self.ctx.config.admin)

    async def create_token(self, request: Request) -> Response:
        self._auth(request)
        require_content_type(request, JSON)
        limits = self.ctx.config.limits
        raw = await read_body(request, limits.max_json_bytes, timeout_s=limits.body_timeout_s)
        body = decode_body(raw, TokenRequest)
        if not valid_device_id(body.device_id):
            raise _bad("device_id must be 1-128 printable characters")
        if not 0 < body.ttl_s <= self.ctx.config.max_token_ttl_s:
            raise _bad(f"ttl_s must be 1..{self.ctx.config.max_token_ttl_s}")
        token, record = issue_token(
            body.device_id, now_ms=self.ctx.now_ms(), ttl_ms=body.ttl_s * 1000
        )
        await self.ctx.store.create_token(record)
        self.ctx.audit.action(
            request,
            "token create",
            device=body.device_id,
            token_id=record.token_id,
            expires_ms=record.expires_ms,
        )
        issued = TokenIssued(token=token, device_id=body.device_id, expires_ms=record.expires_ms)
        return responses.json_response(201, issued)

    async def list_devices(self, request: Request) -> Response:
        self._auth(request)
        return responses.json_response(200, await device_list(self.ctx.store))

    async def show_device(self, request: Request) -> Response:
        self._auth(request)
        device = await self.ctx.store.get_device(device_id_param(request))
        if device is None:
            raise _not_found("device")
        latest = await self.ctx.store.latest_health(device.device_id)
        health = (
            health_view(latest[0].device_id, latest[0].received_ms, latest[0].body)
            if latest
            else None
        )
        return responses.json_response(200, device_view(device, detail=True, health=health))

    async def _set_status(self, request: Request, status: DeviceStatus) -> Response:
        self._auth(request)
        device_id = device_id_param(request)
        device = await self.ctx.store.get_device(device_id)
        if device is None:
            raise _not_found("device")
        if device.status is DeviceStatus.PENDING:
            message = "device has not enrolled yet"
            raise RejectedError(409, responses.conflict(message), reason=message)
        await self.ctx.store.set_device_status(device_id, status)
        self.ctx.key_records.invalidate()
        what = "enable" if status is DeviceStatus.ACTIVE else "disable"
        self.ctx.audit.action(request, f"device {what}", device=device_id)
        return responses.json_response(
            200, DeviceStatusChanged(device_id=device_id, status=str(status))
        )

    async def disable(self, request: Request) -> Response:
        return await self._set_status(request, DeviceStatus.DISABLED)

    async def enable(self, request: Request) -> Response:
        return await self._set_status(request, DeviceStatus.ACTIVE)

    async def revoke_device(self, request: Request) -> Response:
        self._auth(request)
        device_id = device_id_param(request)
        if await self.ctx.store.get_device(device_id) is None:
            raise _not_found("device")
        n = await self.ctx.store.revoke_device_keys(device_id, self.ctx.now_ms())
        self.ctx.key_records.invalidate()
        self.ctx.audit.action(request, "device revoke", device=device_id, keys_revoked=n)
        return responses.json_response(200, DeviceKeysRevoked(device_id=device_id, revoked=n))

    async def revoke_key(self, request: Request) -> Response:
        self._auth(request)
        keyid = keyid_param(request)
        key = await self.ctx.store.get_key(keyid)
        if key is None:
            raise _not_found("key")
        await self.ctx.store.revoke_key(keyid, self.ctx.now_ms())
        self.ctx.key_records.invalidate()
        self.ctx.audit.action(request, "key revoke", keyid=keyid, device=key.device_id)
        revoked = KeyRevoked(keyid=keyid, device_id=key.device_id, status=str(KeyStatus.REVOKED))
        return responses.json_response(200, revoked)


def routes(ctx: Context) -> list[Route]:
    h = AdminHandlers(ctx)
    e = ctx.endpoint
    dev = ADMIN_DEVICE_PATH.replace("{device_id}", "{device_id:path}")
    return [
        Route(ADMIN_TOKENS_PATH, e("admin_tokens", h.create_token), methods=["POST"]),
        Route(ADMIN_DEVICES_PATH, e("admin_devices", h.list_devices), methods=["GET"]),
        Route(f"{dev}/disable", e("admin_disable", h.disable), methods=["POST"]),
        Route(f"{dev}/enable", e("admin_enable", h.enable), methods=["POST"]),
        Route(f"{dev}/revoke", e("admin_revoke_device", h.revoke_device), methods=["POST"]),
        Route(dev, e("admin_device", h.show_device), methods=["GET"]),
        Route(ADMIN_KEY_REVOKE_PATH, e("admin_revoke_key", h.revoke_key), methods=["POST"]),
    ]
