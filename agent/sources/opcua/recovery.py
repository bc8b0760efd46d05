"""Session recovery after a lost connection (OPC 10000-4, 6.7): a new socket and secure channel,
ActivateSession with the old session's authentication token, the subscription kept, the
notifications the server held for it delivered. With `source`, `connect` and `requests`, the
only modules of the source that import asyncua.

What it relies on in asyncua 2.1 (the pinned minor): `Client.connect_socket`, `send_hello`,
`open_secure_channel` and `activate_session`; `UaSession.rebind_authentication_token`,
`transfer_subscriptions` and `republish`. Two private pieces are used because asyncua's own
reconnect supervisor cannot be used as it is (its Republish loop never ends against asyncua's
server, which answers a Republish for a sequence number it does not hold with an empty message
instead of BadMessageNotAvailable): the supervisor and channel-renewal tasks are started again
(`_connection_supervisor`, `_start_renew_loop`) once the session is active again, and the
publish loop (`UaSession._publish_task`) is replaced, since one waiting on a silent link never
returns.

`recover` runs the attempts (each after a backoff delay, until the session timeout has passed
since the loss); `reactivate` and `restore` are one attempt's two halves.

Sequence numbers: `TrackedSubscription` records the sequence number of every notification
message the server sent, so the source can tell whether any was lost (`missing`). The message
asyncua makes up itself when the link drops (BadShutdown, sequence number 0) is not passed on:
the source learns of the loss from the connection-lost callback, which asyncua calls first, and
a stale copy left in the queue would end the recovered session at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import OverflowPolicy, Subscription
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from agent.sources.opcua.config import OpcuaSourceConfig
from agent.sources.opcua.connect import FAULTS, RefusedError, describe
from firmware_bridge.backoff import Backoff

# ActivateSession answers meaning the server no longer has the session: make a new one.
SESSION_GONE = frozenset(
    {
        StatusCodes.BadSessionIdInvalid,
        StatusCodes.BadSessionClosed,
        StatusCodes.BadSessionNotActivated,
        StatusCodes.BadIdentityTokenInvalid,
        StatusCodes.BadIdentityTokenRejected,
        StatusCodes.BadUserAccessDenied,
    }
)
# TransferSubscriptions / Republish answers meaning the subscription is gone
SUBSCRIPTION_GONE = frozenset({StatusCodes.BadSubscriptionIdInvalid, StatusCodes.BadNoSubscription})
# a server without TransferSubscriptions: its subscriptions stay with the session (as the spec
# has it), so the source reads on without a transfer and without Republish
NO_TRANSFER = frozenset({StatusCodes.BadServiceUnsupported, StatusCodes.BadNotImplemented})


class SessionGoneError(Exception):
    """A new session is needed: the server no longer has the session or its subscription, or
    the session timed out while the link was down. The message says which, for the log."""


class TrackedSubscription(Subscription):
    """An asyncua subscription that records the server's notification sequence numbers.

    `last_seq` is the highest sequence number received; `missing` the numbers below it that
    never arrived (a Republish that brings one removes it); `overflowed` that the source fell
    behind and asyncua dropped a notification it had received (sequence numbers cannot tell).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_seq: int | None = None
        self.missing: set[int] = set()
        self.overflowed = False  # the source fell behind and a notification was dropped

    def _handle_overflow(self, event: Any) -> None:
        self.overflowed = True
        super()._handle_overflow(event)

    def expect(self, available: list[int]) -> None:
        """The server's AvailableSequenceNumbers after a transfer: those not received were sent
        and lost on the way, and are missing until republished."""
        top = max(available)
        # every number after the last received up to the server's last was sent: a number
        # below its oldest held one was dropped from its retransmission queue
        first = min(available) if self.last_seq is None else self.last_seq + 1
        self.missing.update(range(first, top + 1))
        self.last_seq = max(top, self.last_seq or 0)

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        msg = publish_result.NotificationMessage
        if not msg.NotificationData:
            await super().publish_callback(publish_result)  # a keep-alive
            return
        if _local_shutdown(msg):
            return  # asyncua's own "link lost" message, not the server's (see the module doc)
        seq = int(msg.SequenceNumber)
        if self.last_seq is None or seq > self.last_seq:
            if self.last_seq is not None:
                self.missing.update(range(self.last_seq + 1, seq))
            self.last_seq = seq
        else:
            self.missing.discard(seq)
        await super().publish_callback(publish_result)


def _local_shutdown(msg: ua.NotificationMessage) -> bool:
    """asyncua's BadShutdown on a lost link: sequence number 0, which no server sends (they
    start at 1 and skip 0 when they wrap: OPC 10000-4, the Subscription model)."""
    data = msg.NotificationData
    return (
        msg.SequenceNumber == 0
        and len(data) == 1
        and isinstance(data[0], ua.StatusChangeNotification)
        and data[0].Status.value == StatusCodes.BadShutdown
    )


async def create_subscription(
    client: Client, cfg: OpcuaSourceConfig, queue_maxsize: int
) -> TrackedSubscription:
    """Client.create_subscription with a `TrackedSubscription`: its parameters, except that
    the subscription's lifetime covers the session timeout, so that a server keeps both alike
    for a dropped link."""
    period = cfg.publishing_interval_ms
    keepalive = client.get_keepalive_count(period)
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = period
    # the spec wants the lifetime at least three keep-alives
    params.RequestedLifetimeCount = max(
        10000, 3 * keepalive, int(client.session_timeout // period) + 1
    )
    params.RequestedMaxKeepAliveCount = keepalive
    params.MaxNotificationsPerPublish = 10000
    params.PublishingEnabled = True
    params.Priority = 0
    # a consumer that cannot keep up loses the session (and so reads every current value
    # again) rather than silently dropping notifications
    sub = TrackedSubscription(
        client.uaclient.session,
        params,
        None,
        queue_maxsize=queue_maxsize,
        overflow=OverflowPolicy.DISCONNECT,
    )
    sub.set_overflow_disconnect_handler(client.uaclient.notify_transport_lost)
    revised = client.get_subscription_revised_params(params, await sub.init())
    if revised is not None:  # a revised publishing interval: a keep-alive count to match
        await sub.update(revised)
    client._subscriptions.append(sub)  # closed with the client
    return sub


async def reactivate(client: Client, cfg: OpcuaSourceConfig, password: str | None) -> None:
    """A new socket and secure channel, and the client's session activated on it again.

    RefusedError: no connection (try again later); SessionGoneError: the server answered that
    it has no such session any more (make a new one)."""
    # a supervisor left from an attempt that failed half-way must not react to this teardown
    await _cancel(client._supervisor_task)
    client._supervisor_task = None
    client.disconnect_socket()
    try:
        async with asyncio.timeout(cfg.timeout_s * 3):
            await client.connect_socket()
            await client.send_hello()
            await client.open_secure_channel()
            client.uaclient.session.rebind_authentication_token()
            await client.activate_session(username=cfg.username or None, password=password)
    except UaStatusCodeError as exc:
        client.disconnect_socket()
        if exc.code in SESSION_GONE:
            name = ua.StatusCode(exc.code).name
            raise SessionGoneError(f"the server no longer has the session ({name})") from exc
        raise RefusedError(describe(exc)) from exc
    except FAULTS as exc:
        client.disconnect_socket()
        raise RefusedError(describe(exc)) from exc
    except BaseException:
        client.disconnect_socket()
        raise
    # a Publish sent on a link that went silent waits forever (asyncua sends it without a
    # timeout): the loop is started again on the new channel
    session = client.uaclient.session
    await _cancel(session._publish_task)
    session._publish_task = None
    session.ensure_publish_loop()
    client._start_renew_loop()
    # asyncua's supervisor (the watchdog) ended with the lost link; it watches this one
    client._supervisor_task = asyncio.create_task(client._connection_supervisor())


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def restore(client: Client, sub: TrackedSubscription, timeout_s: float) -> int:
    """Bind the subscription to the new channel (TransferSubscriptions, no initial values) and
    Republish the messages the server holds beyond the last one received; how many came.

    SessionGoneError when the server no longer has the subscription."""
    session = client.uaclient.session
    sub_id = sub.subscription_id
    if sub_id is None:
        raise SessionGoneError("the subscription was never created")
    params = ua.TransferSubscriptionsParameters()
    params.SubscriptionIds = [sub_id]
    params.SendInitialValues = False
    async with asyncio.timeout(timeout_s * 3):
        try:
            results = await session.transfer_subscriptions(params)
        except UaStatusCodeError as exc:
            if exc.code in NO_TRANSFER:
                return 0
            raise
        result = results[0] if results else None
        if result is None or not result.StatusCode.is_good():
            code = (
                result.StatusCode
                if result is not None
                else ua.StatusCode(ua.UInt32(StatusCodes.Bad))
            )
            raise SessionGoneError(f"the server no longer has the subscription ({code.name})")
        session._subscription_callbacks[sub_id] = sub.publish_callback
        available = sorted(int(s) for s in result.AvailableSequenceNumbers or [])
        if available:
            sub.expect(available)
        count = 0
        for seq in available:
            if seq not in sub.missing:
                continue  # received already; its acknowledgement was lost with the link
            try:
                msg = await session.republish(sub_id, seq)
            except UaStatusCodeError as exc:
                if exc.code in SUBSCRIPTION_GONE:
                    name = ua.StatusCode(exc.code).name
                    raise SessionGoneError(
                        f"the server no longer has the subscription ({name})"
                    ) from exc
                continue  # BadMessageNotAvailable: stays missing
            if msg.NotificationData:  # asyncua's server answers an unknown number with nothing
                count += 1
                await sub.publish_callback(ua.PublishResult(sub_id, NotificationMessage=msg))
    return count


@dataclass(frozen=True, slots=True)
class Recovered:
    seconds: float  # from the loss to the session back
    republished: int  # notification messages the server sent again
    lost: int  # notification messages that could not be had (a sequence-number gap)


async def recover(
    client: Client,
    sub: TrackedSubscription,
    cfg: OpcuaSourceConfig,
    password: str | None,
    backoff: Backoff,
    lost: asyncio.Event,
    refused: Callable[[Exception], None],
) -> Recovered:
    """Reactivate and restore, an attempt after each backoff delay, until the session timeout
    (as the server revised it) has passed since the loss; `refused` hears each failed attempt.

    SessionGoneError, with the reason, when a new session is needed."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + client.session_timeout / 1000
    while True:
        await asyncio.sleep(backoff.next_delay())
        if loop.time() >= deadline:
            raise SessionGoneError(
                f"the session has timed out on the server ({client.session_timeout / 1000:g} s)"
            )
        lost.clear()  # set again by asyncua's supervisor if this connection is lost too
        # asyncua's stale-subscription watchdog would re-create a subscription silent this
        # long as soon as the link is up, losing what the server queued
        sub.last_publish_at = time.monotonic()
        try:
            await reactivate(client, cfg, password)
            republished = await restore(client, sub, cfg.timeout_s)
        except (RefusedError, *FAULTS) as exc:
            refused(exc)
            continue
        break
    backoff.reset()
    missing = len(sub.missing)
    sub.missing.clear()
    return Recovered(loop.time() - started, republished, missing)
