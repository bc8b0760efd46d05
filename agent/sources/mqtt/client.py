"""The MQTT source's client: aiomqtt's, with acknowledgement and reading of the socket left to
the source. The one module that touches aiomqtt's internals (aiomqtt 2.5 does not expose paho's
`manual_ack`, empicano/aiomqtt#345): `_client` (paho) for manual ack, `_on_message` to take
paho's message (with its DUP flag) straight from the read loop, `_on_connect` for the
session-present flag, `_loop` and `_disconnected` to pause and resume reading the socket.
pyproject pins `aiomqtt>=2.5,<3`; the source's tests fail if these change.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode


class AckClient(aiomqtt.Client):
    """aiomqtt's client with acknowledgement left to us (the only use of its internals)."""

    def __init__(
        self,
        *args: Any,
        on_message: Callable[[paho.MQTTMessage], None],
        on_session: Callable[[bool], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._client.manual_ack_set(on=True)  # before connecting: redeliveries follow CONNACK
        self._deliver = on_message
        self._on_session = on_session
        self.session_present = False

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        if not self._connected.done() and reason_code == paho.CONNACK_ACCEPTED:
            # Here, before paho reads the redeliveries that follow the CONNACK.
            self.session_present = bool(flags.session_present)
            self._on_session(self.session_present)
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._deliver(message)

    def ack(self, mid: int) -> None:
        self._client.ack(mid, 1)

    def pause_reading(self) -> None:
        """Stop reading the socket: TCP and the broker's in-flight window hold what follows."""
        sock = self._client.socket()
        if sock is not None:
            self._loop.remove_reader(sock.fileno())

    def resume_reading(self) -> None:
        sock = self._client.socket()
        if sock is not None:
            self._loop.add_reader(sock.fileno(), self._read)
            self._loop.call_soon(self._read)  # what TLS may hold decrypted already

    def _read(self) -> None:
        """The socket's reader once we have paused it (aiomqtt's own is gone): paho reads."""
        try:
            while True:
                self._client.loop_read()
                sock = self._client.socket()
                pending = getattr(sock, "pending", None)  # TLS: decrypted bytes not read yet
                if pending is None or pending() <= 0:
                    break
        except Exception as exc:  # a broken connection: aiomqtt's exit reports it
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def retrieve_disconnect_error(self) -> None:
        """aiomqtt's exit leaves a lost connection's error unread (asyncio then logs "Future
        exception was never retrieved"); we report it ourselves."""
        if self._disconnected.done() and not self._disconnected.cancelled():
            self._disconnected.exception()

    def close_failed_tls(self) -> None:
        context = self._client._ssl_context
        if isinstance(context, TlsContext):
            context.close_opened()


class TlsContext(ssl.SSLContext):
    """paho leaves the socket open when a TLS handshake fails (`_ssl_wrap_socket`); this context
    remembers what it wrapped so a failed connect can close it."""

    opened: list[ssl.SSLSocket]

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        self.__dict__.setdefault("opened", []).append(sock)
        return sock

    def close_opened(self) -> None:
        for sock in self.__dict__.pop("opened", []):
            sock.close()
