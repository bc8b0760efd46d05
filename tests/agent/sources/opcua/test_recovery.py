"""`recovery.TrackedSubscription`: the server's notification sequence numbers, gaps in them
filled by Republish, and asyncua's own "link lost" message kept from the source. In-process:
asyncua's real session object, no server (these messages are what its publish loop hands over).
"""

from __future__ import annotations

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent, SubscriptionItemData
from asyncua.ua.status_codes import StatusCodes

from agent.sources.opcua.recovery import TrackedSubscription

pytestmark = pytest.mark.asyncio


def tracked() -> TrackedSubscription:
    session = Client("opc.tcp://127.0.0.1:4840").uaclient.session
    sub = TrackedSubscription(session, ua.CreateSubscriptionParameters(), None)
    sub.subscription_id = 7
    return sub


def data_message(seq: int) -> ua.PublishResult:
    item = ua.MonitoredItemNotification(ClientHandle=1, Value=ua.DataValue(ua.Variant(float(seq))))
    notif = ua.DataChangeNotification(MonitoredItems=[item])
    msg = ua.NotificationMessage(SequenceNumber=seq, NotificationData=[notif])
    return ua.PublishResult(7, NotificationMessage=msg)


def status_message(code: int, seq: int) -> ua.PublishResult:
    notif = ua.StatusChangeNotification(Status=ua.StatusCode(ua.UInt32(code)))
    msg = ua.NotificationMessage(SequenceNumber=seq, NotificationData=[notif])
    return ua.PublishResult(7, NotificationMessage=msg)


async def test_a_gap_in_sequence_numbers_is_missing_until_republished() -> None:
    sub = tracked()
    for seq in (1, 2, 5):
        await sub.publish_callback(data_message(seq))
    assert (sub.last_seq, sub.missing) == (5, {3, 4})
    await sub.publish_callback(data_message(3))  # republished
    assert (sub.last_seq, sub.missing) == (5, {4})
    keepalive = ua.PublishResult(7, NotificationMessage=ua.NotificationMessage(SequenceNumber=6))
    await sub.publish_callback(keepalive)  # a keep-alive carries the next number, no data
    await sub.publish_callback(data_message(6))
    assert (sub.last_seq, sub.missing) == (6, {4})


async def test_what_the_server_holds_after_a_transfer_is_missing_until_republished() -> None:
    sub = tracked()
    for seq in (1, 2):
        await sub.publish_callback(data_message(seq))
    # 2 arrived but its acknowledgement was lost; 3 and 4 were sent and lost; the server no
    # longer holds 3 (its retransmission queue was full)
    sub.expect([2, 4])
    assert (sub.last_seq, sub.missing) == (4, {3, 4})
    await sub.publish_callback(data_message(4))  # republished
    await sub.publish_callback(data_message(5))  # the next new one
    assert (sub.last_seq, sub.missing) == (5, {3})


async def test_asyncuas_own_link_lost_message_is_kept_from_the_source() -> None:
    sub = tracked()
    sub._monitored_items[1] = _item()
    await sub.publish_callback(data_message(1))
    await sub.publish_callback(status_message(StatusCodes.BadShutdown, seq=0))  # asyncua's
    await sub.publish_callback(status_message(StatusCodes.BadShutdown, seq=2))  # the server's
    events = [await sub.next_event(timeout=0.1) for _ in range(3)]
    assert isinstance(events[0], DataChangeEvent)
    assert isinstance(events[1], StatusChangeEvent)
    assert events[2] is None
    assert sub.last_seq == 2
    assert not sub.missing


def _item() -> SubscriptionItemData:
    data = SubscriptionItemData()
    data.node = Client("opc.tcp://127.0.0.1:4840").get_node("ns=2;s=x")
    return data
