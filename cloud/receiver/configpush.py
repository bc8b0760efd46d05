"""Remote configuration, the cloud's side: push a config to gateways, show where each stands.

`POST /v1/admin/config` (admin token, JSON `wire.remoteconfig.ConfigPush`). Checks, in order:
1. the body decodes, names exactly one target (`device`, or `tag` as `site|area|process|medium=
   value`: every device with a series carrying that tag), and the config is at most
   `MAX_CONFIG_BYTES` of UTF-8;
2. the receiver has a config-signing key (else `409`: remote configuration is off);
3. the targets exist (`404` otherwise);
4. the config carries no gateway-local section and no secret (`wire.remoteconfig.secret_problems`)
   and passes the agent's own checker (`agent.remote_check`, run as a child process of this
   interpreter: the cloud does not import the agent) - else `400` with every problem
   (`ConfigRefused.problems`, the lines `edge-agent check-config` prints);
5. one transaction stores it as the next version of every target, each signed for its device
   (`sign_config`), with an audit row (who, when, sha-256, target); the audit log says it too.
`201 ConfigPushed`: the sha-256 and each device's new version.

`GET /v1/config` (signed with the device key, empty body, like `GET /v1/chain/head`): the
gateway's newest pushed config as `wire.remoteconfig.SignedConfig`, exactly as signed at push
time; `404` when none was pushed. A gateway learns the version from the health acknowledgement
(`HealthAck.desired_config_version`).

`GET /v1/admin/config/status` (admin token): every gateway with its desired config (the newest
pushed) and what it runs (the config version of its latest health report, and the result of its
last apply when the report carries one).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tomllib
from collections.abc import Sequence

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloud import responses
from cloud.bearer import require_bearer
from cloud.errors import RejectedError
from cloud.receiver.auth import authenticate_device
from cloud.receiver.batches import EMPTY_BODY_CAP, check_digest, require_content_type
from cloud.receiver.context import Context
from cloud.receiver.enroll import JSON, decode_body, valid_device_id
from cloud.receiver.limits import check_declared_size, read_body
from cloud.storage.configs import TAG_COLUMNS
from wire.remoteconfig import (
    ADMIN_CONFIG_PATH,
    ADMIN_CONFIG_STATUS_PATH,
    CONFIG_PATH,
    MAX_CONFIG_BYTES,
    ConfigPush,
    ConfigPushed,
    ConfigRefused,
    ConfigState,
    ConfigStatusList,
    PushedTarget,
    SignedConfig,
    config_sha256,
    secret_problems,
    sign_config,
)

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 30.0
CHECKER = (sys.executable, "-m", "agent.remote_check")


class _Report(msgspec.Struct, kw_only=True):
    """The two fields of a stored health report the status needs (the rest is ignored)."""

    config_version: str = ""
    config_result: str | None = None


def _bad(message: str) -> RejectedError:
    return RejectedError(400, responses.bad_request(message), reason=message)


async def run_checker(config: str, device_id: str, cloud_url: str) -> list[str]:
    """The agent's checker's problems with `config` (agent/remote_check.py); 503 when the
    checker cannot run (not installed, killed, too slow)."""
    request = json.dumps({"config": config, "device_id": device_id, "cloud_url": cloud_url})
    try:
        proc = await asyncio.create_subprocess_exec(
            *CHECKER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise _unavailable(f"config checker did not start: {exc.strerror}") from exc
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            out, err = await proc.communicate(request.encode("utf-8"))
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise _unavailable("config checker timed out") from exc
    try:
        if proc.returncode != 0:
            raise ValueError(err.decode("utf-8", "replace").strip()[-200:])
        problems = json.loads(out)["problems"]
        if not isinstance(problems, list):
            raise TypeError("problems is not a list")
        return [str(p) for p in problems]
    except (ValueError, KeyError, TypeError) as exc:
        raise _unavailable(f"config checker failed: {exc}") from exc


def _unavailable(reason: str) -> RejectedError:
    log.error("%s", reason)
    return RejectedError(503, responses.UNAVAILABLE, reason=reason, headers={"Retry-After": "5"})


class ConfigHandlers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def push(self, request: Request) -> Response:
        ctx = self.ctx
        require_bearer(request, ctx.config.admin)
        require_content_type(request, JSON)
        raw = await read_body(
            request, 2 * MAX_CONFIG_BYTES, timeout_s=ctx.config.limits.body_timeout_s
        )
        body = decode_body(raw, ConfigPush)
        if (body.device is None) == (body.tag is None):
            raise _bad("name exactly one target: device or tag")
        text = body.config.encode("utf-8")
        if len(text) > MAX_CONFIG_BYTES:
            raise _bad(f"config is larger than {MAX_CONFIG_BYTES} bytes")
        if ctx.config.config_key is None:
            message = "remote configuration is off: the receiver has no config-signing key"
            raise RejectedError(409, responses.conflict(message), reason=message)
        targets, target = await self._targets(body)
        problems = _secret_problems(body.config)
        if not problems:
            problems = await run_checker(body.config, targets[0], ctx.config.public_url)
        if problems:
            ctx.audit.action(request, "config refused", target=target, problems=len(problems))
            refused = ConfigRefused(
                error="bad_request",
                message=f"config refused: {len(problems)} problem(s)",
                problems=problems,
            )
            return responses.json_response(400, refused)
        key = ctx.config.config_key
        digest = config_sha256(text)
        actor = f"admin token from {request.client.host if request.client else '?'}"
        pushed = await ctx.store.push_config(
            targets,
            text,
            digest,
            lambda device, version: sign_config(key, device, version, text).signature,
            at_ms=ctx.now_ms(),
            actor=actor,
            target=target,
        )
        ctx.audit.action(request, "config push", target=target, sha256=digest, devices=len(pushed))
        answer = ConfigPushed(
            sha256=digest, targets=[PushedTarget(device_id=d, version=v) for d, v in pushed]
        )
        return responses.json_response(201, answer)

    async def _targets(self, body: ConfigPush) -> tuple[list[str], str]:
        if body.device is not None:
            if not valid_device_id(body.device):
                raise _bad("device must be 1-128 printable characters")
            if await self.ctx.store.get_device(body.device) is None:
                raise RejectedError(404, responses.not_found("device"), reason="no such device")
            return [body.device], f"device {body.device}"
        tag, _, value = (body.tag or "").partition("=")
        if tag not in TAG_COLUMNS or not value or not value.isprintable():
            raise _bad(f"tag must be NAME=VALUE with NAME one of {', '.join(TAG_COLUMNS)}")
        devices = await self.ctx.store.devices_with_tag(tag, value)
        if not devices:
            raise RejectedError(404, responses.not_found("device with that tag"), reason="no match")
        return devices, f"tag {tag}={value}"

    async def fetch(self, request: Request) -> Response:
        ctx = self.ctx
        check_declared_size(request, EMPTY_BODY_CAP)
        key, _, headers = await authenticate_device(
            request, ctx.key_records, ctx.keys, public_url=ctx.config.public_url, now_ms=ctx.now_ms
        )
        ctx.device_limiter.check(key.device_id, reason=f"device {key.device_id} rate")
        body = await read_body(request, EMPTY_BODY_CAP, timeout_s=ctx.config.limits.body_timeout_s)
        check_digest(headers, body)
        desired = await ctx.store.desired_config(key.device_id)
        if desired is None:
            raise RejectedError(404, responses.not_found("config"), reason="no config pushed")
        signed = SignedConfig(
            device_id=desired.device_id,
            version=desired.version,
            sha256=desired.sha256,
            body=desired.body.decode("utf-8"),
            signature=desired.signature,
        )
        return responses.json_response(200, signed)

    async def status(self, request: Request) -> Response:
        ctx = self.ctx
        require_bearer(request, ctx.config.admin)
        desired = {d.device_id: d for d in await ctx.store.desired_configs()}
        reports = {r.device_id: r.body for r in await ctx.store.latest_health()}
        states = []
        for device in await ctx.store.list_devices():
            d = desired.get(device.device_id)
            report = _report(reports.get(device.device_id))
            states.append(
                ConfigState(
                    device_id=device.device_id,
                    desired_version=None if d is None else d.version,
                    desired_sha256=None if d is None else d.sha256,
                    pushed_ms=None if d is None else d.pushed_ms,
                    pushed_by=None if d is None else d.pushed_by,
                    running=None if report is None else report.config_version,
                    last_result=None if report is None else report.config_result,
                )
            )
        return responses.json_response(200, ConfigStatusList(devices=states))


def _secret_problems(config: str) -> list[str]:
    try:
        parsed = tomllib.loads(config)
    except tomllib.TOMLDecodeError:
        return []  # the checker names the TOML error, with its line
    return [f"config: {p}" for p in secret_problems(parsed)]


def _report(body: bytes | None) -> _Report | None:
    if body is None:
        return None
    try:
        return msgspec.json.decode(body, type=_Report)
    except msgspec.DecodeError:
        return None  # stored as received; an unreadable one says nothing about the config


def routes(ctx: Context) -> Sequence[Route]:
    h = ConfigHandlers(ctx)
    e = ctx.endpoint
    return [
        Route(ADMIN_CONFIG_PATH, e("admin_config_push", h.push), methods=["POST"]),
        Route(ADMIN_CONFIG_STATUS_PATH, e("admin_config_status", h.status), methods=["GET"]),
        Route(CONFIG_PATH, e("config", h.fetch), methods=["GET"]),
    ]
